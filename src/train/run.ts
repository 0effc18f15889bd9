// The studio's training loop: one optimizer step per iteration on a built Trainer, with the learning-rate
// schedule (schedule.ts), gradient accumulation (K micro-batches of the wrapped data walk, batches.ts), a
// validation loss about VAL_POINTS times a run and at its end, a CPU copy of the adapter every SNAPSHOT_MS
// (what can still be saved after a lost device), a checkpoint every `checkpointEveryMs` and on pause, and
// the guard: a non-finite loss stops the run and puts back the last adapter whose loss was finite
// (Trainer.keepLastGood). Pause, resume and stop arrive through a RunControl.
//
// This file knows nothing of the worker protocol, the library or the session's state: the caller builds the
// trainer, and hears of every step, rollback, snapshot and progress through RunHooks; it writes checkpoints
// when the loop asks (hooks.checkpoint). Also here: the run settings checked, and the AdamW settings the
// studio trains with (shared with the memory plan, so the plan builds the trainer the run builds).

import { GpuError } from '../gpu/errors';
import type { Gpu } from '../gpu/gpu';
import type { Row } from '../io/dataset';
import { badInput } from '../io/errors';
import type { LossPoint } from '../io/library';
import { LORA_TARGETS, type AdapterConfig } from '../io/peft';
import type { CausalLM } from '../model/causal_lm';
import { checkAdapterSettings } from '../model/lora';
import type { LoraSettings, OptimSettings } from './settings';
import { batchAt } from './batches';
import { projectEta, validationGuess, validationsLeft, type EtaTimes } from './eta';
import { learningRate, SCHEDULES } from './schedule';
import type { Evaluator, OptimizerSettings, Trainer } from './trainer';

/** Copy the adapter to the CPU at most this often while training, for a lost device. */
const SNAPSHOT_MS = 5_000;
/** Validation loss: at most this many batches, measured VAL_POINTS times a run and at its end. */
const MAX_VAL_BATCHES = 2;
const VAL_POINTS = 10;

/** The optimizer the studio runs: AdamW, β 0.9/0.999, ε 1e-8, no weight decay, the run's lr and clipping. */
export function studioOptimizer(o: Pick<OptimSettings, 'lr' | 'maxGradNorm'>): OptimizerSettings {
  return { kind: 'adamw', lr: o.lr, weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, maxGradNorm: o.maxGradNorm };
}

export function checkOptim(o: OptimSettings): void {
  const whole = (v: number, min: number, what: string) => {
    if (!Number.isSafeInteger(v) || v < min) badInput(`${what} must be a whole number ≥ ${min} (got ${v}).`);
  };
  whole(o.steps, 1, 'Steps');
  whole(o.batchSize, 1, 'Batch size');
  whole(o.gradAccum, 1, 'Gradient accumulation');
  whole(o.warmupSteps, 0, 'Warm-up steps');
  if (!Number.isInteger(o.seed)) badInput(`The seed must be a whole number (got ${o.seed}).`);
  if (!(Number.isFinite(o.lr) && o.lr > 0)) badInput(`The learning rate must be a number > 0 (got ${o.lr}); 1e-4 to 1e-3 is usual for LoRA.`);
  if (!(Number.isFinite(o.maxGradNorm) && o.maxGradNorm >= 0)) badInput(`Gradient clipping must be a number ≥ 0 (0: off; got ${o.maxGradNorm}).`);
  if (!SCHEDULES.includes(o.schedule)) badInput(`Unknown schedule "${o.schedule}"; choose ${SCHEDULES.join(', ')}.`);
}

