// The run's ETA (src/train/eta.ts): steps and validation passes timed apart and each projected over what is
// left of it, and, through the real run loop on a virtual clock, right within 20% by mid-run on the studio's
// default demo (200 steps of batch 8, the validation loss every 20th step and at the end) with SwiftShader's
// costs: a first step that compiles the programs, and validation passes that cost more than a step.

import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CausalLM } from '../../src/model/causal_lm';
import { projectEta, validationGuess, validationsLeft, type EtaTimes } from '../../src/train/eta';
import { RunControl, trainLoop, type RunLoop, type StepReport } from '../../src/train/run';
import type { Evaluator, Trainer } from '../../src/train/trainer';
import { DEFAULT_SETTINGS } from '../../src/ui/studio_defaults';

const NONE: EtaTimes = { steps: 0, stepSec: 0, firstStepSec: 0, vals: 0, valSec: 0, firstValSec: 0, otherSec: 0 };

describe('ETA projection', () => {
  it('projects steps and validation passes at their own speeds, leaving out the first of each (it compiles)', () => {
    // 11 steps: the first 12 s, then 1 s each; 3 passes: the first 5 s, then 2 s each; 1.1 s of snapshots.
    const t: EtaTimes = { steps: 11, stepSec: 22, firstStepSec: 12, vals: 3, valSec: 9, firstValSec: 5, otherSec: 1.1 };
    expect(projectEta(t, { steps: 20, vals: 4 }, 0.5)).toBeCloseTo(20 * (1 + 0.1) + 4 * 2, 10);
    // One sample of each is all there is: it is the estimate.
    expect(projectEta({ ...NONE, steps: 1, stepSec: 3, firstStepSec: 3, vals: 1, valSec: 2, firstValSec: 2 }, { steps: 2, vals: 1 }, 0.5)).toBeCloseTo(8, 10);
  });

  it('guesses a validation pass from a step until one is measured', () => {
    const t: EtaTimes = { ...NONE, steps: 3, stepSec: 3, firstStepSec: 1 };
    // Two forward-only batches against one forward-and-backward batch: two thirds of a step.
    expect(validationGuess(2, 1)).toBeCloseTo(2 / 3, 10);
    expect(projectEta(t, { steps: 6, vals: 3 }, validationGuess(2, 1))).toBeCloseTo(6 + 3 * (2 / 3), 10);
    expect(projectEta(NONE, { steps: 6, vals: 3 }, 1)).toBe(0);
    expect(projectEta(t, { steps: 0, vals: 0 }, 1)).toBe(0);
  });

  it('counts the validation passes left as the run loop measures them: every n-th step of the run and the last', () => {
    for (const [origin, end, every] of [[0, 200, 20], [0, 7, 3], [5, 12, 2], [3, 4, 1], [10, 33, 4]]) {
      const measured = (s: number) => (s - origin) % every === 0 || s === end;
      for (let done = origin; done <= end; done++) {
        let want = 0;
        for (let s = done + 1; s <= end; s++) if (measured(s)) want++;
        expect(validationsLeft(done, end, origin, every), `${origin}..${end} every ${every}, at ${done}`).toBe(want);
      }
    }
  });
});

describe('ETA of a run', () => {
  afterEach(() => vi.restoreAllMocks());

  it('is within 20% of the time really left by mid-run on the default demo, on SwiftShader’s costs', async () => {
    let now = 0;
    vi.spyOn(performance, 'now').mockImplementation(() => now);
    const { optim, seqLen } = DEFAULT_SETTINGS;
    const B = optim.batchSize;
    // Milliseconds of SwiftShader's kind (chosen, not measured here): the first step and the first validation
    // batch build their pipelines, which costs many steps' time; a snapshot every 5 s, a checkpoint every 30 s.
    const STEP = 900, FIRST_STEP = 25_000, VAL_BATCH = 350, FIRST_VAL = 6_000, SNAPSHOT = 40, CHECKPOINT = 300;
    let steps = 0, valBatches = 0;
    const trainer = {
      stepBatches: async () => {
        now += steps++ === 0 ? FIRST_STEP : STEP;
        return 2;
      },
      restoreLastGood: () => 0,
    } as unknown as Trainer;
    const evaluator = {
      B,
      loss: async () => {
        now += valBatches++ === 0 ? FIRST_VAL : VAL_BATCH;
        return { loss: 2.5, tokens: B * seqLen };
      },
    } as unknown as Evaluator;
    const model = { gpu: { lost: null }, readAdapter: async () => ((now += SNAPSHOT), new Map()) } as unknown as CausalLM;
    const row = { ids: new Int32Array(seqLen), targets: new Int32Array(seqLen) };
    const loop: RunLoop = {
      model, trainer, evaluator, seqLen, optim,
      train: Array.from({ length: 90 }, () => row),
      validation: Array.from({ length: 10 }, () => row),
      origin: 0, startSteps: 0, written: null, checkpointEveryMs: 30_000,
    };
    const reports: { report: StepReport; at: number }[] = [];
    const outcome = await trainLoop(loop, new RunControl(), {
      stepped: () => {},
      rolledBack: () => {},
      snapshot: () => {},
      checkpoint: async () => void (now += CHECKPOINT),
      progress: (report) => reports.push({ report, at: now }),
      paused: () => {},
    });
    expect(outcome.reason).toBe('done');
    expect(valBatches).toBeGreaterThan(10); // the validation passes ran, 2 batches each
    const end = now;
    // From mid-run on, every step's ETA is within 20% of what was really left.
    for (const { report, at } of reports.filter((r) => r.report.step >= optim.steps / 2 && r.report.step < optim.steps)) {
      const left = (end - at) / 1000;
      expect(Math.abs(report.etaSec - left) / left, `step ${report.step}: ETA ${report.etaSec.toFixed(1)} s, really ${left.toFixed(1)} s`).toBeLessThan(0.2);
    }
    expect(reports.at(-1)!.report.etaSec).toBe(0);
  });
});
