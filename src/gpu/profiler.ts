// Profiler: GPU time per dispatch of whatever a Gpu encodes while it is attached (`gpu.profiler = p`), for
// `bench --profile` (src/cli/bench.ts), which sums the times per kernel family.
//
// Two clocks, and the result says which one it used:
// - 'timestamp-query' (the device has the feature): Gpu.encode hands each dispatch to encode() below, which puts
//   it in a compute pass of its own whose beginning and end write a timestamp (WebGPU times passes, not
//   dispatches). The program runs once, as it would unprofiled, only split into one pass per dispatch, which
//   costs a little GPU time of its own; read() resolves the queries and reads them back.
// - 'wall-clock' (no timestamp-query, or asked for): the program runs normally while its dispatches are noted;
//   read() then submits each again alone and times submit → onSubmittedWorkDone on the CPU. Those times include
//   a submission's fixed cost, and the replay runs the program's dispatches a second time (a training step's
//   update is applied twice): a profile, not a training run.
// Not a tracer: nothing is kept beyond the dispatches and their times, and an unprofiled Gpu pays nothing.

import type { Dispatch, EncodeHook, Gpu } from './gpu';

export type ProfileClock = 'timestamp-query' | 'wall-clock';

export interface DispatchTime {
  dispatch: Dispatch;
  /** Milliseconds of GPU time (timestamp-query) or of submit-to-done wall clock, never negative. */
  ms: number;
}

/** WebGPU allows at most 4096 queries per set: two per dispatch. */
const QUERIES_PER_SET = 4096;
const QUERY_RESOLVE = 0x0200, COPY_SRC = 0x0004, COPY_DST = 0x0008, MAP_READ = 0x0001;

export class Profiler implements EncodeHook {
  readonly clock: ProfileClock;
  private readonly gpu: Gpu;
  private readonly noted: Dispatch[] = [];
  private readonly sets: GPUQuerySet[] = [];

  /** `clock` defaults to timestamp-query where the device has it; 'wall-clock' may be asked for on any device. */
  constructor(gpu: Gpu, clock?: ProfileClock) {
    const stamps = gpu.device.features.has('timestamp-query');
    if (clock === 'timestamp-query' && !stamps) throw new Error(`${gpu.info.name} has no timestamp-query: profile with the wall clock`);
    this.gpu = gpu;
    this.clock = clock ?? (stamps ? 'timestamp-query' : 'wall-clock');
  }

  /** Called by Gpu.encode while attached: encodes `dispatches` (empty grids skipped, as there) and notes them. */
  encode(encoder: GPUCommandEncoder, dispatches: readonly Dispatch[], label: string): void {
    const live = dispatches.filter((d) => d.workgroups.every((w) => w > 0));
    if (this.clock === 'wall-clock') {
      this.noted.push(...live);
      const pass = encoder.beginComputePass({ label });
      for (const d of live) this.record(pass, d);
      pass.end();
      return;
    }
    for (const d of live) {
      const query = 2 * (this.noted.length % (QUERIES_PER_SET / 2));
      if (query === 0) {
        this.sets.push(this.gpu.device.createQuerySet({ label: `profiler.timestamps${this.sets.length}`, type: 'timestamp', count: QUERIES_PER_SET }));
      }
      const querySet = this.sets[this.sets.length - 1];
      this.noted.push(d);
      const pass = encoder.beginComputePass({ label: d.label, timestampWrites: { querySet, beginningOfPassWriteIndex: query, endOfPassWriteIndex: query + 1 } });
      this.record(pass, d);
      pass.end();
    }
  }

  private record(pass: GPUComputePassEncoder, d: Dispatch): void {
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
  }

  /** The time of every dispatch encoded so far, in order. Detach the profiler first (gpu.profiler = null). */
  async read(): Promise<DispatchTime[]> {
    const gpu = this.gpu;
    if (gpu.profiler === this) throw new Error('Profiler.read: detach it first (gpu.profiler = null), or its own work is profiled');
    if (this.clock === 'wall-clock') {
      const out: DispatchTime[] = [];
      await gpu.device.queue.onSubmittedWorkDone();
      for (const d of this.noted) {
        const t0 = performance.now();
        gpu.run([d], 'profiler.replay');
        await gpu.device.queue.onSubmittedWorkDone();
        out.push({ dispatch: d, ms: performance.now() - t0 });
      }
      return out;
    }
    const bytes = 8 * 2 * this.noted.length;
    // Made and destroyed here, outside the Gpu's pool and accounting, like Gpu.readBytes's staging buffer.
    const resolve = gpu.device.createBuffer({ label: 'profiler.resolve', size: this.sets.length * QUERIES_PER_SET * 8, usage: QUERY_RESOLVE | COPY_SRC });
    const staging = gpu.device.createBuffer({ label: 'profiler.staging', size: bytes, usage: MAP_READ | COPY_DST });
    const encoder = gpu.device.createCommandEncoder({ label: 'profiler.resolve' });
    this.sets.forEach((set, i) => {
      const count = Math.min(QUERIES_PER_SET, 2 * this.noted.length - i * QUERIES_PER_SET);
      encoder.resolveQuerySet(set, 0, count, resolve, i * QUERIES_PER_SET * 8);
    });
    encoder.copyBufferToBuffer(resolve, 0, staging, 0, Math.ceil(bytes / 8) * 8);
    gpu.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(MAP_READ);
    const stamps = new BigUint64Array(staging.getMappedRange().slice(0, bytes));
    staging.unmap();
    for (const b of [resolve, staging]) b.destroy();
    for (const s of this.sets) s.destroy();
    // A timestamp pair may come back reversed on some GPUs (clocks of different units): count it as 0, not negative.
    return this.noted.map((dispatch, i) => ({ dispatch, ms: Math.max(0, Number(stamps[2 * i + 1] - stamps[2 * i])) / 1e6 }));
  }
}