/** PEFT's AdapterConfig for the studio's LoRA settings, checked. */
export function adapterConfig(lora: LoraSettings, baseModel: string): AdapterConfig {
  const targets = [...new Set(lora.targets)];
  for (const t of targets) if (!(LORA_TARGETS as readonly string[]).includes(t)) badInput(`Unknown target module "${t}"; choose from ${LORA_TARGETS.join(', ')}.`);
  // PEFT keeps targets in the order given; the studio uses the model's order, so equal settings give equal files.
  const ordered = LORA_TARGETS.filter((t) => targets.includes(t));
  const cfg: AdapterConfig = { r: lora.r, loraAlpha: lora.alpha, loraDropout: lora.dropout, targetModules: ordered, useRslora: lora.rslora, baseModel };
  if (lora.dora) cfg.useDora = true;
  checkAdapterSettings(cfg);
  return cfg;
}

/** Pause, resume and stop of a running loop; it exists before the trainer is built, so a second run is refused at once. */
export class RunControl {
  state: 'running' | 'paused' | 'stopping' = 'running';
  private wake: (() => void) | null = null;

  pause(): void {
    if (this.state === 'running') this.state = 'paused';
  }

  resume(): void {
    if (this.state === 'paused') {
      this.state = 'running';
      this.wake?.();
    }
  }

  stop(): void {
    this.state = 'stopping';
    this.wake?.();
  }

  /** Waits while paused; the seconds it waited. */
  async whilePaused(): Promise<number> {
    const p0 = performance.now();
    while (this.state === 'paused') await new Promise<void>((wake) => (this.wake = wake));
    return (performance.now() - p0) / 1000;
  }
}

/** One step's numbers, as the studio shows them (the worker posts them as its trainProgress event). */
export interface StepReport {
  /** Adapter steps done, 1-based; `steps` in all. */
  step: number;
  steps: number;
  /** Mean training loss of this step (before its update). */
  loss: number;
  /** Mean loss over (up to a few batches of) the validation rows, on the steps that measure it. */
  valLoss?: number;
  lr: number;
  tokensPerSec: number;
  etaSec: number;
  /** Seconds spent training, pauses excluded. */
  elapsedSec: number;
  /** Set on the step whose checkpoint (weights, AdamW moments, step, history) has just reached the library. */
  checkpointStep?: number;
  /** Set when a checkpoint could not be written (e.g. storage full): training goes on, the previous one is kept. */
  checkpointError?: string;
}

export interface RunHooks {
  /** A step finished: the adapter has had `step` steps; `points` (train, maybe validation) join its loss history. */
  stepped(step: number, points: LossPoint[]): void;
  /** A non-finite loss put back the adapter of `step` steps (the last with a finite loss). */
  rolledBack(step: number): void;
  /** A CPU copy of the adapter, taken now and then and at the end. */
  snapshot(weights: Map<string, Float32Array>): void;
  /** Write the run's checkpoint at the current step; throws when it could not. */
  checkpoint(): Promise<void>;
  progress(report: StepReport): void;
  /** The loop has stopped at a step boundary to wait out a pause, after writing the checkpoint of that step. */
  paused(report: PauseReport): void;
}

/** Where a paused run waits: after adapter step `step`, and whether the library holds that step. */
export interface PauseReport {
  step: number;
  /** The step whose checkpoint the library holds now, when it is `step` (written on this pause, or before it). */
  checkpointStep?: number;
  /** Why this pause's checkpoint could not be written. */
  checkpointError?: string;
}

export interface RunLoop {
  model: CausalLM;
  trainer: Trainer;
  /** Forward-only loss on `validation` in batches of its B rows; null: no validation rows. */
  evaluator: Evaluator | null;
  train: readonly Row[];
  validation: readonly Row[];
  seqLen: number;
  optim: OptimSettings;
  /** Adapter steps when the run began (its schedule's step 0), and when this loop starts (later after a resume). */
  origin: number;
  startSteps: number;
  /** The step whose checkpoint the library already holds (a resumed run's), else null. */
  written: number | null;
  checkpointEveryMs: number;
}

