// Pausing the run loop (src/train/run.ts) with a fake trainer, no GPU: a Pause pressed while a step is on
// the GPU takes hold after that step, so the checkpoint the pause writes and the step the pause reports are
// the step the last progress report showed, the one the studio has on screen; a pause right after a
// checkpoint of the same step writes none and still says the library holds it; a resumed run paused before
// its first step reports the step its library entry already holds.

import { describe, expect, it } from 'vitest';
import type { CausalLM } from '../../src/model/causal_lm';
import { RunControl, trainLoop, type PauseReport, type RunHooks, type RunLoop } from '../../src/train/run';
import type { Trainer } from '../../src/train/trainer';
import type { OptimSettings } from '../../src/train/settings';

const OPTIM: OptimSettings = { lr: 1e-3, schedule: 'constant', warmupSteps: 0, steps: 6, batchSize: 1, gradAccum: 1, maxGradNorm: 0, seed: 0 };

interface Seen {
  shown: number[];
  checkpoints: number[];
  pauses: (PauseReport & { shownThen: number | undefined })[];
}

/** A loop of OPTIM.steps fake steps; `during(step)` runs while step `step` (1-based) is "on the GPU". */
async function run(control: RunControl, during: (step: number) => void, overrides: Partial<RunLoop> = {}, checkpointEveryMs = 60_000): Promise<Seen> {
  let steps = overrides.startSteps ?? 0;
  const trainer = {
    stepBatches: async () => {
      during(++steps);
      await new Promise((r) => setTimeout(r, 1));
      return 2;
    },
    restoreLastGood: () => 0,
  } as unknown as Trainer;
  const model = { gpu: { lost: null }, readAdapter: async () => new Map() } as unknown as CausalLM;
  const row = { ids: new Int32Array(4), targets: new Int32Array(4) };
  const loop: RunLoop = {
    model, trainer, evaluator: null, train: [row, row], validation: [], seqLen: 4, optim: OPTIM,
    origin: 0, startSteps: 0, written: null, checkpointEveryMs, ...overrides,
  };
  const seen: Seen = { shown: [], checkpoints: [], pauses: [] };
  let at = loop.startSteps;
  const hooks: RunHooks = {
    stepped: (step) => void (at = step),
    rolledBack: () => {},
    snapshot: () => {},
    checkpoint: async () => void seen.checkpoints.push(at),
    progress: (r) => void seen.shown.push(r.step),
    paused: (r) => {
      seen.pauses.push({ ...r, shownThen: seen.shown.at(-1) });
      setTimeout(() => control.resume(), 1);
    },
  };
  const outcome = await trainLoop(loop, control, hooks);
  expect(outcome.reason).toBe('done');
  return seen;
}

describe('pausing a run', () => {
  it('takes hold after the step in flight, and checkpoints the step on show', async () => {
    const control = new RunControl();
    const seen = await run(control, (step) => { if (step === 3) control.pause(); });
    expect(seen.shown).toEqual([1, 2, 3, 4, 5, 6]);
    // Pause was pressed while step 3 ran (2 on show): it took hold after step 3, which the screen then showed.
    expect(seen.pauses).toEqual([{ step: 3, checkpointStep: 3, shownThen: 3 }]);
    expect(seen.checkpoints).toEqual([3]);
  });

  it('writes no second checkpoint of a step the library holds, and says it holds it', async () => {
    const control = new RunControl();
    // A checkpoint after every step (checkpointEveryMs 0), and a pause during step 2.
    const seen = await run(control, (step) => { if (step === 2) control.pause(); }, {}, 0);
    expect(seen.pauses).toEqual([{ step: 2, checkpointStep: 2, shownThen: 2 }]);
    expect(seen.checkpoints).toEqual([1, 2, 3, 4, 5]); // the last step's write is the caller's (the finished run)
  });

  it('reports the step a resumed run’s entry holds when paused before its first step', async () => {
    const control = new RunControl();
    control.pause();
    const seen = await run(control, () => {}, { startSteps: 4, written: 4 });
    expect(seen.pauses).toEqual([{ step: 4, checkpointStep: 4, shownThen: undefined }]);
    expect(seen.checkpoints).toEqual([]);
    expect(seen.shown).toEqual([5, 6]);
  });
});
