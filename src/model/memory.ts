// The GPU memory a training run needs, from the allocation plan the engine itself executes: the real model
// (from its config's shapes alone: zero weights), its adapter, the Trainer and the Evaluator are built on a
// Gpu over a recording device (src/gpu/recording.ts), which runs nothing, and that Gpu's own accounting
// gives the bytes, split by what each buffer holds. So the plan cannot drift from the engine: a new
// activation, a bigger tape or another chunking shows up here as it does on the GPU
// (tests/model/memory.test.ts compares the plan with the peak a real device reaches).
//
// Not a budget: what the studio allows itself is the session's call. Nor the GPU's own overheads (driver,
// pipelines, the staging buffers of read-backs), which no Gpu counts. This sits beside the model it sizes;
// what a run builds on top of the model (the trainer and evaluator of src/train, a layer above) comes in as
// a builder, so src/train/memory_plan.ts plans a run with the very classes a run uses.

import { recordingGpu, type RecordingStats } from '../gpu/recording';
import type { AdapterConfig } from '../io/peft';
import type { ModelConfig } from './config';
import type { CausalLM, ModelOptions } from './causal_lm';
import { createModel } from './factory';

/** What a run built on the model, beyond its weights and adapter: the gradient buffers among its buffers, and its tape's high-water mark. */
export interface PlannedRun {
  grads: Iterable<GPUBuffer>;
  transientBytes: number;
}

/** Builds a run's programs (trainer, evaluator) on `model`; every buffer they take is counted. */
export type RunBuilder = (model: CausalLM) => PlannedRun;

export interface MemoryPlan {
  /** Everything allocated at once, in bytes: the sum of the parts below. */
  bytes: number;
  weights: number;
  /** LoRA A and B and their gradients. */
  adapter: number;
  /** AdamW's two moments, and the last-good copies of the adapter. */
  optimizer: number;
  /** The tapes' pooled activations and activation gradients (trainer and evaluator). */
  activations: number;
  /** Uniforms, token ids and targets, the loss, clipping scratch. */
  other: number;
  largestWeight: number;
  largestBuffer: number;
  /** The training tape's high-water mark of live activations (Trainer.transientBytes). */
  transientBytes: number;
  /** What building the run asked of the device. */
  recorded: RecordingStats;
}

/** The trainer's optimizer state, by the labels Trainer gives it ("<param>.adam_m", "<param>.last_good0"). */
const OPTIMIZER_STATE = /\.(adam_m|adam_v|last_good\d+)$/;
/** The tape's pooled buffers (Tape.compile labels them "tape.<bytes>"). */
const TAPE = /^tape\./;

/**
 * The memory plan of `config` with `adapter` and the run `build` makes on it (no adapter, no run: the model
 * alone). `maxStorageBufferBindingSize`: the device's, since it decides how the vocabulary is chunked. Buffer
 * and grid limits are lifted on the recording device, so a plan too big for the GPU still says how big it is
 * (largestBuffer, bytes) instead of failing.
 */
export function planMemory(
  config: ModelConfig, adapter: AdapterConfig | null, maxStorageBufferBindingSize: number, build?: RunBuilder, options: ModelOptions = {},
): MemoryPlan {
  const gpu = recordingGpu({ maxStorageBufferBindingSize, maxBufferSize: Number.MAX_SAFE_INTEGER, maxComputeWorkgroupsPerDimension: Number.MAX_SAFE_INTEGER });
  const model = gpu.track(() => createModel(gpu, config, null, options));
  const params = adapter ? gpu.track(() => model.value.setAdapter(adapter, null)) : { buffers: [] };
  const run = adapter && build ? gpu.track(() => build(model.value)) : null;

  const bytes = (buffers: readonly GPUBuffer[]) => buffers.reduce((n, b) => n + b.size, 0);
  const largest = (buffers: readonly GPUBuffer[]) => buffers.reduce((n, b) => Math.max(n, b.size), 0);
  const grads = new Set(run?.value.grads);
  const plan = { weights: bytes(model.buffers), adapter: bytes(params.buffers), optimizer: 0, activations: 0, other: 0 };
  const built = run?.buffers ?? [];
  for (const b of built) {
    if (grads.has(b)) plan.adapter += b.size;
    else if (TAPE.test(b.label)) plan.activations += b.size;
    else if (OPTIMIZER_STATE.test(b.label)) plan.optimizer += b.size;
    else plan.other += b.size;
  }
  return {
    bytes: gpu.peakBytes,
    ...plan,
    largestWeight: largest(model.buffers),
    largestBuffer: Math.max(largest(model.buffers), largest(params.buffers), largest(built)),
    transientBytes: run?.value.transientBytes ?? 0,
    recorded: { ...gpu.device.stats },
  };
}
