// The trainer's run controls: gradient accumulation over K micro-batches gives the same update as one batch
// K times bigger (SGD, rows of equal token counts), the per-step learning rate reaches the optimizer (lr 0
// changes nothing), after a non-finite loss restoreLastGood() puts back the adapter of two steps before, and
// a run saved after step k (adapter, AdamW moments) and restored into a fresh trainer goes on bit for bit.

import { describe, expect, it } from 'vitest';
import { testGpu, relMaxDiff } from '../gpu/test-gpu';
import { writeTinyModel } from '../cli/tiny-model';
import { loadModelDir } from '../../src/cli/files';
import type { AdapterConfig } from '../../src/io/peft';
import type { CausalLM } from '../../src/model/causal_lm';
import { createModel } from '../../src/model/factory';
import { initLora, mulberry32 } from '../../src/model/lora';
import { DEFAULT_OPTIMIZER, Trainer, type OptimizerSettings } from '../../src/train/trainer';

const ADAPTER: AdapterConfig = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'], useRslora: false, baseModel: 'tiny' };
const T = 8;

async function setup() {
  const gpu = await testGpu();
  const { config, weights } = await loadModelDir(writeTinyModel(3));
  // B = 0 at PEFT's init would leave A without gradient: start from a random B so both factors move.
  const lora = initLora(config, ADAPTER, 7);
  const rand = mulberry32(11);
  for (const [k, v] of lora) if (k.includes('lora_B')) for (let i = 0; i < v.length; i++) v[i] = 0.1 * (2 * rand() - 1);
  const model = () => {
    const m = createModel(gpu, config, weights);
    m.setAdapter(ADAPTER, lora);
    return m;
  };
  const rows = [0, 1, 2, 3].map((r) => Int32Array.from({ length: T }, (_, i) => (r * 7 + i * 5) % config.vocab));
  return { model, rows };
}

const SGD: OptimizerSettings = { ...DEFAULT_OPTIMIZER, kind: 'sgd', lr: 0.5 };

describe('Trainer run controls', () => {
  it('accumulates K micro-batches into the update of one batch K times bigger', async () => {
    const { model, rows } = await setup();
    const big = model(), small = model();
    const one = new Trainer(big, 2, T, SGD);
    const acc = new Trainer(small, 1, T, SGD, 0, { gradAccum: 2 });
    const cat = new Int32Array(2 * T);
    cat.set(rows[0]);
    cat.set(rows[1], T);
    const l1 = await one.step(cat);
    const l2 = await acc.stepBatches([{ ids: rows[0] }, { ids: rows[1] }]);
    expect(Math.abs(l1 - l2), `loss ${l1} vs ${l2}`).toBeLessThan(1e-5);
    const a = await big.readAdapter(), b = await small.readAdapter();
    for (const [k, v] of a) {
      const d = relMaxDiff(b.get(k)!, v);
      expect(d, `${k}: maxdiff ${d}`).toBeLessThan(1e-5);
    }
    await expect(acc.stepBatches([{ ids: rows[0] }])).rejects.toThrow('accumulates 2 micro-batch(es) per step');
  });

  it('takes the learning rate per step: lr 0 leaves the adapter as it was', async () => {
    const { model, rows } = await setup();
    for (const opt of [SGD, { ...DEFAULT_OPTIMIZER, lr: 1e-2 }]) {
      const m = model();
      const before = await m.readAdapter();
      const t = new Trainer(m, 1, T, opt);
      await t.step(rows[0], undefined, 0);
      for (const [k, v] of await m.readAdapter()) expect(relMaxDiff(v, before.get(k)!), `${opt.kind} ${k}`).toBe(0);
      await t.step(rows[0]);
      const moved = [...(await m.readAdapter())].some(([k, v]) => relMaxDiff(v, before.get(k)!) > 0);
      expect(moved, `${opt.kind}: the default lr moves the adapter`).toBe(true);
    }
  });

  it('puts back the adapter of step k − 2 after a non-finite loss at step k', async () => {
    const { model, rows } = await setup();
    const m = model();
    const t = new Trainer(m, 1, T, { ...SGD, lr: 0.1 }, 0, { keepLastGood: true });
    await t.step(rows[0]);
    await t.step(rows[1]);
    const afterTwo = await m.readAdapter();
    // A step at an absurd rate: the parameters overflow, and the next loss is not finite.
    await t.step(rows[2], undefined, 1e30);
    const loss = await t.step(rows[3]);
    expect(Number.isFinite(loss)).toBe(false);
    expect(t.restoreLastGood()).toBe(2);
    // Step 4 saw a non-finite loss from the parameters after step 3; step 3's loss (from those after step 2) was finite.
    for (const [k, v] of await m.readAdapter()) expect(relMaxDiff(v, afterTwo.get(k)!), k).toBe(0);
  });

  it('continues a run bit for bit from its adapter and AdamW moments (restoreState), dropout included', async () => {
    const { rows } = await setup();
    const gpu = await testGpu();
    const { config, weights } = await loadModelDir(writeTinyModel(3));
    // Dropout and K = 2 micro-batches: the restored dropout counter must be steps × K for the masks to match.
    const cfg: AdapterConfig = { ...ADAPTER, loraDropout: 0.1 };
    const opt: OptimizerSettings = { ...DEFAULT_OPTIMIZER, lr: 1e-2, maxGradNorm: 1 };
    const start = initLora(config, cfg, 3);
    const batches = (s: number) => [{ ids: rows[(2 * s) % 4] }, { ids: rows[(2 * s + 1) % 4] }];

    const whole = createModel(gpu, config, weights);
    whole.setAdapter(cfg, start);
    const a = new Trainer(whole, 1, T, opt, 5, { gradAccum: 2, keepLastGood: true });
    const losses: number[] = [];
    let saved: { params: Map<string, Float32Array>; moments: Awaited<ReturnType<Trainer['readMoments']>> } | null = null;
    for (let s = 0; s < 4; s++) {
      losses.push(await a.stepBatches(batches(s)));
      if (s === 1) saved = { params: await whole.readAdapter(), moments: await a.readMoments() };
    }
    expect(saved!.moments.size).toBe(whole.lora.length);

    const resumed = createModel(gpu, config, weights);
    resumed.setAdapter(cfg, saved!.params);
    const b = new Trainer(resumed, 1, T, opt, 5, { gradAccum: 2, keepLastGood: true });
    b.restoreState(2, saved!.moments);
    expect(b.steps).toBe(2);
    const after = [await b.stepBatches(batches(2)), await b.stepBatches(batches(3))];
    expect(after).toEqual(losses.slice(2)); // tolerance 0: the same kernels on the same inputs
    const final = await resumed.readAdapter();
    for (const [k, v] of await whole.readAdapter()) expect(relMaxDiff(final.get(k)!, v), k).toBe(0);
    const same = async (m: CausalLM, want: Map<string, Float32Array>) => {
      for (const [k, v] of await m.readAdapter()) expect(relMaxDiff(v, want.get(k)!), k).toBe(0);
    };
    // Two steps after the restore, the last good adapter is the one from before the first of them.
    expect(b.restoreLastGood()).toBe(2);
    await same(resumed, saved!.params);
    // One step after a restore, nothing older than the restored adapter exists: that is what comes back.
    const c = new Trainer(resumed, 1, T, opt, 5, { gradAccum: 2, keepLastGood: true });
    c.restoreState(2, saved!.moments);
    await c.stepBatches(batches(2));
    expect(c.restoreLastGood()).toBe(2);
    await same(resumed, saved!.params);
    expect(() => c.restoreState(1, new Map())).toThrow(/optimizer state of .* is missing/);
  });
});
