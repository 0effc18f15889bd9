// Several independent GEMMs in one dispatch (shaders/matmul_grouped.wgsl): `matmulGrouped` packs a list of
// jobs, each `gemm`'s contract with any number of K-segments and operands of its own, into as few dispatches
// as the eight storage bindings allow. lora_group.ts records a projection group's q, k, v (or gate, up) and
// their LoRA products this way (issue 14: fewer dispatches per step). It builds Dispatch records over
// caller-owned buffers and encodes nothing. With the device's GEMM set to version 1 (setGemmKernel), every job
// runs as version 1's own dispatches instead: the reference the grouped kernels are tested against.
//
// Shapes, per job: C (M, N) = [C +] Σ_s alpha_s·P_s·Q_s [+ bias], P_s (M, K_s) or stored (K_s, M) when
// transP, Q_s (K_s, N) or stored (N, K_s) when transQ.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { gemm, type GemmSpec } from './matmul';
import { gemmKernel } from './matmul_fast';

/** Mirrors `struct Params` in shaders/matmul_grouped.wgsl. */
export const MATMUL_GROUPED_PARAMS: UniformLayout = [['jobs', 'u32'], ['grid_x', 'u32'], ['total', 'u32']];

/** Mirror `struct Job` and `struct Seg` of the shader's job table (`struct Table`: MAX_JOBS jobs, then MAX_SEGS segments). */
export const JOB_FIELDS: UniformLayout = [
  ['first', 'u32'], ['tiles_n', 'u32'], ['M', 'u32'], ['N', 'u32'], ['c', 'u32'], ['c_off', 'u32'], ['ld_c', 'u32'],
  ['accumulate', 'u32'], ['bias', 'u32'], ['bias_off', 'u32'], ['seg0', 'u32'], ['segs', 'u32'],
];
export const SEG_FIELDS: UniformLayout = [
  ['p', 'u32'], ['p_off', 'u32'], ['ld_p', 'u32'], ['trans_p', 'u32'], ['q', 'u32'], ['q_off', 'u32'], ['ld_q', 'u32'],
  ['trans_q', 'u32'], ['K', 'u32'], ['alpha', 'f32'], ['pad0', 'u32'], ['pad1', 'u32'],
];
export const MAX_JOBS = 8;
export const MAX_SEGS = 12;
/** b0..b5 read-only, b6 and b7 read-write: the eight storage buffers WebGPU guarantees a shader stage. */
const READ_SLOTS = 6;
const SLOTS = 8;
const NONE = 0xffffffff;
const MAX_GRID_X = 65535;
/** matmul_fast.ts's threshold for 128-wide tiles (about one wave of an H100's 132 SMs). */
const MIN_WORKGROUPS_FOR_128 = 128;

const TABLE: UniformLayout = [
  ...Array.from({ length: MAX_JOBS }, (_, j) => JOB_FIELDS.map(([f, t]) => [`job${j}_${f}`, t] as const)).flat(),
  ...Array.from({ length: MAX_SEGS }, (_, s) => SEG_FIELDS.map(([f, t]) => [`seg${s}_${f}`, t] as const)).flat(),
];

export interface GroupedSegment {
  p: Binding;
  q: Binding;
  K: number;
  alpha?: number;
  transP?: boolean;
  transQ?: boolean;
  /** Row strides; default to the packed layout. */
  ldP?: number;
  ldQ?: number;
}

export interface GroupedJob {
  M: number;
  N: number;
  c: Binding;
  ldC?: number;
  bias?: Binding;
  accumulate?: boolean;
  segs: readonly GroupedSegment[];
}

/** 'tiled': matmul_fast's register-blocked tile; 'splitk': matmul_splitk's, for skinny C and long K. */
export type GroupedKernel = 'tiled' | 'splitk';

function start(b: Binding): { buffer: GPUBuffer; offset: number; size: number } {
  if ('buffer' in b) {
    const offset = b.offset ?? 0;
    return { buffer: b.buffer, offset, size: b.size ?? b.buffer.size - offset };
  }
  return { buffer: b, offset: 0, size: b.size };
}

const ldP = (j: GroupedJob, s: GroupedSegment) => s.ldP ?? (s.transP ? j.M : s.K);
const ldQ = (j: GroupedJob, s: GroupedSegment) => s.ldQ ?? (s.transQ ? s.K : j.N);

/** The version-1 GemmSpecs of a job: its segments two at a time, the later ones accumulating. */
export function jobGemms(j: GroupedJob): GemmSpec[] {
  const out: GemmSpec[] = [];
  for (let i = 0; i < j.segs.length; i += 2) {
    const [a, b] = [j.segs[i], j.segs[i + 1]];
    if (b && (!!a.transP !== !!b.transP || !!a.transQ !== !!b.transQ)) {
      out.push(...jobGemms({ ...j, segs: [a] }), ...jobGemms({ ...j, segs: j.segs.slice(i + 1), bias: undefined, accumulate: true }));
      return out;
    }
    out.push({
      M: j.M, N: j.N, c: j.c, ldC: j.ldC, accumulate: i > 0 || j.accumulate, bias: i === 0 ? j.bias : undefined,
      K1: a.K, p1: a.p, q1: a.q, alpha1: a.alpha, ldP1: ldP(j, a), ldQ1: ldQ(j, a), transP: a.transP, transQ: a.transQ,
      ...(b && { K2: b.K, p2: b.p, q2: b.q, alpha2: b.alpha, ldP2: ldP(j, b), ldQ2: ldQ(j, b) }),
    });
  }
  return out;
}

