// The "Try it" slice: the base model and the adapter continue the same prompt side by side, one generation
// at a time, with the adapter's α live on a slider. Sampling (temperature > 0) draws from a seeded generator
// in the engine, so a seed repeats a sample and Resample (the next seed) draws another.

import { checkNumber, checkTry, fieldTexts, nextSeed, TRY_RULES } from '../settings_check';
import { engine, toFailure } from './shared';
import type { GenerationOutput, SliceCreator, TrySlice } from './studio_state';

/** An output column before anything was generated in it. */
export const emptyOutput = (): GenerationOutput => ({ status: 'idle', prompt: '', text: '', tokens: 0, seconds: null, error: null, alphaScale: 1, seed: 0, temperature: 0 });

export const createTrySlice: SliceCreator<TrySlice> = (set, get) => {
  const output = (which: 'base' | 'adapted', p: Partial<GenerationOutput>) =>
    set({ tryIt: { ...get().tryIt, [which]: { ...get().tryIt[which], ...p } } });
  // Generations go one at a time: they share the GPU, and two on one cached generator would share its buffers.
  let lane: Promise<void> = Promise.resolve();
  const queue = (fn: () => Promise<void>): Promise<void> => (lane = lane.then(fn, fn));
  let alphaQueued = false;
  const canGenerate = () => {
    const { model, train, tryIt } = get();
    return model.status === 'ready' && !!model.facts?.hasTokenizer && train.adapterSteps !== null && tryIt.prompt.trim() !== '' &&
      !['starting', 'running', 'stopping'].includes(train.status) && tryValid();
  };
  const tryValid = () => {
    const { temperature, topK, maxTokens, seed, drafts } = get().tryIt;
    return checkTry(fieldTexts({ temperature, topK, maxTokens, seed }, drafts)).errors.length === 0;
  };
  const run = async (which: 'base' | 'adapted') => {
    const { prompt, maxTokens, temperature, topK, alphaScale, seed } = get().tryIt;
    output(which, { status: 'running', prompt, text: '', tokens: 0, seconds: null, error: null, alphaScale, seed, temperature });
    try {
      const res = await engine().request(
        { type: 'generate', prompt, maxTokens, temperature, topK, withAdapter: which === 'adapted', alphaScale, seed },
        { onEvent: (ev) => output(which, { text: ev.text }) },
      );
      output(which, { status: 'done', text: res.text, tokens: res.tokens, seconds: res.seconds });
    } catch (err) {
      output(which, { status: 'error', error: toFailure(err) });
    }
  };
  return {
    tryIt: { prompt: 'My fellow Americans,', maxTokens: 24, temperature: 0.7, topK: 40, seed: 0, drafts: {}, alphaScale: 1, base: emptyOutput(), adapted: emptyOutput() },
    setTry: (p) => set({ tryIt: { ...get().tryIt, ...p } }),
    setTryField: (field, text) => {
      const { value } = checkNumber(text, TRY_RULES[field]);
      const tryIt = get().tryIt;
      set({ tryIt: { ...tryIt, drafts: { ...tryIt.drafts, [field]: text }, ...(value === null ? {} : { [field]: value }) } });
    },
    setAlphaScale: (scale) => {
      const alphaScale = Math.min(2, Math.max(0, Number.isFinite(scale) ? scale : 1));
      if (alphaScale === get().tryIt.alphaScale) return;
      set({ tryIt: { ...get().tryIt, alphaScale } });
      if (alphaQueued || !canGenerate()) return;
      alphaQueued = true;
      void queue(async () => {
        alphaQueued = false; // a move from here on queues the next run, which reads the latest value
        const { adapted, alphaScale: now } = get().tryIt;
        if (canGenerate() && (adapted.status !== 'done' || adapted.alphaScale !== now)) await run('adapted');
      });
    },
    resample: () => {
      const tryIt = get().tryIt;
      const { seed: _typed, ...drafts } = tryIt.drafts; // the box shows the new seed
      set({ tryIt: { ...tryIt, seed: nextSeed(tryIt.seed), drafts } });
      return get().generate();
    },
    generate: () =>
      queue(async () => {
        if (!tryValid()) return;
        const hasAdapter = get().train.adapterSteps !== null;
        if (!hasAdapter) output('adapted', emptyOutput());
        // The base model's answer first: it is worth seeing while the adapter's is on its way.
        await run('base');
        if (hasAdapter) await run('adapted');
      }),
  };
};
