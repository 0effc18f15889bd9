// `npm run bench -- [--model NAME|all] [--batch 8] [--seq 256] [--steps 10] [--warmup 2] [--matmul-size 4096] [--gemm fast|v1] [--subgroups on|off] [--quick] [--profile] [--dry-run]`
//
// Training speed of the engine on random weights at the shapes of real models (bench/models.json, shared with
// bench/torch_peft.py so both benches run the same settings): LoRA r = 8 on q_proj and v_proj, AdamW, fp32.
// Prints one JSON line per model:
//   first_step_ms        building the Trainer (tape, buffers, every pipeline compiled) and its first step
//   ms_per_step_median   wall clock of `await trainer.step(ids)` (one command buffer + the loss read-back),
//   ms_per_step_p90      over --steps steps after --warmup more
//   tokens_per_s         batch·seq / median step
//   peak_gpu_bytes       the most bytes this engine's Gpu had allocated at once (weights, adapter, optimizer
//                        state, pooled activations), before the matmul measurements
//   weights_bytes        the frozen base weights as held on the GPU (--base-dtype)
//   matmul, matmul_fast  TFLOP/s of version 1 (`gemm`) and of the fast kernel (`gemmFast`) at size³ and at
//                        the model's own P·Qᵀ shapes (matmul_shapes: [M, N, K])
// --quick: a 2-layer, hidden-64 model, batch 2 × 32, 3 steps, matmul 256³: runs on SwiftShader in CI so the
// bench keeps working; its timings mean nothing.
// --gemm: the GEMM kernel the model's step runs (src/autograd/matmul.ts): fast (the default, as in the studio)
// or v1, so one machine can time the step on both (the field `gemm` says which).
// --subgroups off: RMSNorm, cross-entropy and attention's forward on their plain kernels even where the adapter has
// subgroups (on, the default, takes the subgroup kernels wherever it can), so one machine can time both; the field
// `subgroups` says which ran.
// --profile: one more step, profiled: GPU time per kernel family (bench_profile.ts), from timestamp queries
// where the adapter has them, else the wall clock; the field `profile.clock` says which.
// --base-dtype f32|bf16|f16|nf4|int8: how the frozen base weights are held (default f32; the field `base_dtype`).
// --dry-run: no GPU; what one step asks of one, counted on a recording device (bench_dry_run.ts).
//
// This file measures; it does not change the engine.

import benchConfig from '../../bench/models.json';
import { createNodeGpu } from '../gpu/node';
import type { Dispatch, Gpu } from '../gpu/gpu';
import { LoraStudioError } from '../io/errors';
import type { AdapterConfig, LoraTarget } from '../io/peft';
import { parseModelConfig, weightShapes, type ModelConfig } from '../model/config';
import { logitsChunkWidth } from '../autograd/lm_head';
import { initLora, mulberry32 } from '../model/lora';
import type { BaseDtype } from '../model/causal_lm';
import { weightBuffers } from '../model/gpu_weights';
import { modelBuilder } from '../model/streamed_model';
import type { TensorSink, Weights } from '../model/weights';
import { gemmFast, setGemmKernel, type GemmKernel } from '../autograd/matmul_fast';
import { gemm, type GemmSpec } from '../autograd/matmul';
import { Trainer } from '../train/trainer';
import { buildAtShape, checkBenchShape, dryRunModel } from './bench_dry_run';
import { profileStep, type StepProfile } from './bench_profile';
import { baseDtypeFlag } from './train';

export const BENCH_MODELS = Object.keys(benchConfig.models).filter((m) => m !== 'quick');

export interface BenchResult {
  model: string;
  device: string;
  /** The GEMM kernel the step ran. */
  gemm: GemmKernel;
  /** Whether the reductions ran their subgroup kernels (the adapter has subgroups and --subgroups is not off). */
  subgroups: boolean;
  batch: number;
  seq: number;
  base_dtype: BaseDtype;
  steps: number;
  ms_per_step_median: number;
  ms_per_step_p90: number;
  tokens_per_s: number;
  peak_gpu_bytes: number;
  weights_bytes: number;
  first_step_ms: number;
  loss_first: number;
  loss_last: number;
  timing: 'timestamp-query' | 'wall-clock';
  matmul: Record<string, number>;
  matmul_fast: Record<string, number>;
  matmul_shapes: Record<string, [number, number, number]>;
  /** With --profile: one step's GPU time by kernel family, and the clock that measured it. */
  profile?: StepProfile;
}

