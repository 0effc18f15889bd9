// DoRA in the studio's engine session: the LoRA panel's switch reaches training (a fresh adapter's
// magnitudes start at the base weights' row norms), the run's library entry is a PEFT DoRA adapter
// (use_dora and one lora_magnitude_vector per projection), loading it says DoRA back to the panel, and
// continuing it with the switch off is refused with what to set.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createNodeGpu } from '../../src/gpu/node';
import { AdapterLibrary } from '../../src/io/library';
import { memoryStore } from './memory_store';
import { adapterConfigToJson } from '../../src/io/peft';
import { parseSafetensors } from '../../src/io/safetensors';
import type { LoraSettings, OptimSettings } from '../../src/worker/protocol';
import { DEFAULT_MODEL, Session } from '../../src/worker/session';

const root = fileURLToPath(new URL('../..', import.meta.url));
const modelDir = join(root, 'public/models/moby-llama');
const sotu = readFileSync(join(root, 'public/data/sotu/train.jsonl'), 'utf8').split('\n').slice(0, 30).join('\n');

const LORA: LoraSettings = { targets: ['q_proj', 'v_proj'], r: 4, alpha: 8, dropout: 0.1, rslora: false, dora: true };
const OPTIM: OptimSettings = { lr: 1e-3, schedule: 'constant', warmupSteps: 0, steps: 2, batchSize: 1, gradAccum: 1, maxGradNorm: 1, seed: 0 };

describe('DoRA in the engine session', () => {
  it('trains a DoRA adapter into the library as PEFT writes one, loads it back, and refuses to continue it as plain LoRA', async () => {
    const library = new AdapterLibrary({ store: memoryStore(), estimate: async () => undefined });
    const session = new Session(() => createNodeGpu(), () => library);
    const files = DEFAULT_MODEL.files.map((path) => ({ path, blob: new Blob([new Uint8Array(readFileSync(join(modelDir, path)))]) }));
    const loaded = await session.loadModel({ id: 1, type: 'loadModel', source: { kind: 'files', label: 'moby-llama', files }, lora: LORA }, () => {});
    const plain = (await session.estimateMemory({ id: 2, type: 'estimateMemory', lora: { ...LORA, dora: false }, optim: OPTIM, seqLen: 16 })).trainable.params;
    expect(loaded.trainable!.params).toBeGreaterThan(plain); // + out_features per projection and layer
    await session.loadDataset({ id: 3, type: 'loadDataset', text: sotu, fileName: 'train.jsonl', seqLen: 16, validationShare: 0, pack: true });

    const done = await session.train({ id: 4, type: 'train', lora: LORA, optim: OPTIM }, () => {});
    expect(done).toMatchObject({ reason: 'done', steps: 2 });
    const entry = await library.get(done.adapterId!);
    expect(entry.config.useDora).toBe(true);
    expect(adapterConfigToJson(entry.config).use_dora).toBe(true);
    const tensors = parseSafetensors(entry.weights, 'adapter_model.safetensors').tensors;
    const magnitudes = [...tensors.keys()].filter((k) => k.endsWith('.self_attn.q_proj.lora_magnitude_vector'));
    expect(magnitudes.length).toBeGreaterThan(0);

    const back = await session.loadAdapter({ id: 5, type: 'loadAdapter', adapterId: entry.id });
    expect(back.lora).toMatchObject({ dora: true, dropout: 0.1 });
    await expect(session.train({ id: 6, type: 'train', lora: { ...LORA, dora: false }, optim: OPTIM, continue: true }, () => {}))
      .rejects.toThrow('The adapter to continue has r=4, α=8 (DoRA) on q_proj, v_proj; set the LoRA settings back to these');
  }, 600_000);
});
