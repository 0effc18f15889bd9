// The "Try it" slice: the base model and two comparison panes continue the same prompt side by side, one
// generation at a time. A comparison pane runs the held adapter with its α live on a slider, one library
// adapter attached to the loaded model, or the live blend of every attached adapter at its slider's weight
// (PEFT's "cat" applied at run time: no new adapter is built, the base weights stay where they are). Moving
// a slider regenerates the panes it drives. Sampling (temperature > 0) draws from a seeded generator in the
// engine, so a seed repeats a sample and Resample (the next seed) draws another.

import type { BlendWeight, EngineRequestBody } from '../../worker/protocol';
import { checkNumber, checkTry, fieldTexts, nextSeed, TRY_RULES } from '../settings_check';
import { engine, toFailure } from './shared';
import type { GenerationOutput, PaneChoice, SliceCreator, TryAdapter, TryPane, TrySlice } from './studio_state';

/** An output column before anything was generated in it. */
export const emptyOutput = (choice: PaneChoice = 'held'): GenerationOutput => ({
  status: 'idle', prompt: '', text: '', tokens: 0, seconds: null, error: null, alphaScale: 1, seed: 0, temperature: 0, ran: null, choice,
});

/** Try it once a model has loaded: the engine forgot every attachment with the old model. */
export const tryAfterModelLoad = (): Pick<TrySlice['tryIt'], 'base' | 'adapted' | 'second' | 'attached' | 'panes' | 'attachError' | 'blendNotice'> => ({
  base: emptyOutput(), adapted: emptyOutput(), second: emptyOutput('blend'), attached: [], panes: { adapted: 'held', second: 'blend' },
  attachError: null, blendNotice: null,
});

/** A slider's weights: as PEFT's add_weighted_adapter takes them, from −2 to 2. */
export const BLEND_WEIGHT_RANGE = { min: -2, max: 2 };

/** The attached adapter a pane choice names, if it is one. */
export const paneAdapterId = (choice: PaneChoice): string | null => (choice.startsWith('adapter:') ? choice.slice('adapter:'.length) : null);