export interface RunOutcome {
  reason: 'done' | 'stopped' | 'nan' | 'device-lost';
  /** Adapter steps at the end. */
  steps: number;
  lastLoss: number | null;
  /** The step of the last checkpoint written, or null. */
  written: number | null;
  checkpointError: string | undefined;
  /** For a non-finite loss or a lost device: what happened and what was kept. */
  message: string;
  /** The lost device's message. */
  lost?: string;
}

/**
 * What happened to a run, for the user: a finished run's steps (`fresh`: from 0, else up to the planned
 * `end`), a stopped one's, or the outcome's own message (a non-finite loss, a lost device).
 */
export function stopMessage(outcome: RunOutcome, fresh: boolean, startSteps: number, end: number): string {
  const { reason, steps } = outcome;
  const plural = (n: number) => `${n} step${n === 1 ? '' : 's'}`;
  if (reason === 'done') return fresh ? `Trained ${plural(steps)}.` : `Trained to step ${steps} of ${end}.`;
  if (reason === 'stopped') return `Stopped after ${plural(steps)}; the adapter is kept${steps > startSteps ? ', and the run can resume from the library' : ''}.`;
  return outcome.message;
}

/** Whether `e` (thrown while training on `gpu`) means the device is gone. */
export function isDeviceLoss(gpu: Gpu, e: unknown): boolean {
  return gpu.lost !== null || (e instanceof GpuError && e.code === 'device-lost');
}

export function deviceLostMessage(lost: string, steps: number): string {
  return `The GPU device was lost during training (${lost}). The adapter as of the last copy ` +
    `(step ${steps} or a little before) can still be saved to the library; load the model again to go on.`;
}

/**
 * Runs optimizer steps from loop.startSteps to origin + optim.steps. A lost device ends the run (reason
 * 'device-lost'; the last snapshot is what is left); any other error is thrown. A failed checkpoint is
 * reported in the progress and the outcome, and training goes on.
 */
