// Try it's swap and live blend in the engine session, on the embedded model: library adapters attach beside
// the loaded base (one of another base is refused, saying why, and nothing changes), generation runs the
// base, any one adapter or a weighted blend and says what it really ran, the live blend's logits equal those
// of the blend saved as a library entry (PEFT's cat) and loaded, bad weights are refused, a detached adapter
// is gone, and none of it writes a base weight's buffer again.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import type { Gpu } from '../../src/gpu/gpu';
import { createNodeGpu } from '../../src/gpu/node';
import { AdapterLibrary } from '../../src/io/library';
import { memoryStore } from './memory_store';
import { loraKey, writeAdapter, type AdapterConfig } from '../../src/io/peft';
import { parseModelConfig, projectionDims, type ModelConfig } from '../../src/model/config';
import { adapterExpectation } from '../../src/model/lora';
import { weightBuffers, type GpuWeights } from '../../src/model/gpu_weights';
import { DEFAULT_MODEL, Session } from '../../src/worker/session';
import { relMaxDiff } from '../gpu/test-gpu';
import { mulberry32, randn } from '../reference/rng';

const root = fileURLToPath(new URL('../..', import.meta.url));
const modelDir = join(root, 'public', DEFAULT_MODEL.dir);
const config = parseModelConfig(readFileSync(join(modelDir, 'config.json'), 'utf8'));

function randomWeights(c: ModelConfig, cfg: AdapterConfig, seed: number): Map<string, Float32Array> {
  const rng = mulberry32(seed);
  const w = new Map<string, Float32Array>();
  for (let l = 0; l < c.layers; l++) {
    for (const t of cfg.targetModules) {
      const { inFeatures, outFeatures } = projectionDims(c, t);
      w.set(loraKey(l, t, 'A'), Float32Array.from(randn(rng, cfg.r * inFeatures, 0.1)));
      w.set(loraKey(l, t, 'B'), Float32Array.from(randn(rng, outFeatures * cfg.r, 0.1)));
    }
  }
  return w;
}

async function save(library: AdapterLibrary, name: string, cfg: AdapterConfig, c: ModelConfig, seed: number) {
  const { weights } = writeAdapter(cfg, randomWeights(c, cfg, seed), adapterExpectation(c));
  return library.save({ name, baseModel: cfg.baseModel, config: cfg, weights, steps: 0, lossHistory: [] });
}

const poet: AdapterConfig = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false, baseModel: 'moby-llama' };
const sailor: AdapterConfig = { r: 2, loraAlpha: 4, loraDropout: 0, targetModules: ['q_proj', 'o_proj', 'down_proj'], useRslora: true, baseModel: 'moby-llama' };