interface BenchOptions {
  batch: number;
  seq: number;
  steps: number;
  warmup: number;
  matmulSize: number;
  gemm: GemmKernel;
  /** false: the plain reduction kernels even where the device has subgroups. */
  subgroups: boolean;
  quick: boolean;
  profile: boolean;
  /** Recompute each layer's activations in the backward (ModelOptions.recompute). */
  recompute: boolean;
  baseDtype: BaseDtype;
}

// ---- command line ------------------------------------------------------------------------------------

const FLAGS = ['model', 'batch', 'seq', 'steps', 'warmup', 'matmul-size', 'gemm', 'subgroups', 'base-dtype', 'quick', 'profile', 'dry-run', 'recompute'];
const SWITCHES = ['quick', 'profile', 'dry-run', 'recompute'];
/** Flags that time something, which a dry run does not. */
const TIMING_FLAGS = ['steps', 'warmup', 'matmul-size', 'profile'];

export async function benchCommand(args: string[], print: (line: string) => void): Promise<string> {
  const flags = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith('--') ? args[i].slice(2) : '';
    if (!FLAGS.includes(name)) throw new LoraStudioError('bad-input', `bench: unknown argument "${args[i]}"; expected ${FLAGS.map((f) => `--${f}`).join(', ')}`);
    if (SWITCHES.includes(name)) { flags.set(name, true); continue; }
    const v = args[++i];
    if (v === undefined || v.startsWith('--')) throw new LoraStudioError('bad-input', `bench: --${name} needs a value`);
    flags.set(name, v);
  }
  const quick = flags.get('quick') === true, dryRun = flags.get('dry-run') === true;
  const timing = TIMING_FLAGS.find((f) => flags.has(f));
  if (dryRun && timing) throw new LoraStudioError('bad-input', `bench: --${timing} times the step; --dry-run counts it without a GPU and takes only --model, --batch, --seq, --gemm, --subgroups, --base-dtype, --recompute, --quick`);
  const base = quick ? benchConfig.quick : benchConfig.defaults;
  const int = (name: string, fallback: number, min: number) => {
    const raw = flags.get(name);
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min) throw new LoraStudioError('bad-input', `bench: --${name} must be an integer ≥ ${min} (got ${raw})`);
    return v;
  };
  const opts: BenchOptions = {
    batch: int('batch', base.batch, 1), seq: int('seq', base.seq, 2), steps: int('steps', base.steps, 1),
    warmup: int('warmup', base.warmup, 0), matmulSize: int('matmul-size', base.matmul_size, 1), gemm: gemmFlag(flags.get('gemm')), quick,
    subgroups: subgroupsFlag(flags.get('subgroups')),
    profile: flags.get('profile') === true,
    recompute: flags.get('recompute') === true,
    baseDtype: baseDtypeFlag(flags.get('base-dtype'), 'bench: ') ?? 'f32',
  };
  const which = String(flags.get('model') ?? (quick ? 'quick' : 'all'));
  const names = which === 'all' ? BENCH_MODELS : [which];
  for (const name of names) {
    if (!(name in benchConfig.models)) {
      throw new LoraStudioError('bad-input', `bench: unknown --model "${name}"; choose ${[...BENCH_MODELS, 'all'].join(', ')} (or --quick)`);
    }
    checkBenchShape(name, benchModelConfig(name), opts.seq);
  }
  for (const name of names) {
    const result = dryRun ? await dryRunModel(name, benchModelConfig(name), opts) : await benchModel(name, opts);
    print(JSON.stringify(result));
  }
  return '';
}

function subgroupsFlag(raw: string | true | undefined): boolean {
  if (raw === undefined || raw === 'on' || raw === 'off') return raw !== 'off';
  throw new LoraStudioError('bad-input', `bench: --subgroups must be on or off (got ${raw})`);
}

function gemmFlag(raw: string | true | undefined): GemmKernel {
  if (raw === undefined || raw === 'fast' || raw === 'v1') return raw ?? 'fast';
  throw new LoraStudioError('bad-input', `bench: --gemm must be fast or v1 (got ${raw})`);
}

// ---- one model -----------------------------------------------------------------------------------------

export function benchModelConfig(name: string): ModelConfig {
  const models = benchConfig.models as Record<string, object>;
  return parseModelConfig(JSON.stringify(models[name]), `bench/models.json#${name}`);
}

/**
 * Weights for timing only, without a checkpoint: each tensor repeats a table of P uniform values (std 0.02,
 * transformers' initializer_range) from its own offset, so tensors differ but filling 4 GB takes a second of
 * memcpy instead of a minute of PRNG. Norm weights are 1, as at initialisation. Each tensor goes to `put` as it
 * is made, as a checkpoint's do when it loads (src/model/streamed_model.ts), so only one is ever held here.
 */
