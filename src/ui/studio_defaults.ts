// The studio's starting settings and the demo data's location: plain values, importable by panels and slices alike.

import type { LoraSettings, OptimSettings } from '../worker/protocol';

export interface StudioSettings {
  lora: LoraSettings;
  optim: OptimSettings;
  /** T: tokens per training row. */
  seqLen: number;
  /** Share of the data's examples held out for the validation loss. */
  validationShare: number;
  /** Pack examples into full rows (EOS between them) instead of one padded row each. */
  pack: boolean;
}

/** The demo's defaults: q and v at r = 8 as PEFT's examples, a short cosine run the default model finishes in seconds. */
export const DEFAULT_SETTINGS: StudioSettings = {
  lora: { targets: ['q_proj', 'v_proj'], r: 8, alpha: 16, dropout: 0, rslora: false, dora: false },
  optim: { lr: 1e-3, schedule: 'cosine', warmupSteps: 10, steps: 200, batchSize: 8, gradAccum: 1, maxGradNorm: 1, seed: 0, recompute: false },
  seqLen: 128,
  validationShare: 0.1,
  pack: true,
};

/** "Teach the whaler to speak like a president": the demo data, served beside the app. */
export const DEMO_DATA = { name: 'sotu/train.jsonl', path: 'data/sotu/train.jsonl', title: 'State of the Union addresses, 2001–2015 (766 paragraphs)' };