describe('Try it: attached adapters, swap and live blend', () => {
  it('attaches, swaps, blends, saves the blend and detaches without touching the base weights', async () => {
    const library = new AdapterLibrary({ store: memoryStore(), estimate: async () => undefined });
    let gpu: Gpu | undefined;
    const session = new Session(async () => (gpu = await createNodeGpu()), () => library);
    const files = DEFAULT_MODEL.files.map((path) => ({ path, blob: new Blob([new Uint8Array(readFileSync(join(modelDir, path)))]) }));
    await session.loadModel({ id: 1, type: 'loadModel', source: { kind: 'files', label: 'moby-llama', files } }, () => {});
    const write = vi.spyOn(gpu!, 'write');
    const upload = vi.spyOn(gpu!, 'upload');
    const [a, b] = [await save(library, 'poet', poet, config, 1), await save(library, 'sailor', sailor, config, 2)];
    const wide = parseModelConfig(JSON.stringify({ ...JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')), hidden_size: 96 }));
    const other = await save(library, 'elsewhere', { ...poet, baseModel: 'other/model' }, wide, 3);

    expect((await session.attachAdapter({ id: 2, type: 'attachAdapter', adapterId: a.id })).attached.map((x) => x.name)).toEqual(['poet']);
    const both = await session.attachAdapter({ id: 3, type: 'attachAdapter', adapterId: b.id });
    expect(both.attached).toMatchObject([{ adapterId: a.id, name: 'poet', lora: { r: 4, alpha: 8, targets: ['q_proj', 'v_proj'] }, note: null }, { name: 'sailor' }]);
    await expect(session.attachAdapter({ id: 4, type: 'attachAdapter', adapterId: other.id })).rejects.toThrow(/^“elsewhere” was trained on other\/model .*does not fit the loaded model: .*Load other\/model to use it\.$/);
    expect((await session.attachAdapter({ id: 5, type: 'attachAdapter', adapterId: a.id })).attached).toHaveLength(2); // once is enough

    const ask = { type: 'generate' as const, prompt: 'The whale', maxTokens: 3, temperature: 0, topK: 0, withAdapter: false };
    const base = await session.generate({ id: 6, ...ask }, () => {});
    expect(base.ran).toEqual([]);
    const off = await session.generate({ id: 7, ...ask, blend: [{ adapterId: a.id, weight: 0 }, { adapterId: b.id, weight: 0 }] }, () => {});
    expect(off).toMatchObject({ text: base.text, ran: [] });
    const poetOnly = await session.generate({ id: 8, ...ask, blend: [{ adapterId: a.id, weight: 1 }] }, () => {});
    expect(poetOnly.ran).toEqual([{ adapterId: a.id, name: 'poet', weight: 1 }]);
    const mix = [{ adapterId: a.id, weight: 0.8 }, { adapterId: b.id, weight: -1.5 }];
    const mixed = await session.generate({ id: 9, ...ask, blend: mix }, () => {});
    expect(mixed.ran).toEqual([{ adapterId: a.id, name: 'poet', weight: 0.8 }, { adapterId: b.id, name: 'sailor', weight: -1.5 }]);

    await expect(session.generate({ id: 10, ...ask, blend: [{ adapterId: a.id, weight: Number.NaN }] }, () => {})).rejects.toThrow('The weight of “poet” is NaN: give a finite number');
    await expect(session.generate({ id: 11, ...ask, blend: [{ adapterId: null, weight: 1 }] }, () => {})).rejects.toThrow('There is no adapter yet');
    await expect(session.generate({ id: 12, ...ask, blend: [{ adapterId: a.id, weight: 1 }, { adapterId: a.id, weight: 2 }] }, () => {})).rejects.toThrow('“poet” is in the blend twice');

    // Nothing so far wrote a base weight's buffer or uploaded anything but the adapters' own A and B.
    expect(upload.mock.calls.every(([label]) => label.startsWith('attached.'))).toBe(true);
    const baseLogits = await session.nextTokenLogits('The whale', null);
    const live = await session.nextTokenLogits('The whale', null, mix);
    expect(relMaxDiff(live, baseLogits)).toBeGreaterThan(1e-4);

    // The blend saved into the library (cat) and loaded as the held adapter gives the live blend's logits.
    const saved = await session.saveBlend({ id: 13, type: 'saveBlend', name: 'poet − sailor', blend: mix });
    const entry = await library.get(saved.adapterId);
    expect(entry).toMatchObject({ name: 'poet − sailor', baseModel: 'moby-llama', config: { r: 6, loraAlpha: 6, useRslora: false } });
    expect(entry.config.targetModules).toEqual(['q_proj', 'v_proj', 'o_proj', 'down_proj']);
    await session.loadAdapter({ id: 14, type: 'loadAdapter', adapterId: saved.adapterId });
    const d = relMaxDiff(await session.nextTokenLogits('The whale', 1), live);
    expect(d, `maxdiff ${d}`).toBeLessThan(1e-5);
    // The held adapter joins a blend too: held at 1 with poet at −0.8 and sailor at 1.5 is the base again.
    const undone = await session.nextTokenLogits('The whale', null, [{ adapterId: null, weight: 1 }, { adapterId: a.id, weight: -0.8 }, { adapterId: b.id, weight: 1.5 }]);
    expect(relMaxDiff(undone, baseLogits)).toBeLessThan(1e-5);

    const detached = await session.detachAdapter({ id: 15, type: 'detachAdapter', adapterId: b.id });
    expect(detached.attached.map((x) => x.name)).toEqual(['poet']);
    await expect(session.generate({ id: 16, ...ask, blend: mix }, () => {})).rejects.toThrow('That adapter is not attached');
    expect((await session.generate({ id: 17, ...ask, blend: [{ adapterId: a.id, weight: 1 }] }, () => {})).text).toBe(poetOnly.text);

    const baseBuffers = new Set(weightBuffers((session as unknown as { loaded: { model: { weights: GpuWeights } } }).loaded.model.weights));
    expect(write.mock.calls.filter(([buf]) => baseBuffers.has(buf))).toEqual([]);
    expect(upload.mock.calls.filter(([label]) => !label.startsWith('attached.') && !label.startsWith('base_model.'))).toEqual([]);
  }, 600_000);
});