export async function trainLoop(loop: RunLoop, control: RunControl, hooks: RunHooks): Promise<RunOutcome> {
  const { model, trainer, evaluator, optim: o, origin, startSteps } = loop;
  const B = o.batchSize, T = loop.seqLen, K = o.gradAccum;
  const end = origin + o.steps;
  const valEvery = Math.max(1, Math.ceil(o.steps / VAL_POINTS));
  const t0 = performance.now();
  let steps = startSteps, trainSec = 0, pausedSec = 0, lastLoss: number | null = null;
  let lastSnapshot = t0, lastCheckpoint = t0, written = loop.written, checkpointError: string | undefined;
  // Steps and validation passes timed apart, for the ETA (eta.ts).
  const times: EtaTimes = { steps: 0, stepSec: 0, firstStepSec: 0, vals: 0, valSec: 0, firstValSec: 0, otherSec: 0 };
  const valBatches = loop.evaluator ? Math.min(MAX_VAL_BATCHES, Math.ceil(loop.validation.length / loop.evaluator.B)) : 0;
  const outcome = (reason: RunOutcome['reason'], message = ''): RunOutcome => ({ reason, steps, lastLoss, written, checkpointError, message });
  const checkpoint = async (): Promise<void> => {
    try {
      await hooks.checkpoint();
      written = steps;
      checkpointError = undefined;
    } catch (e) {
      if (model.gpu.lost) throw e;
      checkpointError = `The checkpoint at step ${steps} could not be saved (${(e as Error).message})`;
    }
    lastCheckpoint = performance.now();
  };
  const finish = async (result: RunOutcome): Promise<RunOutcome> => {
    hooks.snapshot(await model.readAdapter());
    return result;
  };

  try {
    while (steps < end) {
      if (control.state === 'paused') {
        // A paused tab is often a tab about to close: keep where the run is, and say which step that is,
        // since the step in flight when Pause was pressed finished after it.
        if (written !== steps && steps > startSteps) await checkpoint();
        hooks.paused({ step: steps, ...(written === steps ? { checkpointStep: steps } : {}), ...(checkpointError !== undefined ? { checkpointError } : {}) });
        pausedSec += await control.whilePaused();
      }
      if (control.state === 'stopping') return await finish(outcome('stopped'));
      // s: the run's own step, which indexes the schedule and the data walk (the same after a resume).
      const s = steps - origin;
      const lr = learningRate({ lr: o.lr, kind: o.schedule, warmupSteps: o.warmupSteps, steps: o.steps }, s);
      const batches = Array.from({ length: K }, (_, k) => batchAt(loop.train, (s * K + k) * B, B, T));
      const s0 = performance.now();
      const loss = await trainer.stepBatches(batches, lr);
      const stepSec = (performance.now() - s0) / 1000;
      trainSec += stepSec;
      if (times.steps++ === 0) times.firstStepSec = stepSec;
      times.stepSec += stepSec;
      if (!Number.isFinite(loss)) {
        const failed = steps + 1;
        steps = origin + trainer.restoreLastGood();
        hooks.rolledBack(steps);
        return await finish(outcome('nan',
          `The loss became ${loss} at step ${failed}, so training stopped. The adapter from step ${steps} (the last with a finite loss) is kept. ` +
            'Lower the learning rate, or turn on gradient clipping, and start again.'));
      }
      steps++;
      lastLoss = loss;
      const points: LossPoint[] = [{ step: steps, loss, split: 'train' }];
      let valLoss: number | undefined;
      if (evaluator && ((steps - origin) % valEvery === 0 || steps === end)) {
        const v0 = performance.now();
        valLoss = await validate(evaluator, loop.validation, T);
        const valSec = (performance.now() - v0) / 1000;
        if (times.vals++ === 0) times.firstValSec = valSec;
        times.valSec += valSec;
        points.push({ step: steps, loss: valLoss, split: 'validation' });
      }
      hooks.stepped(steps, points);
      if (performance.now() - lastSnapshot > SNAPSHOT_MS) {
        hooks.snapshot(await model.readAdapter());
        lastSnapshot = performance.now();
      }
      let checkpointStep: number | undefined;
      if (steps < end && performance.now() - lastCheckpoint >= loop.checkpointEveryMs) {
        await checkpoint();
        if (written === steps) checkpointStep = steps;
      }
      const ran = steps - startSteps;
      const elapsedSec = (performance.now() - t0) / 1000 - pausedSec;
      times.otherSec = Math.max(0, elapsedSec - times.stepSec - times.valSec);
      const left = { steps: end - steps, vals: evaluator ? validationsLeft(steps, end, origin, valEvery) : 0 };
      hooks.progress({
        step: steps,
        steps: end,
        loss,
        valLoss,
        lr,
        tokensPerSec: trainSec > 0 ? (ran * K * B * T) / trainSec : 0,
        etaSec: projectEta(times, left, validationGuess(valBatches, K)),
        elapsedSec,
        ...(checkpointStep !== undefined ? { checkpointStep } : {}),
        ...(checkpointError !== undefined ? { checkpointError } : {}),
      });
    }
    return await finish(outcome('done'));
  } catch (e) {
    if (!isDeviceLoss(model.gpu, e)) throw e;
    const lost = model.gpu.lost?.message || (e as Error).message;
    return { ...outcome('device-lost', deviceLostMessage(lost, steps)), lost };
  }
}

/** Token-weighted mean loss over the first MAX_VAL_BATCHES batches of validation rows. */
async function validate(ev: Evaluator, rows: readonly Row[], T: number): Promise<number> {
  let sum = 0, tokens = 0;
  for (let i = 0; i < MAX_VAL_BATCHES && i * ev.B < rows.length; i++) {
    const { ids, targets } = batchAt(rows, i * ev.B, ev.B, T);
    const r = await ev.loss(ids, targets);
    if (r.tokens > 0) {
      sum += r.loss * r.tokens;
      tokens += r.tokens;
    }
  }
  return tokens > 0 ? sum / tokens : NaN;
}
