// The studio's engine session on Dawn, as the worker drives it but without postMessage: the embedded model
// loads from its files with progress and facts, the demo data tokenizes with a preview, a memory estimate
// refuses what cannot fit, a short run streams its steps (and pauses, resumes and stops), a non-finite loss
// stops a run and keeps a finite adapter, generation runs with and without the adapter (α scale 0 gives the
// base model's tokens), and the adapter is saved to the library with its history.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createNodeGpu } from '../../src/gpu/node';
import { AdapterLibrary, type KeyValueStore } from '../../src/io/library';
import { parseSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { parseModelConfig, weightShapes } from '../../src/model/config';
import type { EngineEvent, LoraSettings, OptimSettings } from '../../src/worker/protocol';
import { DEFAULT_MODEL, Session } from '../../src/worker/session';

const root = fileURLToPath(new URL('../..', import.meta.url));
const modelDir = join(root, 'public', DEFAULT_MODEL.dir);
const sotu = readFileSync(join(root, 'public/data/sotu/train.jsonl'), 'utf8').split('\n').slice(0, 60).join('\n');

function memoryStore(): KeyValueStore {
  const m = new Map<string, unknown>();
  return {
    get: async (k) => structuredClone(m.get(k)),
    set: async (k, v) => void m.set(k, structuredClone(v)),
    del: async (k) => void m.delete(k),
    keys: async () => [...m.keys()],
  };
}

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

async function loadedSession(poison: Record<string, number> = {}) {
  const library = new AdapterLibrary({ store: memoryStore(), estimate: async () => undefined });
  const session = new Session(() => createNodeGpu(), () => library);
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

    // Base-model tokens before any adapter exists.
    const base = await session.generate({ id: 6, type: 'generate', prompt: 'The whale', maxTokens: 3, temperature: 0, topK: 0, withAdapter: false }, () => {});
    await expect(session.generate({ id: 7, type: 'generate', prompt: 'The whale', maxTokens: 3, temperature: 0, topK: 0, withAdapter: true }, () => {}))
      .rejects.toThrow('There is no adapter yet');

    // A run of 3 steps, paused after the first and resumed.
    const steps: Extract<EngineEvent, { type: 'trainProgress' }>[] = [];
    let paused = false;
    const done = session.train({ id: 8, type: 'train', lora: LORA, optim: OPTIM }, (e) => {
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

    const saved = await session.saveAdapter({ id: 12, type: 'saveAdapter', name: 'president' });
    expect(saved).toMatchObject({ name: 'president', steps: 3 });
    const [entry] = await library.list();
    expect(entry).toMatchObject({ name: 'president', baseModel: 'moby-llama', steps: 3, r: 8, targetModules: ['q_proj', 'v_proj'] });
    expect(entry.lastLoss).toBeCloseTo(steps[2].loss, 6);
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
});
