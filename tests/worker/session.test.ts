// The studio's engine session on Dawn, as the worker drives it but without postMessage: the embedded model
// loads from its files with progress and facts, the demo data tokenizes with a preview, a memory estimate
// refuses what cannot fit, a short run streams its steps (and pauses, resumes and stops), a non-finite loss
// stops a run and keeps a finite adapter, generation runs with and without the adapter (α scale 0 gives the
// base model's tokens), and the adapter is saved to the library with its history. Then the library side:
// a saved adapter loads back into the model (its logits bit-equal to before the save), one that does not fit
// is refused with the reason, α moves the engine's scale (α × 0 is the base model exactly, α × ½ is the
// adapter with lora_B halved), a loaded adapter trains further, and a run checkpointed into the library
// resumes in a new session (a closed tab) bit for bit, even after a checkpoint write failed for quota.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createNodeGpu } from '../../src/gpu/node';
import { AdapterLibrary } from '../../src/io/library';
import { memoryStore } from './memory_store';
import { loraKey, parseLoraKey } from '../../src/io/peft';
import { parseSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { parseModelConfig, weightShapes } from '../../src/model/config';
import type { EngineEvent, LoraSettings, OptimSettings } from '../../src/worker/protocol';
import { DEFAULT_MODEL, Session } from '../../src/worker/session';

const root = fileURLToPath(new URL('../..', import.meta.url));
const modelDir = join(root, 'public', DEFAULT_MODEL.dir);
const sotu = readFileSync(join(root, 'public/data/sotu/train.jsonl'), 'utf8').split('\n').slice(0, 60).join('\n');

const LORA: LoraSettings = { targets: ['q_proj', 'v_proj'], r: 8, alpha: 16, dropout: 0, rslora: false };
// Small on purpose: on SwiftShader every dispatch costs tens of milliseconds whatever its size.
const OPTIM: OptimSettings = { lr: 1e-3, schedule: 'cosine', warmupSteps: 1, steps: 3, batchSize: 1, gradAccum: 2, maxGradNorm: 1, seed: 0 };

/** moby-llama's files, with the named weights overwritten by `value` (stored as F32). */
function modelFiles(poison: Record<string, number> = {}): { path: string; blob: Blob }[] {
  return DEFAULT_MODEL.files.map((path) => {
    // A plain Uint8Array: parseSafetensors(...).readF32 misreads a Node Buffer (Buffer.slice is a view, not a copy).
    let bytes: Uint8Array = new Uint8Array(readFileSync(join(modelDir, path)));
    if (path === 'model.safetensors' && Object.keys(poison).length > 0) {
      const st = parseSafetensors(bytes, path);
      bytes = writeSafetensors([...st.tensors].map(([name, t]) => {
        const data = st.readF32(name);
        if (name in poison) data.fill(poison[name]);
        return { name, shape: t.shape, data };
      }));
    }
    return { path, blob: new Blob([bytes as Uint8Array<ArrayBuffer>]) };
  });
}

async function loadedSession(poison: Record<string, number> = {}, library = new AdapterLibrary({ store: memoryStore(), estimate: async () => undefined }), checkpointEveryMs?: number) {
  const session = new Session(() => createNodeGpu(), () => library, { checkpointEveryMs });
  const events: EngineEvent[] = [];
  const files = modelFiles(poison);
  const loaded = await session.loadModel({ id: 1, type: 'loadModel', source: { kind: 'files', label: 'moby-llama', files }, lora: LORA }, (e) => events.push({ ...e, id: 1 }));
  return { session, loaded, events, library };
}

describe('engine session', () => {
  it('loads the default model, tokenizes data, trains, generates and saves', async () => {
    const { session, loaded, events, library } = await loadedSession();
    // The default model is retrained from time to time: its numbers come from its own files.
    const config = parseModelConfig(readFileSync(join(modelDir, 'config.json'), 'utf8'));
    const dtype = [...parseSafetensors(new Uint8Array(readFileSync(join(modelDir, 'model.safetensors'))), 'model.safetensors').tensors.values()][0].dtype;
    expect(loaded.model).toMatchObject({ name: 'moby-llama', architecture: 'LlamaForCausalLM', layers: config.layers, vocab: config.vocab, hidden: config.hidden, dtype, hasTokenizer: true });
    expect(loaded.model.params).toBe([...weightShapes(config).values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0));
    // r·(in + out) for q (C → H·D) and v (C → KV·D), per layer.
    const q = config.heads * config.headDim, kv = config.kvHeads * config.headDim;
    expect(loaded.trainable?.params).toBe(config.layers * 8 * (config.hidden + q + config.hidden + kv));
    const last = events.filter((e) => e.type === 'progress' && e.file === 'model.safetensors').pop();
    expect(last).toMatchObject({ percent: 100 });

    const data = await session.loadDataset({ id: 2, type: 'loadDataset', text: sotu, fileName: 'train.jsonl', seqLen: 16, validationShare: 0.1, pack: true });
    expect(data.format).toBe('text-rows');
    expect(data.stats.rows).toBe(60);
    expect(data.validationRows).toBeGreaterThan(0);
    expect(data.preview[0].text).toMatch(/^Mr. Speaker/);
    expect(data.firstTokens.join('')).toMatch(/^Mr. Speaker/);

    const fits = await session.estimateMemory({ id: 3, type: 'estimateMemory', lora: LORA, optim: OPTIM, seqLen: 16 });
    expect(fits.refusal).toBeNull();
    expect(fits.bytes).toBeGreaterThan(fits.breakdown.weights);
    const huge = await session.estimateMemory({ id: 4, type: 'estimateMemory', lora: LORA, optim: { ...OPTIM, batchSize: 4096 }, seqLen: 256 });
    expect(huge.refusal).toMatch(/^Needs about [\d,]+ MB of GPU memory; the studio allows itself [\d,]+ MB here/);
    const none = await session.estimateMemory({ id: 5, type: 'estimateMemory', lora: { ...LORA, targets: [] }, optim: OPTIM, seqLen: 16 });
    expect(none.refusal).toMatch(/at least one target module/);

    // Base-model tokens (and next-token logits) before any adapter exists.
    const baseLogits = await session.nextTokenLogits('The whale', null);
    const base = await session.generate({ id: 6, type: 'generate', prompt: 'The whale', maxTokens: 3, temperature: 0, topK: 0, withAdapter: false }, () => {});
    await expect(session.generate({ id: 7, type: 'generate', prompt: 'The whale', maxTokens: 3, temperature: 0, topK: 0, withAdapter: true }, () => {}))
      .rejects.toThrow('There is no adapter yet');

    // A run of 3 steps, paused after the first and resumed.
    const steps: Extract<EngineEvent, { type: 'trainProgress' }>[] = [];
    const pauses: Extract<EngineEvent, { type: 'trainPaused' }>[] = [];
    let paused = false;
    const done = session.train({ id: 8, type: 'train', lora: LORA, optim: OPTIM }, (e) => {
      if (e.type === 'trainPaused') return void pauses.push({ ...e, id: 8 });
      steps.push({ ...e, id: 8 });
      if (e.step === 1) {
        expect(session.pause().state).toBe('paused');
        paused = true;
        setTimeout(() => session.resume(), 50);
      }
    });
    const stopped = await done;
    expect(paused).toBe(true);
    expect(stopped).toMatchObject({ type: 'trainStopped', reason: 'done', steps: 3 });
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3]);
    // The pause waited after step 1, the step on show when it was asked for, and its checkpoint holds step 1.
    expect(pauses).toEqual([{ id: 8, type: 'trainPaused', step: 1, checkpointStep: 1, adapterId: stopped.adapterId }]);
    expect(steps[0].lr).toBe(0); // warm-up from 0
    for (const s of steps) expect(Number.isFinite(s.loss) && s.tokensPerSec > 0).toBe(true);
    expect(steps[2].valLoss).toBeGreaterThan(0);
    expect(steps[2].etaSec).toBe(0);
    // The trainer's measured activations replace the formula for this shape.
    expect((await session.estimateMemory({ id: 9, type: 'estimateMemory', lora: LORA, optim: OPTIM, seqLen: 16 })).measured).toBe(true);

    // With the adapter at α × 0 the tokens are the base model's; at α × 1 they come from the adapted model.
    const off = await session.generate({ id: 10, type: 'generate', prompt: 'The whale', maxTokens: 3, temperature: 0, topK: 0, withAdapter: true, alphaScale: 0 }, () => {});
    expect(off.text).toBe(base.text);
    const tokens: string[] = [];
    const on = await session.generate({ id: 11, type: 'generate', prompt: 'The whale', maxTokens: 3, temperature: 0.8, topK: 20, withAdapter: true, seed: 3 }, (e) => tokens.push(e.text));
    expect(on.tokens).toBe(tokens.length);
    expect(tokens.at(-1)).toBe(on.text);

    // The finished run went into the library by itself; saving names that entry (no second copy).
    expect(stopped.adapterId).not.toBeNull();
    const saved = await session.saveAdapter({ id: 12, type: 'saveAdapter', name: 'president' });
    expect(saved).toMatchObject({ name: 'president', steps: 3, adapterId: stopped.adapterId });
    const [entry, ...others] = await library.list();
    expect(others).toEqual([]);
    expect(entry).toMatchObject({ name: 'president', baseModel: 'moby-llama', steps: 3, r: 8, targetModules: ['q_proj', 'v_proj'], hasCheckpoint: false });
    expect(entry.lastLoss).toBeCloseTo(steps[2].loss, 6);

    // α: the effective scale s = α/r in the engine. α × 0 is the base model bit for bit; α × 1 moves it.
    const adapted = await session.nextTokenLogits('The whale', 1);
    expect(await session.nextTokenLogits('The whale', 0)).toEqual(baseLogits);
    expect(adapted.some((v, i) => v !== baseLogits[i])).toBe(true);
    const half = await session.nextTokenLogits('The whale', 0.5);

    // An adapter with every lora_B halved, at α × 1, is the trained one at α × ½: (s/2)·(u·Bᵀ) = s·(u·(B/2)ᵀ),
    // exactly in f32 (halving is exact), so bit-equal logits show α really reaches the kernel's scale.
    const president = await library.get(saved.adapterId);
    const st = parseSafetensors(president.weights, 'adapter_model.safetensors');
    const halved = writeSafetensors([...st.tensors].map(([name, t]) => {
      const data = st.readF32(name);
      if (parseLoraKey(name)?.which === 'B') for (let i = 0; i < data.length; i++) data[i] *= 0.5;
      return { name, shape: t.shape, data };
    }));
    const halfEntry = await library.save({ ...president, id: undefined, name: 'half', weights: halved });
    const loadedHalf = await session.loadAdapter({ id: 13, type: 'loadAdapter', adapterId: halfEntry.id });
    expect(loadedHalf).toMatchObject({ name: 'half', steps: 3, lora: LORA, checkpoint: null, note: null });
    expect(await session.nextTokenLogits('The whale', 1)).toEqual(half);

    // Loading the saved adapter back gives the trained model's logits bit for bit (F32 round trip), with its history.
    const back = await session.loadAdapter({ id: 14, type: 'loadAdapter', adapterId: saved.adapterId });
    expect(back).toMatchObject({ type: 'adapterLoaded', name: 'president', baseModel: 'moby-llama', steps: 3, lora: LORA, checkpoint: null });
    expect(back.lossHistory).toEqual(president.lossHistory);
    expect(await session.nextTokenLogits('The whale', 1)).toEqual(adapted);
    expect(await session.nextTokenLogits('The whale', 0)).toEqual(baseLogits);

    // An adapter made for a wider q_proj is refused, saying which shapes disagree; the loaded one stays.
    const qOut = config.heads * config.headDim;
    const wrongB = qOut + 32;
    const wrongWeights = writeSafetensors(Array.from({ length: config.layers }, (_, l) => [
      { name: loraKey(l, 'q_proj', 'A'), shape: [8, config.hidden], data: new Float32Array(8 * config.hidden) },
      { name: loraKey(l, 'q_proj', 'B'), shape: [wrongB, 8], data: new Float32Array(wrongB * 8) },
    ]).flat());
    const wrong = await library.save({
      name: 'wrong', baseModel: 'other/model', steps: 0, lossHistory: [], weights: wrongWeights,
      config: { r: 8, loraAlpha: 16, loraDropout: 0, targetModules: ['q_proj'], useRslora: false, baseModel: 'other/model' },
    });
    await expect(session.loadAdapter({ id: 15, type: 'loadAdapter', adapterId: wrong.id })).rejects.toThrow(new RegExp(
      `^“wrong” was trained on other/model with r=8 on q_proj, and does not fit the loaded model: adapter_model\\.safetensors: ` +
        `lora_B of q_proj has out_features ${wrongB} \\(shape \\[${wrongB}, 8\\]\\), but .*'s q_proj has out_features ${qOut}: ` +
        'the adapter was trained for another model\\. Load other/model to use it\\.$',
    ));
    expect(await session.nextTokenLogits('The whale', 1)).toEqual(adapted);

    // Training goes on from a loaded adapter: more steps, into a new entry; the saved one is untouched.
    const more = await session.train({ id: 16, type: 'train', lora: LORA, optim: { ...OPTIM, steps: 1, gradAccum: 1 }, continue: true }, () => {});
    expect(more).toMatchObject({ reason: 'done', steps: 4, message: expect.stringMatching(/^Trained to step 4 of 4\. It is in the library as “president \(continued\)”\.$/) });
    const continued = await library.get(more.adapterId!);
    expect(continued).toMatchObject({ name: 'president (continued)', steps: 4 });
    expect(continued.lossHistory.slice(0, president.lossHistory.length)).toEqual(president.lossHistory);
    expect((await library.get(saved.adapterId)).steps).toBe(3);
    await expect(session.train({ id: 17, type: 'train', lora: { ...LORA, r: 4 }, optim: OPTIM, continue: true }, () => {}))
      .rejects.toThrow('The adapter to continue has r=8, α=16 on q_proj, v_proj; set the LoRA settings back to these');
  }, 600_000);

  it('stops on request, and stops itself on a non-finite loss keeping a finite adapter', async () => {
    const { session } = await loadedSession();
    await session.loadDataset({ id: 2, type: 'loadDataset', text: sotu, fileName: 'train.jsonl', seqLen: 16, validationShare: 0, pack: true });
    const optim = { ...OPTIM, gradAccum: 1, warmupSteps: 0, schedule: 'constant' as const, maxGradNorm: 0, steps: 50 };

    const run = session.train({ id: 3, type: 'train', lora: LORA, optim }, (e) => {
      if (e.step === 2) session.stop();
    });
    await expect(session.train({ id: 4, type: 'train', lora: LORA, optim }, () => {})).rejects.toThrow('Training is running');
    expect(await run).toMatchObject({ reason: 'stopped', steps: 2 });

    // A non-finite loss. (An absurd learning rate does not give one here: AdamW's steps are bounded by lr, and
    // RMSNorm turns overflowing activations into zeros, so the loss settles at ln V. A NaN in the weights does.)
    const poisoned = await loadedSession({ 'model.norm.weight': NaN });
    await poisoned.session.loadDataset({ id: 2, type: 'loadDataset', text: sotu, fileName: 'train.jsonl', seqLen: 16, validationShare: 0, pack: true });
    const nan = await poisoned.session.train({ id: 5, type: 'train', lora: LORA, optim: { ...optim, steps: 3 } }, () => {});
    expect(nan).toMatchObject({ reason: 'nan', steps: 0, lastLoss: null });
    expect(nan.message).toBe(
      'The loss became NaN at step 1, so training stopped. The adapter from step 0 (the last with a finite loss) is kept. ' +
        'Lower the learning rate, or turn on gradient clipping, and start again.',
    );
    const saved = await poisoned.session.saveAdapter({ id: 6, type: 'saveAdapter', name: 'kept' });
    expect(saved.steps).toBe(0);
    const entry = await poisoned.library.get(saved.adapterId);
    const tensors = parseSafetensors(entry.weights, 'adapter_model.safetensors');
    for (const name of tensors.tensors.keys()) expect(tensors.readF32(name).every(Number.isFinite), name).toBe(true);
  }, 600_000);

  it('checkpoints a run into the library and resumes it in a new session bit for bit, even after a failed write', async () => {
    // Dropout on, so the resumed run must also restore the dropout masks' step counter to match.
    const lora: LoraSettings = { ...LORA, dropout: 0.1 };
    const optim: OptimSettings = { ...OPTIM, gradAccum: 1, steps: 4 };
    const dataReq = { id: 2, type: 'loadDataset' as const, text: sotu, fileName: 'train.jsonl', seqLen: 16, validationShare: 0, pack: true };
    type Progress = Extract<EngineEvent, { type: 'trainProgress' }>;

    // The reference: 4 steps without a break.
    const whole = await loadedSession();
    await whole.session.loadDataset(dataReq);
    const wholeSteps: Progress[] = [];
    const wholeRun = await whole.session.train({ id: 3, type: 'train', lora, optim }, (e) => void (e.type === 'trainProgress' && wholeSteps.push({ ...e, id: 3 })));
    expect(wholeRun).toMatchObject({ reason: 'done', steps: 4, resumable: false });
    const wholeEntry = await whole.library.get(wholeRun.adapterId!);

    // The interrupted run checkpoints after every step; the storage fills up after step 2, so the write
    // at step 3 fails and training goes on; the tab "closes" (stop) after step 3.
    let full = false;
    const store = memoryStore();
    const library = new AdapterLibrary({ store, estimate: async () => (full ? { usage: 10, quota: 10 } : undefined) });
    const first = await loadedSession({}, library, 0);
    await first.session.loadDataset(dataReq);
    const firstSteps: Progress[] = [];
    const stopped = await first.session.train({ id: 3, type: 'train', lora, optim }, (e) => {
      if (e.type !== 'trainProgress') return;
      firstSteps.push({ ...e, id: 3 });
      if (e.step === 2) full = true;
      if (e.step === 3) first.session.stop();
    });
    expect(firstSteps.map((e) => e.checkpointStep)).toEqual([1, 2, undefined]);
    expect(firstSteps[2].checkpointError).toMatch(/^The checkpoint at step 3 could not be saved \(Not enough browser storage/);
    expect(stopped).toMatchObject({ reason: 'stopped', steps: 3, resumable: false });
    expect(stopped.message).toMatch(/; it keeps the checkpoint from step 2\. Free some space and save the adapter from here\.$/);
    const [listed] = await library.list();
    expect(listed).toMatchObject({ id: stopped.adapterId, steps: 2, hasCheckpoint: true, plannedSteps: 4 });
    const kept = await library.get(stopped.adapterId!);
    expect(kept.checkpoint).toMatchObject({ step: 2, totalSteps: 4, dataCursor: { epoch: 0, index: 2 } });
    expect(kept.lossHistory.map((p) => p.loss)).toEqual(wholeSteps.slice(0, 2).map((e) => e.loss));

    // A new tab: a new session on the same library. It refuses other data, then resumes at step 3.
    full = false;
    const second = await loadedSession({}, library);
    await second.session.loadDataset({ ...dataReq, seqLen: 32 });
    await expect(second.session.resumeRun({ id: 4, type: 'resumeRun', adapterId: kept.id }, () => {})).rejects.toThrow(
      `“${kept.name}” was training on other data: the sequence length is 32, not 16. Load “train.jsonl” with the run's settings, then resume.`,
    );
    await second.session.loadDataset(dataReq);
    const resumedSteps: Progress[] = [];
    const resumed = await second.session.resumeRun({ id: 5, type: 'resumeRun', adapterId: kept.id }, (e) => void (e.type === 'trainProgress' && resumedSteps.push({ ...e, id: 5 })));
    expect(resumed).toMatchObject({ reason: 'done', steps: 4, adapterId: kept.id, resumable: false });
    expect(resumedSteps.map((e) => [e.step, e.steps])).toEqual([[3, 4], [4, 4]]);
    // Weights, AdamW moments and t, the schedule, the data walk and the dropout counter all restored: the
    // losses and the final adapter are bit-equal to the unbroken run's (tolerance 0).
    expect(resumedSteps.map((e) => e.loss)).toEqual(wholeSteps.slice(2).map((e) => e.loss));
    expect(resumedSteps.map((e) => e.lr)).toEqual(wholeSteps.slice(2).map((e) => e.lr));
    const finished = await library.get(kept.id);
    expect(finished.steps).toBe(4);
    expect(finished.checkpoint).toBeUndefined(); // finished: the checkpoint is dropped, the adapter stays
    expect(finished.lossHistory).toEqual(wholeEntry.lossHistory);
    expect(Buffer.from(finished.weights).equals(Buffer.from(wholeEntry.weights))).toBe(true);
    await expect(second.session.resumeRun({ id: 6, type: 'resumeRun', adapterId: kept.id }, () => {})).rejects.toThrow('has no unfinished run to resume');
  }, 600_000);
});