/** The buffers a set of jobs binds: each written buffer, then each read one, once. */
function buffersOf(jobs: readonly GroupedJob[]): { written: Set<GPUBuffer>; all: Set<GPUBuffer> } {
  const written = new Set(jobs.map((j) => start(j.c).buffer));
  const all = new Set(written);
  for (const j of jobs) {
    if (j.bias) all.add(start(j.bias).buffer);
    for (const s of j.segs) all.add(start(s.p).buffer).add(start(s.q).buffer);
  }
  return { written, all };
}

function fits(jobs: readonly GroupedJob[]): boolean {
  const { written, all } = buffersOf(jobs);
  return written.size <= SLOTS - READ_SLOTS && all.size <= SLOTS && jobs.length <= MAX_JOBS
    && jobs.reduce((n, j) => n + j.segs.length, 0) <= MAX_SEGS;
}

/** Jobs in order, cut into runs that each fit one dispatch. A job alone must fit. */
function pack(jobs: readonly GroupedJob[]): GroupedJob[][] {
  const runs: GroupedJob[][] = [];
  let run: GroupedJob[] = [];
  for (const j of jobs) {
    if (!fits([j])) throw new Error(`matmul_grouped: a job binds more than ${SLOTS} buffers or ${MAX_SEGS} segments`);
    if (run.length > 0 && !fits([...run, j])) {
      runs.push(run);
      run = [];
    }
    run.push(j);
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/** 2·M·N·ΣK_s FLOPs; every P_s and Q_s read once, C written once (and read when accumulating), the bias read. */
function jobCost(j: GroupedJob): { flops: number; bytes: number } {
  const K = j.segs.reduce((n, s) => n + s.K, 0);
  const elements = j.segs.reduce((n, s) => n + (j.M + j.N) * s.K, 0) + j.M * j.N * (j.accumulate ? 2 : 1) + (j.bias ? j.N : 0);
  return { flops: 2 * j.M * j.N * K, bytes: 4 * elements };
}

/** One dispatch of `jobs`, which fit (pack). */
function groupedDispatch(gpu: Gpu, label: string, jobs: readonly GroupedJob[], kernel: GroupedKernel): Dispatch {
  // One binding per buffer, spanning every range the jobs use of it, from a 256-byte-aligned offset.
  const { written, all } = buffersOf(jobs);
  const spans = new Map<GPUBuffer, { lo: number; hi: number }>();
  const note = (b: Binding) => {
    const r = start(b);
    const s = spans.get(r.buffer);
    spans.set(r.buffer, { lo: Math.min(s?.lo ?? Infinity, r.offset), hi: Math.max(s?.hi ?? 0, r.offset + r.size) });
  };
  for (const j of jobs) {
    note(j.c);
    if (j.bias) note(j.bias);
    for (const s of j.segs) { note(s.p); note(s.q); }
  }
  // Written buffers take the read-write slots; read ones the read-only slots, and a free read-write slot too
  // (every buffer is bound once: a buffer bound writable and read-only in one dispatch would be invalid).
  const writes = [...written], reads = [...all].filter((b) => !written.has(b));
  const spill = Math.max(0, reads.length - READ_SLOTS, Math.min(SLOTS - READ_SLOTS - writes.length, reads.length - 1));
  const slots: GPUBuffer[] = [];
  reads.slice(0, reads.length - spill).forEach((b, i) => (slots[i] = b));
  [...writes, ...reads.slice(reads.length - spill)].forEach((b, i) => (slots[READ_SLOTS + i] = b));
  const slotOf = new Map<GPUBuffer, number>();
  slots.forEach((b, i) => slotOf.set(b, i));
  const bindings: Binding[] = [];
  const base = new Map<GPUBuffer, number>();
  for (let i = 0; i < SLOTS; i++) {
    const b = slots[i];
    if (!b) continue;
    const { lo, hi } = spans.get(b)!;
    const offset = Math.floor(lo / 256) * 256;
    base.set(b, offset);
    bindings[i] = { buffer: b, offset, size: Math.min(Math.ceil((hi - offset) / 16) * 16, b.size - offset) };
  }
  // Unused read slots repeat a read-only buffer (reads may alias); every read-write slot is filled (pack).
  for (let i = 0; i < READ_SLOTS; i++) bindings[i] ??= bindings[0];
  const at = (b: Binding) => {
    const r = start(b);
    const off = r.offset - base.get(r.buffer)!;
    if (off % 4 !== 0) throw new Error(`matmul_grouped: ${label}: an operand starts off a 4-byte boundary`);
    return { slot: slotOf.get(r.buffer)!, off: off / 4 };
  };

  // matmul_fast's rule (fastTileFor) over the whole dispatch: 128-wide tiles once they make about a wave.
  const tile = kernel === 'tiled' ? (jobs.reduce((n, j) => n + Math.ceil(j.M / 128) * Math.ceil(j.N / 128), 0) >= MIN_WORKGROUPS_FOR_128 ? 128 : 64) : 0;
  const rows = kernel === 'splitk' ? (jobs.every((j) => j.N <= j.M) ? 32 : 8) : 0;
  const [tm, tn] = kernel === 'tiled' ? [tile, tile] : [rows, 256 / rows];
  const v: Record<string, number> = {};
  let first = 0, seg = 0, aligned = true;
  jobs.forEach((j, i) => {
    const c = at(j.c), bias = j.bias ? at(j.bias) : { slot: NONE, off: 0 };
    const tilesN = Math.ceil(j.N / tn);
    Object.assign(v, {
      [`job${i}_first`]: first, [`job${i}_tiles_n`]: tilesN, [`job${i}_M`]: j.M, [`job${i}_N`]: j.N,
      [`job${i}_c`]: c.slot, [`job${i}_c_off`]: c.off, [`job${i}_ld_c`]: j.ldC ?? j.N, [`job${i}_accumulate`]: j.accumulate ? 1 : 0,
      [`job${i}_bias`]: bias.slot, [`job${i}_bias_off`]: bias.off, [`job${i}_seg0`]: seg, [`job${i}_segs`]: j.segs.length,
    });
    aligned &&= [j.M, j.N, c.off, j.ldC ?? j.N, bias.off].every((x) => x % 4 === 0);
    for (const s of j.segs) {
      const p = at(s.p), q = at(s.q);
      Object.assign(v, {
        [`seg${seg}_p`]: p.slot, [`seg${seg}_p_off`]: p.off, [`seg${seg}_ld_p`]: ldP(j, s), [`seg${seg}_trans_p`]: s.transP ? 1 : 0,
        [`seg${seg}_q`]: q.slot, [`seg${seg}_q_off`]: q.off, [`seg${seg}_ld_q`]: ldQ(j, s), [`seg${seg}_trans_q`]: s.transQ ? 1 : 0,
        [`seg${seg}_K`]: s.K, [`seg${seg}_alpha`]: s.alpha ?? 1, [`seg${seg}_pad0`]: 0, [`seg${seg}_pad1`]: 0,
      });
      aligned &&= [s.K, p.off, q.off, ldP(j, s), ldQ(j, s)].every((x) => x % 4 === 0);
      seg++;
    }
    first += Math.ceil(j.M / tm) * tilesN;
  });
  for (const [f] of TABLE) v[f] ??= 0;
  const gridX = Math.min(first, MAX_GRID_X);
  const params = gpu.uniform(`${label}.params`, MATMUL_GROUPED_PARAMS, { jobs: jobs.length, grid_x: gridX, total: first });
  const table = gpu.uniform(`${label}.table`, TABLE, v);
  const pipeline = kernel === 'tiled'
    ? gpu.pipeline('matmul_grouped', 'matmul_grouped', { WG: tile / 8, ALIGNED: aligned ? 1 : 0 })
    : gpu.pipeline('matmul_grouped', 'matmul_grouped_splitk', { TM: rows });
  const costs = jobs.map(jobCost);
  return gpu.dispatch(label, pipeline, [...bindings, params, table], [gridX, Math.ceil(first / gridX), 1],
    { flops: costs.reduce((a, c) => a + c.flops, 0), bytes: costs.reduce((a, c) => a + c.bytes, 0) });
}

/**
 * The dispatches of `jobs`, which must be independent (no job reads what another writes): as few as fit the
 * bindings, in order, on `kernel`; or, with the device's GEMM set to version 1, version 1's per job.
 */
export function matmulGrouped(gpu: Gpu, label: string, jobs: readonly GroupedJob[], kernel: GroupedKernel): Dispatch[] {
  if (gemmKernel(gpu) === 'v1') return jobs.flatMap((j, i) => jobGemms(j).map((s, k) => gemm(gpu, `${label}.job${i}_${k}`, s)));
  const runs = pack(jobs);
  return runs.flatMap((run, i) => {
    const l = runs.length > 1 ? `${label}${i}` : label;
    // Both read-write slots need a buffer of their own (writable bindings must not overlap), and a read-only
    // one must stay for the read slots: a run that writes one buffer and reads one runs on version 1.
    const { written, all } = buffersOf(run);
    if (written.size + (all.size - written.size - 1) < SLOTS - READ_SLOTS) return run.flatMap((j, k) => jobGemms(j).map((s, m) => gemm(gpu, `${l}.job${k}_${m}`, s)));
    return [groupedDispatch(gpu, l, run, kernel)];
  });
}
