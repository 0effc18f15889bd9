// The studio's base dtype and recompute switch through the engine session (src/worker/base_dtype.ts,
// session.ts), on Dawn with the embedded moby-llama: an unknown base dtype is refused before anything is read
// (nothing loads, nothing is lost); without one the model holds its base in the checkpoint's own dtype; a
// run with recompute on, over an NF4 base, keeps both with its library entry, its memory estimate is the one
// its trainer was built for, and its recipe loads the base in 4 bits and checkpoints gradients.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createNodeGpu } from '../../src/gpu/node';
import { AdapterLibrary } from '../../src/io/library';
import { askedBaseDtype } from '../../src/worker/base_dtype';
import { storedBaseDtype } from '../../src/model/streamed_model';
import type { LoraSettings, OptimSettings, RunSettings } from '../../src/worker/protocol';
import { DEFAULT_MODEL, Session } from '../../src/worker/session';
import { memoryStore } from './memory_store';

const root = fileURLToPath(new URL('../..', import.meta.url));
const modelDir = join(root, 'public', DEFAULT_MODEL.dir);
const sotu = readFileSync(join(root, 'public/data/sotu/train.jsonl'), 'utf8').split('\n').slice(0, 20).join('\n');
const files = () => DEFAULT_MODEL.files.map((path) => ({ path, blob: new Blob([new Uint8Array(readFileSync(join(modelDir, path)))]) }));

const LORA: LoraSettings = { targets: ['q_proj', 'v_proj'], r: 4, alpha: 8, dropout: 0, rslora: false };
const OPTIM: OptimSettings = { lr: 1e-3, schedule: 'constant', warmupSteps: 0, steps: 1, batchSize: 1, gradAccum: 1, maxGradNorm: 1, seed: 1, recompute: true };

describe('base dtype', () => {
  it('is the checkpoint’s own unless asked, and an unknown one is refused with the choices', () => {
    expect([['BF16'], ['F16'], ['F32'], ['BF16', 'F32'], ['F16', 'F32'], []].map((d) => storedBaseDtype(new Set(d)))).toEqual(['bf16', 'f16', 'f32', 'f32', 'f32', 'f32']);
    expect(askedBaseDtype(undefined)).toBeUndefined();
    for (const d of ['f32', 'bf16', 'f16', 'nf4', 'int8']) expect(askedBaseDtype(d)).toBe(d);
    for (const bad of ['fp8', 'F16', 4, null]) expect(() => askedBaseDtype(bad)).toThrow(/^Unknown base dtype .*; choose f32, bf16, f16, nf4, int8, or leave it to the checkpoint's own\.$/);
  });

  it('loads as asked, and a run keeps its base dtype and recompute switch with its entry and recipe', async () => {
    const library = new AdapterLibrary({ store: memoryStore(), estimate: async () => undefined });
    const session = new Session(() => createNodeGpu(), () => library);
    const load = (baseDtype?: string) =>
      session.loadModel({ id: 1, type: 'loadModel', source: { kind: 'files', label: 'moby-llama', files: files() }, ...(baseDtype ? { baseDtype: baseDtype as never } : {}) }, () => {});

    const progress: unknown[] = [];
    await expect(session.loadModel({ id: 1, type: 'loadModel', source: { kind: 'files', label: 'moby-llama', files: files() }, baseDtype: 'fp4' as never }, (e) => progress.push(e)))
      .rejects.toThrow(/^Unknown base dtype "fp4"/);
    expect(progress).toEqual([]); // refused before a byte was read
    await expect(session.estimateMemory({ id: 2, type: 'estimateMemory', lora: LORA, optim: OPTIM, seqLen: 16 })).rejects.toThrow(/Load a model first/);

    const stored = await load();
    expect(stored.model.baseDtype).toBe(storedBaseDtype(new Set(stored.model.dtype.split(', '))));
    const nf4 = await load('nf4');
    expect(nf4.model).toMatchObject({ baseDtype: 'nf4', dtype: stored.model.dtype });

    await session.loadDataset({ id: 3, type: 'loadDataset', text: sotu, fileName: 'sotu/train.jsonl', seqLen: 16, validationShare: 0, pack: true });
    const before = await session.estimateMemory({ id: 4, type: 'estimateMemory', lora: LORA, optim: OPTIM, seqLen: 16 });
    expect(before).toMatchObject({ refusal: null, alternatives: [], measured: false });
    const run = await session.train({ id: 5, type: 'train', lora: LORA, optim: OPTIM }, () => {});
    expect(run.reason, run.message).toBe('done');
    // The trainer was built for the recompute plan, and only for it.
    expect((await session.estimateMemory({ id: 6, type: 'estimateMemory', lora: LORA, optim: OPTIM, seqLen: 16 })).measured).toBe(true);
    expect((await session.estimateMemory({ id: 7, type: 'estimateMemory', lora: LORA, optim: { ...OPTIM, recompute: false }, seqLen: 16 })).measured).toBe(false);

    const entry = await library.get(run.adapterId!);
    const kept = entry.run as Partial<RunSettings> | undefined;
    expect(kept?.baseDtype).toBe('nf4');
    expect(kept?.optim).toEqual(OPTIM);
    const recipe = await (await session.exportAdapter({ id: 8, type: 'exportAdapter', adapterId: run.adapterId!, format: 'recipe' })).blob.text();
    expect(recipe).toContain('    quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16),\n');
    expect(recipe).toContain('    gradient_checkpointing=True,');
  }, 600_000);
});
