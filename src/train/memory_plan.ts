// The memory plan of a training run: src/model/memory.ts's plan of the model and adapter, with the run's
// own Trainer and Evaluator built on it, on the recording device, exactly as a run builds them. What the
// studio's memory estimate and the tests call; the model layer below cannot name the trainer itself.

import type { AdapterConfig } from '../io/peft';
import type { ModelOptions } from '../model/causal_lm';
import type { ModelConfig } from '../model/config';
import { planMemory, type MemoryPlan } from '../model/memory';
import { Evaluator, Trainer, type OptimizerSettings } from './trainer';

/** What a training run builds: the trainer of (batch, seqLen) micro-batches, and an evaluator beside it. */
export interface RunShape {
  adapter: AdapterConfig;
  batch: number;
  seqLen: number;
  gradAccum: number;
  optimizer: OptimizerSettings;
  /** Trainer's keepLastGood: two more copies of the adapter. */
  keepLastGood: boolean;
  /** Rows of the validation batch the run's Evaluator takes; 0: none. */
  evalBatch: number;
}

export interface RunMemoryPlan extends MemoryPlan {
  /**
   * The largest buffer the trainer and evaluator took (an activation or its gradient, a moment slab): each
   * is bound whole to a kernel, so it must fit the device's maxStorageBufferBindingSize. Weights are bound
   * in ranges (CausalLM.maxBindingBytes) and are not counted here. 0: the model alone.
   */
  largestBinding: number;
}

/**
 * The plan of a run of `shape` on `config` (null: the model alone), with the model built as `options` say
 * (its base dtype, whether layers recompute), as the run's model is.
 */
export function planRun(config: ModelConfig, shape: RunShape | null, maxStorageBufferBindingSize: number, options: ModelOptions = {}): RunMemoryPlan {
  if (!shape) return { ...planMemory(config, null, maxStorageBufferBindingSize, undefined, options), largestBinding: 0 };
  let largestBinding = 0;
  const plan = planMemory(config, shape.adapter, maxStorageBufferBindingSize, (model) => {
    const run = model.gpu.track(() => {
      const trainer = new Trainer(model, shape.batch, shape.seqLen, shape.optimizer, 0, { gradAccum: shape.gradAccum, keepLastGood: shape.keepLastGood });
      if (shape.evalBatch > 0) new Evaluator(model, shape.evalBatch, shape.seqLen);
      return trainer;
    });
    largestBinding = run.buffers.reduce((n, b) => Math.max(n, b.size), 0);
    return { grads: run.value.gradBuffers, transientBytes: run.value.transientBytes };
  }, options);
  return { ...plan, largestBinding };
}
