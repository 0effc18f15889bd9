// The studio's memory estimate (src/worker/memory_estimate.ts) on the recording device, no GPU needed: it
// shows weights, adapter, optimizer state and activations separately, from the engine's own plan; it plans
// the run's recompute switch and the loaded base's dtype; and a refusal, for the memory budget, the
// device's largest buffer or its largest binding, names settings that do fit (recompute, a smaller batch with
// the same rows a step, the NF4 base), each checked here by estimating it, or says that nothing near fits.

import { describe, expect, it } from 'vitest';
import type { AdapterConfig } from '../../src/io/peft';
import { parseModelConfig } from '../../src/model/config';
import { planRun } from '../../src/train/memory_plan';
import { studioOptimizer } from '../../src/train/run';
import { MemoryEstimator, mb, type RunRequest } from '../../src/worker/memory_estimate';
import type { BaseDtype, MemoryEstimate, OptimSettings } from '../../src/worker/protocol';
import { TINY_CONFIG } from '../cli/tiny-model';

const config = parseModelConfig(JSON.stringify({ ...TINY_CONFIG, num_hidden_layers: 2, vocab_size: 96 }));
const ADAPTER: AdapterConfig = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false, baseModel: 'tiny' };
const OPTIM: OptimSettings = { lr: 1e-3, schedule: 'constant', warmupSteps: 0, steps: 10, batchSize: 8, gradAccum: 1, maxGradNorm: 1, seed: 0 };
const TRAINABLE = { params: 1, share: 0.1 };
// Roomy device limits: only the budget decides, unless a test lowers one.
const LIMITS = { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 2 ** 30 };
const T = 32;

const run = (optim: Partial<OptimSettings> = {}): RunRequest => ({ adapter: ADAPTER, optim: { ...OPTIM, ...optim }, seqLen: T, validationRows: 4 });

/** The plan's bytes of run `r` as the engine makes it (the estimator's own plan is this one). */
function planned(r: RunRequest, baseDtype: BaseDtype = 'f32', limits = LIMITS) {
  const o = r.optim;
  const shape = { adapter: ADAPTER, batch: o.batchSize, seqLen: T, gradAccum: o.gradAccum, optimizer: studioOptimizer(o), keepLastGood: true, evalBatch: Math.min(o.batchSize, r.validationRows!) };
  return planRun(config, shape, limits.maxStorageBufferBindingSize, { baseDtype, recompute: o.recompute === true });
}

/**
 * Every alternative the refusal of `est` (of run `r`) names is in its text with its size, and fits: the
 * same estimator (or one over the NF4 base it asks to reload with) accepts it, at the bytes it said.
 */
function expectAlternativesFit(est: MemoryEstimate, r: RunRequest, make: (dtype: BaseDtype) => MemoryEstimator): void {
  for (const a of est.alternatives) {
    expect(est.refusal!.toLowerCase()).toContain(`${a.label} (about ${mb(a.bytes)}`.toLowerCase());
    const other = make(a.baseDtype ?? 'f32').estimate({ ...r, optim: { ...r.optim, ...a.optim } }, TRAINABLE, null);
    expect(other.refusal, `${a.label}: ${other.refusal}`).toBeNull();
    expect(other.bytes).toBe(a.bytes);
    // A smaller batch keeps the rows of an optimizer step when it divides the batch.
    const o = { ...r.optim, ...a.optim };
    if (r.optim.batchSize % o.batchSize === 0) expect(o.batchSize * o.gradAccum).toBe(r.optim.batchSize * r.optim.gradAccum);
  }
}

