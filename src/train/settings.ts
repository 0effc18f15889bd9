// The settings of a training run as the studio states them and a checkpoint records them: which model and
// data it trained on, PEFT's LoRA settings in the studio's words, the optimizer and schedule. Plain types,
// so a checkpoint (checkpoint.ts), the run loop (run.ts) and the worker protocol (which re-exports them for
// the UI) share one definition.

import type { LoraTarget } from '../io/peft';
import type { BaseDtype } from '../model/causal_lm';
import type { ScheduleKind } from './schedule';

/**
 * A model source as a checkpoint remembers it, to load the same model when a run resumes: never a token,
 * and for a folder only its name (the files must be picked again).
 */
export type ModelIdentity = { kind: 'default' } | { kind: 'hub'; id: string; revision?: string } | { kind: 'files'; label: string };

/** Which tokenized data a run trained on: the text's fingerprint and the settings that cut it into rows. */
export interface DataIdentity {
  /** The file name the studio gave loadDataset ("sotu/train.jsonl" for the demo). */
  name: string;
  /** Characters of the text, and a 53-bit hash of it (hex). */
  chars: number;
  hash: string;
  seqLen: number;
  validationShare: number;
  pack: boolean;
  seed: number;
}

/**
 * What a training checkpoint (src/io/library.ts TrainingCheckpoint.settings) records about its run, so a
 * closed tab can resume it: the settings, the model and data, and where the run's schedule began.
 */
export interface RunSettings {
  version: 1;
  lora: LoraSettings;
  optim: OptimSettings;
  /**
   * The adapter's steps when this run started (0 for a fresh adapter; more when it continued a saved one).
   * The run's step s = adapter step − origin indexes the schedule, the data and AdamW's t.
   */
  origin: number;
  model: ModelIdentity;
  data: DataIdentity;
  /**
   * How the frozen base weights were held while it trained (causal_lm.ts BaseDtype); absent in runs from
   * before the choice existed (float32). Written by the studio with the run's record; a resume does not
   * require it (the adapter is float32 whatever the base), the recipe names a 4-bit base.
   */
  baseDtype?: BaseDtype;
}

/** PEFT's LoRA settings (src/io/peft.ts AdapterConfig, in the studio's words). */
export interface LoraSettings {
  targets: LoraTarget[];
  r: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  /** DoRA (PEFT's use_dora): a trained magnitude per output row besides A and B; absent in older checkpoints, meaning off. */
  dora?: boolean;
}

/** The optimizer run: AdamW (β 0.9/0.999, ε 1e-8, no weight decay) with a learning-rate schedule. */
export interface OptimSettings {
  lr: number;
  schedule: ScheduleKind;
  warmupSteps: number;
  /** Optimizer steps. */
  steps: number;
  /** Rows per micro-batch. */
  batchSize: number;
  /** Micro-batches per optimizer step (gradient accumulation). */
  gradAccum: number;
  /** Global gradient-norm clipping; 0: off. */
  maxGradNorm: number;
  seed: number;
  /**
   * Drop each decoder layer's activations after the forward and recompute them in the backward
   * (ModelOptions.recompute): less memory, more compute, the same numbers. Absent in older runs: off.
   */
  recompute?: boolean;
}