export function patternTensors(config: ModelConfig, put: TensorSink, seed = 0): void {
  const P = 65521; // prime, so rows of any width start at different phases
  const rand = mulberry32(seed);
  const a = 0.02 * Math.sqrt(3);
  const table = new Float32Array(2 * P);
  for (let i = 0; i < P; i++) table[i] = table[P + i] = (2 * rand() - 1) * a;
  let t = 0;
  for (const [name, shape] of weightShapes(config)) {
    const n = shape.reduce((x, y) => x * y, 1);
    const w = new Float32Array(n);
    if (name.endsWith('norm.weight')) w.fill(1);
    else {
      const off = (t++ * 7919) % P;
      w.set(table.subarray(off, off + Math.min(P, n)));
      // w[i] = w[i mod P]: double the filled prefix, which stays a whole number of periods.
      for (let filled = P; filled < n; filled *= 2) w.copyWithin(filled, 0, Math.min(filled, n - filled));
    }
    put(name, w);
  }
}

/** patternTensors all at once. */
export function patternWeights(config: ModelConfig, seed = 0): Weights {
  const out: Weights = new Map();
  patternTensors(config, (name, w) => void out.set(name, w), seed);
  return out;
}

const median = (xs: number[]) => quantile(xs, 0.5);

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

export async function benchModel(name: string, o: BenchOptions): Promise<BenchResult> {
  const config = benchModelConfig(name);
  const lora = benchConfig.lora, opt = benchConfig.optimizer;
  const adapter: AdapterConfig = {
    r: lora.r, loraAlpha: lora.lora_alpha, loraDropout: lora.lora_dropout, targetModules: lora.target_modules as LoraTarget[],
    useRslora: false, baseModel: `random ${name}`,
  };
  const gpu = await createNodeGpu();
  setGemmKernel(gpu, o.gemm);
  gpu.subgroups &&= o.subgroups;
  try {
    const builder = modelBuilder(gpu, config, { recompute: o.recompute, baseDtype: o.baseDtype });
    patternTensors(config, builder.put);
    const model = builder.done();
    const weightsBytes = weightBuffers(model.weights).reduce((n, b) => n + b.size, 0);
    model.setAdapter(adapter, initLora(config, adapter, 0));
    const { batch: B, seq: T } = o;
    const rand = mulberry32(1);
    const batches = Array.from({ length: 4 }, () => Int32Array.from({ length: B * T }, () => Math.floor(rand() * config.vocab)));

    const t0 = performance.now();
    const trainer = buildAtShape(name, B, T, () => new Trainer(model, B, T, {
      kind: 'adamw', lr: opt.lr, beta1: opt.beta1, beta2: opt.beta2, eps: opt.eps, weightDecay: opt.weight_decay,
    }));
    const lossFirst = await trainer.step(batches[0]);
    const firstStepMs = performance.now() - t0;
    for (let i = 0; i < o.warmup; i++) await trainer.step(batches[(1 + i) % batches.length]);
    const times: number[] = [];
    let lossLast = lossFirst;
    for (let i = 0; i < o.steps; i++) {
      const ids = batches[i % batches.length];
      const s = performance.now();
      lossLast = await trainer.step(ids);
      times.push(performance.now() - s);
    }
    if (!Number.isFinite(lossFirst) || !Number.isFinite(lossLast)) {
      throw new Error(`bench ${name}: the loss is not finite (${lossFirst} → ${lossLast}); the engine produced NaN/Inf`);
    }
    const peak = gpu.peakBytes; // before the matmul buffers below
    const profile = o.profile ? await profileStep(gpu, () => trainer.step(batches[0])) : undefined;

    const N = B * T, C = config.hidden;
    const shapes: Record<string, [number, number, number]> = {
      [`${o.matmulSize}^3`]: [o.matmulSize, o.matmulSize, o.matmulSize],
      q_proj: [N, config.heads * config.headDim, C],
      mlp_up: [N, config.intermediate, C],
      // one vocabulary chunk of the LM head, as the model computes it
      lm_head: [N, logitsChunkWidth(N, config.vocab, C, model.maxLogitsBytes), C],
    };
    const matmul: Record<string, number> = {}, matmulFast: Record<string, number> = {};
    let timing: BenchResult['timing'] = 'wall-clock';
    for (const [key, [M, Nn, K]] of Object.entries(shapes)) {
      const slow = await gemmTflops(gpu, gemm, M, Nn, K, o.quick);
      const fast = await gemmTflops(gpu, gemmFast, M, Nn, K, o.quick);
      matmul[key] = slow.tflops;
      matmulFast[key] = fast.tflops;
      timing = fast.timing;
    }

    const med = median(times);
    return {
      model: name, device: gpu.info.name, gemm: o.gemm, subgroups: gpu.subgroups, batch: B, seq: T, base_dtype: o.baseDtype, steps: o.steps,
      ms_per_step_median: round(med), ms_per_step_p90: round(quantile(times, 0.9)), tokens_per_s: round((B * T) / (med / 1000)),
      peak_gpu_bytes: peak, weights_bytes: weightsBytes, first_step_ms: round(firstStepMs),
      loss_first: lossFirst, loss_last: lossLast, timing, matmul, matmul_fast: matmulFast, matmul_shapes: shapes,
      ...(profile && { profile }),
    };
  } finally {
    gpu.destroy();
  }
}

