// The memory plan of a training run: src/model/memory.ts's plan of the model and adapter, with the run's
// own Trainer and Evaluator built on it, on the recording device, exactly as a run builds them. What the
// studio's memory estimate and the tests call; the model layer below cannot name the trainer itself.

import type { AdapterConfig } from '../io/peft';
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

/** The plan of a run of `shape` on `config` (null: the model alone). */
export function planRun(config: ModelConfig, shape: RunShape | null, maxStorageBufferBindingSize: number): MemoryPlan {
  if (!shape) return planMemory(config, null, maxStorageBufferBindingSize);
  return planMemory(config, shape.adapter, maxStorageBufferBindingSize, (model) => {
    const trainer = new Trainer(model, shape.batch, shape.seqLen, shape.optimizer, 0, { gradAccum: shape.gradAccum, keepLastGood: shape.keepLastGood });
    if (shape.evalBatch > 0) new Evaluator(model, shape.evalBatch, shape.seqLen);
    return { grads: trainer.gradBuffers, transientBytes: trainer.transientBytes };
  });
}
