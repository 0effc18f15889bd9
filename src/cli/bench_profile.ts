// `npm run bench -- --profile [...]`: where one training step's GPU time goes, by kernel family (the families of
// `--dry-run`, bench_dry_run.ts's kernelFamily), measured with src/gpu/profiler.ts on the real device: per
// dispatch from timestamp queries where the adapter has `timestamp-query`, else by wall clock around each
// dispatch submitted alone; `clock` says which. On SwiftShader the times are CPU emulation and mean nothing
// beyond "this runs".
//
// This file measures; it does not change the engine.

import type { Gpu } from '../gpu/gpu';
import { Profiler, type ProfileClock } from '../gpu/profiler';
import { kernelFamily } from './bench_dry_run';

export interface FamilyTime {
  dispatches: number;
  ms: number;
}

export interface StepProfile {
  clock: ProfileClock;
  /** Sum over the step's dispatches (one pass each, so a little above the unprofiled step's GPU time). */
  ms_total: number;
  /** By kernel family, most time first. */
  families: Record<string, FamilyTime>;
}

/** Runs `step` once with a Profiler attached to `gpu`, and sums its dispatches' times per kernel family. */
export async function profileStep(gpu: Gpu, step: () => Promise<unknown>, clock?: ProfileClock): Promise<StepProfile> {
  const profiler = new Profiler(gpu, clock);
  gpu.profiler = profiler;
  try {
    await step();
  } finally {
    gpu.profiler = null;
  }
  const families: Record<string, FamilyTime> = {};
  let total = 0;
  for (const { dispatch, ms } of await profiler.read()) {
    const f = (families[kernelFamily(dispatch)] ??= { dispatches: 0, ms: 0 });
    f.dispatches++;
    f.ms += ms;
    total += ms;
  }
  const round = (x: number) => Number(x.toPrecision(4));
  const sorted = Object.entries(families).sort(([, a], [, b]) => b.ms - a.ms).map(([k, f]) => [k, { dispatches: f.dispatches, ms: round(f.ms) }]);
  return { clock: profiler.clock, ms_total: round(total), families: Object.fromEntries(sorted) };
}