const round = (x: number, digits = 4) => Number(x.toPrecision(digits));

// ---- matmul TFLOP/s ------------------------------------------------------------------------------------

type GemmBuilder = (gpu: Gpu, label: string, s: GemmSpec) => Dispatch;

/**
 * TFLOP/s of C (M, N) = P (M, K)·Q (N, K)ᵀ, the forward linear's layout: the dispatch repeated k times in one
 * compute pass, k chosen so the pass lasts about 300 ms (20 ms in --quick), timed on the GPU with
 * timestamp-query when the device has it, else by wall clock around submit and a read-back.
 */
async function gemmTflops(gpu: Gpu, build: GemmBuilder, M: number, N: number, K: number, quick: boolean) {
  const fill = (n: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = ((i * 7919) % 65521) / 65521 - 0.5;
    return a;
  };
  const p = gpu.upload('bench.P', fill(M * K)), q = gpu.upload('bench.Q', fill(N * K)), c = gpu.buffer('bench.C', M * N * 4);
  const d = build(gpu, `bench.${build === gemm ? 'gemm' : 'gemmFast'}`, { M, N, K1: K, p1: p, q1: q, transQ: true, c });
  try {
    await timePass(gpu, [d]); // compile and warm up
    const once = await timePass(gpu, [d]);
    const k = Math.max(1, Math.min(1000, Math.ceil((quick ? 20 : 300) / Math.max(once.ms, 1e-3))));
    const t = await timePass(gpu, Array(k).fill(d));
    return { tflops: round((2 * M * N * K * k) / (t.ms / 1000) / 1e12), timing: t.timing };
  } finally {
    gpu.releaseDispatches([d]);
    for (const b of [p, q, c]) gpu.release(b);
  }
}

const QUERY_RESOLVE = 0x0200, COPY_SRC = 0x0004;

/**
 * Milliseconds the GPU spends on `dispatches` in one compute pass. With timestamp-query: the pass's begin and
 * end timestamps. This is the one place outside src/gpu that creates GPU objects (a query set and an encoder):
 * Gpu.encode has no timestampWrites; it belongs there if the engine ever times its own passes.
 */
async function timePass(gpu: Gpu, dispatches: Dispatch[]): Promise<{ ms: number; timing: BenchResult['timing'] }> {
  const device = gpu.device;
  if (device.features.has('timestamp-query')) {
    const querySet = device.createQuerySet({ label: 'bench.timestamps', type: 'timestamp', count: 2 });
    const resolved = gpu.buffer('bench.timestamps.resolve', 16, QUERY_RESOLVE | COPY_SRC);
    const encoder = device.createCommandEncoder({ label: 'bench.timed' });
    const pass = encoder.beginComputePass({ label: 'bench.timed', timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    for (const d of dispatches) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(...d.workgroups);
    }
    pass.end();
    encoder.resolveQuerySet(querySet, 0, 2, resolved, 0);
    device.queue.submit([encoder.finish()]);
    const [begin, end] = new BigUint64Array(await gpu.readBytes(resolved, 16));
    gpu.release(resolved);
    querySet.destroy();
    const ms = Number(end - begin) / 1e6;
    if (ms > 0) return { ms, timing: 'timestamp-query' };
  }
  // A read-back resolves once all work queued before it is done, so a tiny one brackets the pass.
  const sync = gpu.buffer('bench.sync', 16);
  await gpu.readBytes(sync, 4);
  const t0 = performance.now();
  gpu.run(dispatches, 'bench.timed');
  await gpu.readBytes(sync, 4);
  gpu.release(sync);
  return { ms: performance.now() - t0, timing: 'wall-clock' };
}