describe('memory estimate', () => {
  it('shows weights, adapter, optimizer state and activations separately, from the engine’s plan', () => {
    const est = new MemoryEstimator(config, LIMITS, 'f32', 2 ** 40).estimate(run(), TRAINABLE, null);
    const plan = planned(run());
    expect(est.refusal).toBeNull();
    expect(est.alternatives).toEqual([]);
    const { weights, adapter, optimizer, activations, other } = est.breakdown;
    expect({ weights, adapter, optimizer, activations }).toEqual({ weights: plan.weights, adapter: plan.adapter, optimizer: plan.optimizer, activations: plan.activations });
    for (const part of [weights, adapter, optimizer, activations]) expect(part).toBeGreaterThan(0);
    expect(weights + adapter + optimizer + activations + other).toBe(est.bytes);
  });

  it('plans the recompute switch and the base dtype as the run would build them', () => {
    const roomy = (dtype: BaseDtype) => new MemoryEstimator(config, LIMITS, dtype, 2 ** 40);
    const kept = roomy('f32').estimate(run(), TRAINABLE, null);
    const recomputed = roomy('f32').estimate(run({ recompute: true }), TRAINABLE, null);
    expect(recomputed.bytes).toBe(planned(run({ recompute: true })).bytes);
    expect(recomputed.breakdown.activations).toBeLessThanOrEqual(kept.breakdown.activations);
    for (const dtype of ['bf16', 'nf4'] as const) {
      const est = roomy(dtype).estimate(run(), TRAINABLE, null);
      expect(est.bytes).toBe(planned(run(), dtype).bytes);
      expect(est.breakdown.weights).toBeLessThanOrEqual(kept.breakdown.weights);
      expect(est.breakdown.adapter).toBe(kept.breakdown.adapter); // the adapter is float32 whatever the base
    }
  });

  it('refuses a run over the budget, naming settings that fit, cheapest first', () => {
    const r = run();
    // A budget the batch-8 run exceeds and the batch-2 run (the same 8 rows a step) fits.
    const budget = planned(run({ batchSize: 2, gradAccum: 4 })).bytes;
    expect(planned(r).bytes).toBeGreaterThan(budget);
    const make = (dtype: BaseDtype) => new MemoryEstimator(config, LIMITS, dtype, budget);
    const est = make('f32').estimate(r, TRAINABLE, null);
    expect(est.refusal).toMatch(/^Needs about [\d.,]+ MB of GPU memory; the studio allows itself [\d.,]+ MB here\. [A-Z]/);
    expect(est.alternatives.length).toBeGreaterThan(0);
    expect(est.alternatives.length).toBeLessThanOrEqual(2);
    expectAlternativesFit(est, r, make);
    // Recompute first when it fits alone; else the batch is halved no further than needed: batch 2 fits.
    const [first] = est.alternatives;
    if (first.optim.batchSize === undefined) expect(first).toMatchObject({ optim: { recompute: true }, label: 'turn on “Recompute activations”' });
    const batch = est.alternatives.find((a) => a.optim.batchSize !== undefined);
    if (first.optim.batchSize !== undefined || batch) {
      expect(batch!.optim.batchSize).toBeGreaterThanOrEqual(2);
      expect(batch!.label).toMatch(/use batch \d+ with accumulation \d+$/);
      expect(batch!.note).toBe('the same 8 rows a step');
    }
    // The batch asked for is kept elsewhere: Start stays refused until a setting changes.
    expect(make('f32').estimate(r, TRAINABLE, null).refusal).toBe(est.refusal);
  });

  it('says so when nothing near the settings fits', () => {
    const budget = planned(run()).adapter; // less than the adapter and its optimizer state, whatever the base and the batch
    const est = new MemoryEstimator(config, LIMITS, 'f32', budget).estimate(run(), TRAINABLE, null);
    expect(est.alternatives).toEqual([]);
    expect(est.refusal).toMatch(/^Needs about .* Even with batch 1, recomputed activations and the NF4 base it does not fit: lower the sequence length \(or the rank\), or choose a smaller model\.$/);
    const nf4 = new MemoryEstimator(config, LIMITS, 'nf4', budget).estimate(run({ batchSize: 1, recompute: true }), TRAINABLE, null);
    expect(nf4.refusal).toMatch(/Even with recomputed activations it does not fit/);
  });

  it('refuses a buffer or a binding larger than the device allows, naming what fits', () => {
    const r = run();
    const plan = planned(r);
    // A binding limit the run's largest activation exceeds and batch 1's fits (weights are bound in ranges).
    const small = planned(run({ batchSize: 1, gradAccum: 8 })).largestBinding;
    expect(plan.largestBinding).toBeGreaterThan(small);
    const binding = { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: small };
    const make = (dtype: BaseDtype) => new MemoryEstimator(config, binding, dtype, 2 ** 40);
    const est = make('f32').estimate(r, TRAINABLE, null);
    expect(est.refusal).toMatch(/^This run binds [\d.,]+ MB to one kernel; this GPU allows [\d.,]+ MB per binding\. [A-Z]/);
    expect(est.alternatives.length).toBeGreaterThan(0);
    expectAlternativesFit(est, r, make);

    // The base's own largest tensor over maxBufferSize: only a smaller base can help, so nothing else is offered.
    const tight = { maxBufferSize: plan.largestWeight - 16, maxStorageBufferBindingSize: 2 ** 30 };
    const makeTight = (dtype: BaseDtype) => new MemoryEstimator(config, tight, dtype, 2 ** 40);
    const weights = makeTight('f32').estimate(r, TRAINABLE, null);
    expect(weights.refusal).toMatch(/^This model needs a single buffer of [\d.,]+ MB; this GPU allows [\d.,]+ MB per buffer\. /);
    for (const a of weights.alternatives) expect(a).toMatchObject({ baseDtype: 'nf4', optim: {} });
    expectAlternativesFit(weights, r, makeTight);
    if (weights.alternatives.length === 0) expect(weights.refusal).toMatch(/Even the NF4 base does not fit: choose a smaller model\.$/);
  });

  it('leaves a refusal of the settings themselves as it is', () => {
    const est = new MemoryEstimator(config, LIMITS, 'f32', 1).estimate({ ...run(), adapter: null }, TRAINABLE, 'Choose at least one target module.');
    expect(est).toMatchObject({ refusal: 'Choose at least one target module.', alternatives: [] });
  });
});