export const createTrySlice: SliceCreator<TrySlice> = (set, get) => {
  const patchTry = (p: Partial<TrySlice['tryIt']>) => set({ tryIt: { ...get().tryIt, ...p } });
  const output = (which: 'base' | TryPane, p: Partial<GenerationOutput>) =>
    set({ tryIt: { ...get().tryIt, [which]: { ...get().tryIt[which], ...p } } });
  // Generations go one at a time: they share the GPU, and two on one cached generator would share its buffers.
  let lane: Promise<void> = Promise.resolve();
  const queue = (fn: () => Promise<void>): Promise<void> => (lane = lane.then(fn, fn));
  const queued = { alpha: false, blend: false };
  const modelUsable = () => {
    const { model, train, tryIt } = get();
    return model.status === 'ready' && !!model.facts?.hasTokenizer && tryIt.prompt.trim() !== '' &&
      !['starting', 'running', 'stopping'].includes(train.status) && tryValid();
  };
  const tryValid = () => {
    const { temperature, topK, maxTokens, seed, drafts } = get().tryIt;
    return checkTry(fieldTexts({ temperature, topK, maxTokens, seed }, drafts)).errors.length === 0;
  };
  /** Whether a pane's choice can run now: the held adapter exists, the adapter is attached, the blend has adapters. */
  const runnable = (choice: PaneChoice) => {
    const { train, tryIt } = get();
    if (choice === 'held') return train.adapterSteps !== null;
    if (choice === 'blend') return tryIt.attached.length > 0;
    return tryIt.attached.some((a) => a.adapterId === paneAdapterId(choice));
  };
  /** The request's adapters for a pane choice. */
  const adaptersOf = (choice: PaneChoice, alphaScale: number): Pick<EngineRequestBody<'generate'>, 'withAdapter' | 'alphaScale' | 'blend'> => {
    if (choice === 'held') return { withAdapter: true, alphaScale };
    const blend: BlendWeight[] = choice === 'blend'
      ? get().tryIt.attached.map((a) => ({ adapterId: a.adapterId, weight: a.weight }))
      : [{ adapterId: paneAdapterId(choice), weight: 1 }];
    return { withAdapter: false, blend };
  };
  const run = async (which: 'base' | TryPane) => {
    const { prompt, maxTokens, temperature, topK, alphaScale, seed, panes } = get().tryIt;
    const choice = which === 'base' ? 'held' : panes[which];
    output(which, { status: 'running', prompt, text: '', tokens: 0, seconds: null, error: null, alphaScale, seed, temperature, ran: null, choice });
    try {
      const adapters = which === 'base' ? { withAdapter: false } : adaptersOf(choice, alphaScale);
      const res = await engine().request(
        { type: 'generate', prompt, maxTokens, temperature, topK, seed, ...adapters },
        { onEvent: (ev) => output(which, { text: ev.text }) },
      );
      output(which, { status: 'done', text: res.text, tokens: res.tokens, seconds: res.seconds, ran: res.ran });
    } catch (err) {
      output(which, { status: 'error', error: toFailure(err) });
    }
  };
  /** Regenerate the comparison panes `drives` picks, once the lane is free (a dragged slider queues one run, with the latest values). */
  const rerun = (kind: 'alpha' | 'blend', drives: (choice: PaneChoice) => boolean) => {
    if (queued[kind] || !modelUsable()) return;
    queued[kind] = true;
    void queue(async () => {
      queued[kind] = false; // a move from here on queues the next run, which reads the latest value
      for (const pane of ['adapted', 'second'] as const) {
        const { panes, alphaScale, [pane]: out } = get().tryIt;
        const choice = panes[pane];
        const current = choice === 'held' && out.status === 'done' && out.alphaScale === alphaScale; // the slider came back
        if (drives(choice) && !current && modelUsable() && runnable(choice)) await run(pane);
      }
    });
  };
  /** Attach or detach in the engine, then keep the sliders' weights of the adapters that stay. */
  const attachment = async (req: EngineRequestBody<'attachAdapter'> | EngineRequestBody<'detachAdapter'>) => {
    patchTry({ attaching: true, attachError: null, blendNotice: null });
    try {
      const res = await inLane(() => engine().request(req));
      const weights = new Map(get().tryIt.attached.map((a) => [a.adapterId, a.weight]));
      const attached: TryAdapter[] = res.attached.map((a) => ({ ...a, weight: weights.get(a.adapterId) ?? 1 }));
      const gone = (c: PaneChoice) => paneAdapterId(c) !== null && !attached.some((a) => a.adapterId === paneAdapterId(c));
      const { panes } = get().tryIt;
      patchTry({ attached, attaching: false, panes: { adapted: gone(panes.adapted) ? 'held' : panes.adapted, second: gone(panes.second) ? 'blend' : panes.second } });
    } catch (err) {
      patchTry({ attaching: false, attachError: toFailure(err) });
    }
  };
  /** Run `fn` in the generation lane (the engine refuses to detach while it generates) and hand back its result. */
  const inLane = <T>(fn: () => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => void queue(() => fn().then(resolve, reject)));
  return {
    tryIt: {
      prompt: 'My fellow Americans,', maxTokens: 24, temperature: 0.7, topK: 40, seed: 0, drafts: {}, alphaScale: 1, attaching: false, ...tryAfterModelLoad(),
    },
    setTry: (p) => set({ tryIt: { ...get().tryIt, ...p } }),
    setTryField: (field, text) => {
      const { value } = checkNumber(text, TRY_RULES[field]);
      const tryIt = get().tryIt;
      set({ tryIt: { ...tryIt, drafts: { ...tryIt.drafts, [field]: text }, ...(value === null ? {} : { [field]: value }) } });
    },
    setAlphaScale: (scale) => {
      const alphaScale = Math.min(2, Math.max(0, Number.isFinite(scale) ? scale : 1));
      if (alphaScale === get().tryIt.alphaScale) return;
      patchTry({ alphaScale });
      rerun('alpha', (c) => c === 'held');
    },
    setBlendWeight: (adapterId, w) => {
      const weight = Math.min(BLEND_WEIGHT_RANGE.max, Math.max(BLEND_WEIGHT_RANGE.min, Number.isFinite(w) ? w : 1));
      const { attached } = get().tryIt;
      if (attached.find((a) => a.adapterId === adapterId)?.weight === weight) return;
      patchTry({ attached: attached.map((a) => (a.adapterId === adapterId ? { ...a, weight } : a)), blendNotice: null });
      rerun('blend', (c) => c === 'blend');
    },
    choosePane: (pane, choice) => {
      patchTry({ panes: { ...get().tryIt.panes, [pane]: choice }, [pane]: emptyOutput(choice) });
    },
    attachAdapter: (adapterId) => attachment({ type: 'attachAdapter', adapterId }),
    detachAdapter: (adapterId) => attachment({ type: 'detachAdapter', adapterId }),
    saveBlend: async (name) => {
      const blend = get().tryIt.attached.map((a) => ({ adapterId: a.adapterId, weight: a.weight }));
      patchTry({ attaching: true, attachError: null, blendNotice: null });
      try {
        const saved = await inLane(() => engine().request({ type: 'saveBlend', name, blend }));
        patchTry({ attaching: false, blendNotice: `Saved the blend to the library as “${saved.name}”.` });
        await get().refreshLibrary();
      } catch (err) {
        patchTry({ attaching: false, attachError: toFailure(err) });
      }
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
        // The base model's answer first: it is worth seeing while the adapters' are on their way.
        await run('base');
        for (const pane of ['adapted', 'second'] as const) {
          const choice = get().tryIt.panes[pane];
          if (runnable(choice)) await run(pane);
          else output(pane, emptyOutput(choice));
        }
      }),
  };
};
