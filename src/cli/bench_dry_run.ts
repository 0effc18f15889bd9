// `npm run bench -- --dry-run [--model NAME|all] [--batch 8] [--seq 256] [--gemm fast|v1] [--subgroups on|off] [--base-dtype D] [--recompute]`
//
// What one training step of the engine asks of a GPU, counted without one: the real model (zero weights,
// from bench/models.json's shapes alone), adapter and Trainer are built on a recording device
// (src/gpu/recording.ts), which executes nothing and never asks for a WebGPU adapter, and one step is run on
// it after a first one. Everything below is per step, from the device's counters and the dispatches the step
// encoded, whose costs the ops' builders state (DispatchCost in src/gpu/gpu.ts). CI holds these figures under
// stated limits (tests/bench/dry_run.test.ts); bench/README.md says what each key means.
//
// Not a timing and not a simulation: no shader is compiled or run, and the figures are the same on every
// machine. The GPU's own limits matter only where the engine chunks by them (the LM head and embedding by
// maxStorageBufferBindingSize): the recording device reports DRY_RUN_LIMITS.

import benchConfig from '../../bench/models.json';
import { GpuError } from '../gpu/errors';
import type { Dispatch } from '../gpu/gpu';
import { recordingGpu, type RecordingLimits, type RecordingStats } from '../gpu/recording';
import { LoraStudioError } from '../io/errors';
import type { AdapterConfig, LoraTarget } from '../io/peft';
import type { ModelConfig } from '../model/config';
import type { BaseDtype } from '../model/causal_lm';
import { createModel } from '../model/factory';
import { weightBuffers } from '../model/gpu_weights';
import { setGemmKernel, type GemmKernel } from '../autograd/matmul_fast';
import { Trainer } from '../train/trainer';

/**
 * The limits of a discrete GPU, as assumed here (not read from one: a dry run asks no adapter): bindings of
 * 2 GiB − 4 bytes, buffers of 4 GiB. The engine raises its device to the adapter's limits (src/gpu/device.ts),
 * so on a GPU whose limits differ the vocabulary chunks, and with them a few dispatch counts, differ too.
 */
export const DRY_RUN_LIMITS: Required<RecordingLimits> = {
  maxStorageBufferBindingSize: 2 ** 31 - 4, maxBufferSize: 2 ** 32, maxComputeWorkgroupsPerDimension: 65535,
};

/** Cost per step of one kernel family: how many dispatches, their FLOPs and the bytes they must move. */
export interface FamilyCost {
  dispatches: number;
  flops: number;
  bytes: number;
}

export interface DryRunResult {
  model: string;
  mode: 'dry-run';
  gemm: GemmKernel;
  subgroups: boolean;
  recompute: boolean;
  batch: number;
  seq: number;
  /** How the frozen base weights were held (--base-dtype). */
  base_dtype: BaseDtype;
  dispatches_per_step: number;
  command_buffers_per_step: number;
  cpu_waits_per_step: number;
  /** Bytes the CPU writes to the GPU in a step (ids, targets, optimizer uniforms). */
  uploaded_bytes_per_step: number;
  /** Bytes copied back to the CPU in a step (the loss). */
  readback_bytes_per_step: number;
  /** Buffers created during the step (0: everything is built once, before). */
  buffers_created_per_step: number;
  peak_gpu_bytes: number;
  /** Bytes of the frozen base weights as held in base_dtype (packed values, and scales where quantized). */
  weights_bytes: number;
  /**
   * What the training tape's activations peak is made of: the node it is reached at, and the live tensors'
   * bytes by label with the layer index as `*` (largest first; the rest summed under "other").
   */
  peak_activations: { at: string; bytes: number; tensors: Record<string, number> };
  pipelines: number;
  /** Pipelines created, by kernel ("<shader>.<entry>"): how many specialisations of each a build asked for. */
  pipelines_by_kernel: Record<string, number>;
  /** The step's GEMM dispatches by pipeline ("<shader>.<entry>{constants}"): the tiles gemmChoice picked. */
  gemm_variants: Record<string, number>;
  bind_groups: number;
  flops_per_step: number;
  bytes_per_step: number;
  /** By kernel family, most FLOPs first. */
  families: Record<string, FamilyCost>;
}

/**
 * The kernel family of a dispatch: its shader (the pipeline label is "<shader>.<entry>{constants}"), with the
 * GEMMs split by what they compute, since each lever of issue 14 moves one of them: the LM head's vocabulary
 * chunks, the LoRA adapters' rank-r products, and the frozen linears.
 */
export function kernelFamily(d: Dispatch): string {
  const shader = d.pipeline.label.split('.')[0].replace(/_subgroups$/, ''); // one family whichever path reduces
  if (!shader.startsWith('matmul')) return shader; // matmul, matmul_fast, matmul_splitk: the GEMMs
  if (d.label.startsWith('lm_head.')) return 'lm_head';
  // lora_linear.ts's rank-r GEMMs; its forward and backward_dx fold the adapter into the frozen GEMM (matmul).
  return /\.(down|backward_du|backward_dA|backward_dB|backward_duA|deltaW)$/.test(d.label) ? 'lora' : 'matmul';
}

export interface DryRunOptions {
  batch: number;
  seq: number;
  gemm: GemmKernel;
  /** false: the plain reduction kernels (default: the subgroup ones, as on a GPU that has them). */
  subgroups?: boolean;
  /** How the frozen base weights are held (default f32). */
  baseDtype?: BaseDtype;
  /** Recompute each layer's activations in the backward (ModelOptions.recompute). */
  recompute?: boolean;
}

