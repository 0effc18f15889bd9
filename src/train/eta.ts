// The run's time left, as the Train panel shows it: training steps and validation passes are timed apart
// and each is projected over what remains of it, so a run that measures the validation loss every few steps
// is not promised the time of its steps alone. The first of each is left out of its mean once there are
// others: it compiles the GPU programs, and on SwiftShader that costs many steps' time. What is neither (the
// CPU snapshot, checkpoints) is spread over the steps left.
//
// Pure arithmetic, no clock of its own: run.ts measures and calls this.

/** Seconds measured so far in a run (pauses excluded). */
export interface EtaTimes {
  /** Training steps run, the sum of their seconds, and the first one's seconds. */
  steps: number;
  stepSec: number;
  firstStepSec: number;
  /** Validation passes run, their seconds, the first one's. */
  vals: number;
  valSec: number;
  firstValSec: number;
  /** Seconds that were neither (snapshots, checkpoints, reporting). */
  otherSec: number;
}

/** The mean of `count` samples summing to `total`, without the first when there are others. */
function typical(total: number, first: number, count: number): number {
  if (count <= 0) return 0;
  return count === 1 ? total : (total - first) / (count - 1);
}

/**
 * Seconds left: stepsLeft × step time + valsLeft × validation time + the other time per step × stepsLeft.
 * Before the first validation pass, its time is guessed from a step's: `valGuess` is the pass's share of a
 * step (forward-only batches over the step's forward and backward ones).
 */
export function projectEta(t: EtaTimes, left: { steps: number; vals: number }, valGuess: number): number {
  if (t.steps === 0) return 0;
  const step = typical(t.stepSec, t.firstStepSec, t.steps);
  const val = t.vals > 0 ? typical(t.valSec, t.firstValSec, t.vals) : step * valGuess;
  const other = t.otherSec / t.steps;
  return Math.max(0, left.steps * (step + other) + left.vals * val);
}

/**
 * Validation passes at the adapter steps after `done` up to `end`: every `every`-th step of the run that
 * began at `origin`, and the last (run.ts measures exactly these).
 */
export function validationsLeft(done: number, end: number, origin: number, every: number): number {
  if (done >= end) return 0;
  const multiples = Math.floor((end - origin) / every) - Math.floor((done - origin) / every);
  return multiples + ((end - origin) % every === 0 ? 0 : 1);
}

/**
 * A validation pass's time as a share of a training step's, before any was measured: `valBatches`
 * forward-only batches against the step's `accum` batches, each of which runs forward and backward (about
 * three forwards' work).
 */
export function validationGuess(valBatches: number, accum: number): number {
  return valBatches / (3 * Math.max(1, accum));
}
