// Learning-rate schedules as pure functions of the step, the ones transformers' get_scheduler offers
// (src/transformers/optimization.py), so a run here and a run there with the same settings use the same lr:
//
//   warm-up (step < W):  lr · step / W                         (step 0 trains at lr 0, as transformers does)
//   constant:            lr
//   linear:              lr · max(0, (S − step) / (S − W))
//   cosine:              lr · ½·(1 + cos(π · (step − W) / (S − W)))   (one half-wave, ending at 0)
//
// with S the total optimizer steps and W the warm-up steps; `step` counts optimizer updates from 0.
// The Trainer takes the value per step (Trainer.stepBatches(…, lr)); nothing here touches the GPU.

export type ScheduleKind = 'constant' | 'linear' | 'cosine';

export const SCHEDULES: readonly ScheduleKind[] = ['constant', 'linear', 'cosine'];

export interface Schedule {
  /** Peak learning rate. */
  lr: number;
  kind: ScheduleKind;
  warmupSteps: number;
  /** Total optimizer steps of the run (S). */
  steps: number;
}

/** The learning rate of optimizer step `step` (0-based). */
export function learningRate(s: Schedule, step: number): number {
  const W = Math.max(0, s.warmupSteps);
  if (step < W) return (s.lr * step) / Math.max(1, W);
  if (s.kind === 'constant') return s.lr;
  const progress = (step - W) / Math.max(1, s.steps - W);
  if (s.kind === 'linear') return s.lr * Math.max(0, 1 - progress);
  return s.lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress))));
}
