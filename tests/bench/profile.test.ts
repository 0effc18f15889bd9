// `bench --profile` (src/cli/bench_profile.ts over src/gpu/profiler.ts): one training step of the tiny bench
// model (bench/models.json#quick, 2 layers) on this machine's WebGPU device (SwiftShader in CI), profiled with
// timestamp queries where the device has them and with the wall clock on any device. The report must name
// the clock, cover every kernel family the step runs with the dispatch counts the dry run counts for the same
// step, and give non-negative, finite times. Not a timing test: on SwiftShader the times mean nothing.

import { describe, expect, it } from 'vitest';
import { benchModelConfig, patternWeights } from '../../src/cli/bench';
import { dryRunModel } from '../../src/cli/bench_dry_run';
import { profileStep, type StepProfile } from '../../src/cli/bench_profile';
import { Profiler } from '../../src/gpu/profiler';
import type { AdapterConfig } from '../../src/io/peft';
import { createModel } from '../../src/model/factory';
import { initLora } from '../../src/model/lora';
import { Trainer } from '../../src/train/trainer';
import { testGpu } from '../gpu/test-gpu';

const [B, T] = [2, 16];

async function quickTrainer() {
  const gpu = await testGpu();
  gpu.subgroups = gpu.info.subgroups ?? false; // the dry run below assumes a GPU with subgroups; pipelines differ, families not
  const config = benchModelConfig('quick');
  const model = createModel(gpu, config, patternWeights(config));
  const adapter: AdapterConfig = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false, baseModel: 'random quick' };
  model.setAdapter(adapter, initLora(config, adapter, 0));
  const trainer = new Trainer(model, B, T, { kind: 'adamw', lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 37) % config.vocab);
  await trainer.step(ids); // built and compiled before anything is timed
  return { gpu, step: () => trainer.step(ids) };
}

function checkProfile(p: StepProfile, families: Record<string, { dispatches: number }>) {
  const summary = JSON.stringify(p);
  expect(Object.keys(p.families).sort(), summary).toEqual(Object.keys(families).sort());
  for (const [name, f] of Object.entries(p.families)) {
    expect(f.dispatches, `${name} in ${summary}`).toBe(families[name].dispatches);
    expect(Number.isFinite(f.ms) && f.ms >= 0, `${name}.ms in ${summary}`).toBe(true);
  }
  const sum = Object.values(p.families).reduce((s, f) => s + f.ms, 0);
  expect(p.ms_total).toBeCloseTo(sum, 0);
  expect(p.ms_total, summary).toBeGreaterThan(0);
}

describe('bench --profile', () => {
  it('times every kernel family of a step, by timestamp queries where the device has them, and says so', async () => {
    const { gpu, step } = await quickTrainer();
    const dry = await dryRunModel('quick', benchModelConfig('quick'), { batch: B, seq: T, gemm: 'fast' });
    const p = await profileStep(gpu, step);
    expect(p.clock).toBe(gpu.device.features.has('timestamp-query') ? 'timestamp-query' : 'wall-clock');
    checkProfile(p, dry.families);
    expect(gpu.profiler, 'detached after the step').toBeNull();
  }, 600_000);

  it('falls back to the wall clock, dispatch by dispatch, and says so', async () => {
    const { gpu, step } = await quickTrainer();
    const dry = await dryRunModel('quick', benchModelConfig('quick'), { batch: B, seq: T, gemm: 'fast' });
    const p = await profileStep(gpu, step, 'wall-clock');
    expect(p.clock).toBe('wall-clock');
    checkProfile(p, dry.families);
  }, 600_000);

  it('refuses timestamp queries on a device without them, and to be read while attached', async () => {
    const gpu = await testGpu();
    const bare = Object.create(gpu, { device: { value: { features: new Set<string>() } } });
    expect(() => new Profiler(bare, 'timestamp-query')).toThrow(/no timestamp-query: profile with the wall clock/);
    expect(new Profiler(bare).clock).toBe('wall-clock');
    const p = new Profiler(gpu, 'wall-clock');
    gpu.profiler = p;
    await expect(p.read()).rejects.toThrow(/detach it first/);
    gpu.profiler = null;
  });
});