/** Refuses a sequence longer than the model's positions, before anything is built. */
export function checkBenchShape(name: string, config: ModelConfig, T: number): void {
  if (T > config.maxPositions) {
    throw new LoraStudioError('bad-input', `bench: --seq ${T} is above ${name}'s ${config.maxPositions} positions (max_position_embeddings); use --seq ${config.maxPositions} or less`);
  }
}

/**
 * `build()`, with a shape the engine cannot lay out (a buffer above maxBufferSize, a grid above the device's
 * workgroups per dimension, an index above 2³²) reported as the user's batch × seq, in one line, not as a bug.
 */
export function buildAtShape<T>(name: string, B: number, T: number, build: () => T): T {
  try {
    return build();
  } catch (e) {
    if (e instanceof GpuError || e instanceof RangeError) {
      throw new LoraStudioError('bad-input', `bench: ${name} at --batch ${B} × --seq ${T} does not fit: ${e.message.replace(/\.?$/, '.')} Use a smaller batch or sequence.`);
    }
    throw e;
  }
}

/** The trainer's activation peak, grouped over layers: the eight largest groups, the rest as "other". */
function peakActivations(trainer: Trainer): DryRunResult['peak_activations'] {
  const groups = new Map<string, number>();
  for (const t of trainer.peak.tensors) {
    const k = t.label.replace(/layers\.\d+\./, 'layers.*.');
    groups.set(k, (groups.get(k) ?? 0) + t.bytes);
  }
  const sorted = [...groups].sort((a, b) => b[1] - a[1]);
  const tensors = Object.fromEntries(sorted.slice(0, 8));
  const rest = sorted.slice(8).reduce((s, [, b]) => s + b, 0);
  if (rest > 0) tensors.other = rest;
  return { at: trainer.peak.node, bytes: trainer.transientBytes, tensors };
}

/** One step of `config` at batch × seq, counted on a recording device. */
export async function dryRunModel(name: string, config: ModelConfig, o: DryRunOptions): Promise<DryRunResult> {
  const { batch: B, seq: T } = o;
  checkBenchShape(name, config, T);
  const gpu = recordingGpu(DRY_RUN_LIMITS);
  setGemmKernel(gpu, o.gemm);
  gpu.subgroups = o.subgroups ?? true;
  const stats = gpu.device.stats;
  let weightsBytes = 0;
  const baseDtype = o.baseDtype ?? 'f32';
  const trainer = buildAtShape(name, B, T, () => {
    const model = createModel(gpu, config, null, { baseDtype, recompute: o.recompute ?? false });
    weightsBytes = weightBuffers(model.weights).reduce((n, b) => n + b.size, 0);
    const lora = benchConfig.lora, opt = benchConfig.optimizer;
    const adapter: AdapterConfig = {
      r: lora.r, loraAlpha: lora.lora_alpha, loraDropout: lora.lora_dropout, targetModules: lora.target_modules as LoraTarget[],
      useRslora: false, baseModel: `random ${name}`,
    };
    model.setAdapter(adapter, null);
    return new Trainer(model, B, T, {
      kind: 'adamw', lr: opt.lr, beta1: opt.beta1, beta2: opt.beta2, eps: opt.eps, weightDecay: opt.weight_decay,
    });
  });
  const ids = new Int32Array(B * T);
  await trainer.step(ids); // the first step, like the bench's; the one counted is a step like every other
  const before: RecordingStats = { ...stats };
  const first = gpu.encoded.length;
  await trainer.step(ids);
  const step = gpu.encoded.slice(first);
  const delta = (k: keyof RecordingStats) => stats[k] - before[k];

  const families: Record<string, FamilyCost> = {};
  const gemmVariants: Record<string, number> = {};
  let flops = 0, bytes = 0;
  for (const d of step) {
    if (d.pipeline.label.startsWith('matmul')) gemmVariants[d.pipeline.label] = (gemmVariants[d.pipeline.label] ?? 0) + 1;
    if (!d.cost) throw new Error(`bench --dry-run: dispatch ${d.label} (${d.pipeline.label}) has no cost; its op's builder must state one`);
    const f = (families[kernelFamily(d)] ??= { dispatches: 0, flops: 0, bytes: 0 });
    f.dispatches++;
    f.flops += d.cost.flops;
    f.bytes += d.cost.bytes;
    flops += d.cost.flops;
    bytes += d.cost.bytes;
  }
  if (step.length !== delta('dispatches')) throw new Error(`bench --dry-run: ${step.length} dispatches encoded, the device counted ${delta('dispatches')}`);
  return {
    model: name, mode: 'dry-run', gemm: o.gemm, subgroups: gpu.subgroups, recompute: o.recompute ?? false, batch: B, seq: T, base_dtype: baseDtype,
    dispatches_per_step: delta('dispatches'),
    command_buffers_per_step: delta('commandBuffers'),
    cpu_waits_per_step: delta('cpuWaits'),
    uploaded_bytes_per_step: delta('writeBytes'),
    readback_bytes_per_step: delta('copyBytes'),
    buffers_created_per_step: delta('buffers'),
    peak_gpu_bytes: gpu.peakBytes,
    weights_bytes: weightsBytes,
    peak_activations: peakActivations(trainer),
    pipelines: gpu.pipelineCount,
    pipelines_by_kernel: countBy(gpu.device.pipelineLabels.map((l) => l.split('{')[0])),
    gemm_variants: Object.fromEntries(Object.entries(gemmVariants).sort(([, a], [, b]) => b - a)),
    bind_groups: stats.bindGroups,
    flops_per_step: flops,
    bytes_per_step: bytes,
    families: Object.fromEntries(Object.entries(families).sort(([, a], [, b]) => b.flops - a.flops || b.bytes - a.bytes)),
  };
}

function countBy(keys: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of keys) out[k] = (out[k] ?? 0) + 1;
  return out;
}
