// The grouped GEMM (shaders/matmul_grouped.wgsl, both entries) against the float64 reference (tests/reference/
// ops.ts's matmulNN/NT/TN) and against version 1 (matmul.wgsl's gemm, which matmulGrouped runs when the device's
// GEMM is set to 'v1'), at the layouts lora_group.ts gives it: jobs sharing an input (x) and a packed slab at
// offsets, outputs at offsets of one buffer (the u slices), transposes differing per job, several K-segments
// per job, bias, accumulate, alpha, shapes off every tile side, and more buffers than one dispatch binds.
// Also that the job table's layout matches the shader's structs.
//
// Tolerance: 2e-5 of the largest magnitude (relMaxDiff), as for matmul_fast and matmul_splitk.

import { describe, expect, it } from 'vitest';
import { relMaxDiff, testGpu } from '../gpu/test-gpu';
import { setGemmKernel } from '../../src/autograd/matmul_fast';
import { JOB_FIELDS, matmulGrouped, SEG_FIELDS, type GroupedJob, type GroupedKernel } from '../../src/autograd/matmul_grouped';
import { SHADERS } from '../../src/gpu/shaders';
import type { Binding, Gpu } from '../../src/gpu/gpu';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';

const TOL = 2e-5;

/** An operand: `rows × cols` values in buffer `buf` at 256-byte slot `at`. */
interface Operand { buf: string; at: number; rows: number; cols: number }
interface SegSpec { p: Operand; q: Operand; alpha?: number; transP?: boolean; transQ?: boolean }
interface JobSpec { M: number; N: number; c: Operand; bias?: Operand; accumulate?: boolean; segs: SegSpec[] }

const SLOT = 16384; // bytes between operand slots: a multiple of 256 (a binding offset)

function values(seed: number, n: number): Float64Array {
  return Float64Array.from(new Float32Array(randn(mulberry32(seed), n)));
}

/** Every buffer's contents: operand `o` of buffer b starts at byte o.at·SLOT. */
function fill(ops: Operand[]): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  let seed = 1;
  for (const o of ops) {
    const arr = out.get(o.buf) ?? new Float64Array(8 * SLOT / 4);
    arr.set(values(seed++, o.rows * o.cols), (o.at * SLOT) / 4);
    out.set(o.buf, arr);
  }
  return out;
}

const get = (data: Map<string, Float64Array>, o: Operand) => data.get(o.buf)!.slice((o.at * SLOT) / 4, (o.at * SLOT) / 4 + o.rows * o.cols);

/** C of each job in float64. */
function reference(jobs: JobSpec[], data: Map<string, Float64Array>): Float64Array[] {
  return jobs.map((j) => {
    const c = j.accumulate ? get(data, j.c) : new Float64Array(j.M * j.N);
    for (const s of j.segs) {
      const K = s.transP ? s.p.rows : s.p.cols;
      const P = get(data, s.p), Q = get(data, s.q);
      const prod = s.transP ? ref.matmulTN(P, Q, j.M, j.N, K) : s.transQ ? ref.matmulNT(P, Q, j.M, j.N, K) : ref.matmulNN(P, Q, j.M, j.N, K);
      if (s.transP && s.transQ) throw new Error('no test uses both transposes');
      prod.forEach((v, i) => (c[i] += (s.alpha ?? 1) * v));
    }
    if (j.bias) { const b = get(data, j.bias); for (let i = 0; i < c.length; i++) c[i] += b[i % j.N]; }
    return c;
  });
}

async function run(gpu: Gpu, jobs: JobSpec[], kernel: GroupedKernel | 'v1', data: Map<string, Float64Array>, shader = 'matmul_grouped') {
  setGemmKernel(gpu, kernel === 'v1' ? 'v1' : 'fast');
  const bufs = new Map([...data].map(([k, v]) => [k, gpu.upload(`test.${k}`, new Float32Array(v))]));
  const b = (o: Operand): Binding => ({ buffer: bufs.get(o.buf)!, offset: o.at * SLOT, size: o.rows * o.cols * 4 });
  const grouped: GroupedJob[] = jobs.map((j) => ({
    M: j.M, N: j.N, c: b(j.c), bias: j.bias && b(j.bias), accumulate: j.accumulate,
    segs: j.segs.map((s) => ({ p: b(s.p), q: b(s.q), K: s.transP ? s.p.rows : s.p.cols, alpha: s.alpha, transP: s.transP, transQ: s.transQ })),
  }));
  const ds = matmulGrouped(gpu, 'test.grouped', grouped, kernel === 'v1' ? 'tiled' : kernel);
  if (kernel !== 'v1') for (const d of ds) expect(d.pipeline.label.split('.')[0]).toBe(shader);
  gpu.run(ds);
  const out: Float32Array[] = [];
  for (const j of jobs) {
    const all = await gpu.read(bufs.get(j.c.buf)!, (j.c.at * SLOT) / 4 + j.M * j.N);
    out.push(all.slice((j.c.at * SLOT) / 4));
  }
  gpu.releaseDispatches(ds);
  for (const buf of bufs.values()) gpu.release(buf);
  setGemmKernel(gpu, 'fast');
  return { out, dispatches: ds.length };
}

async function check(jobs: JobSpec[], kernel: GroupedKernel, dispatches?: number, shader?: string) {
  const gpu = await testGpu();
  const data = fill(jobs.flatMap((j) => [j.c, ...(j.bias ? [j.bias] : []), ...j.segs.flatMap((s) => [s.p, s.q])]));
  const want = reference(jobs, data);
  const got = await run(gpu, jobs, kernel, data, shader);
  const v1 = await run(gpu, jobs, 'v1', data);
  if (dispatches !== undefined) expect(got.dispatches).toBe(dispatches);
  jobs.forEach((_, i) => {
    const dref = relMaxDiff(got.out[i], want[i]), dv1 = relMaxDiff(got.out[i], v1.out[i]);
    expect(dref, `job ${i} vs float64: maxdiff ${dref}`).toBeLessThan(TOL);
    expect(dv1, `job ${i} vs version 1: maxdiff ${dv1}`).toBeLessThan(TOL);
  });
}

const op = (buf: string, at: number, rows: number, cols: number): Operand => ({ buf, at, rows, cols });

describe('matmul_grouped on WebGPU', () => {
  for (const [n, inF] of [[24, 20], [70, 36], [9, 13]] as const) {
    it(`tiled: a q/k/v-like group (shared x, LoRA second segment from one u and one slab, bias) for N=${n}, IN=${inF}, in two dispatches (three outputs, two read-write bindings)`, async () => {
      const r = 4;
      const outs = [inF, 12, 12 + (n % 3)];
      const jobs: JobSpec[] = outs.map((outF, i) => ({
        M: n, N: outF, c: op(`y${i}`, 0, n, outF), ...(i === 1 && { bias: op('bias', 0, 1, outF) }),
        segs: [
          { p: op('x', 0, n, inF), q: op(`w${i}`, 0, outF, inF), transQ: true },
          ...(i !== 1 ? [{ p: op('u', i, n, r), q: op('slab', 2 + i, outF, r), alpha: 0.5, transQ: true }] : []),
        ],
      }));
      await check(jobs, 'tiled', 2);
    });
  }

  it('tiled: the LoRA down products beside a frozen projection, writing slices of one u', async () => {
    const [n, inF, r] = [33, 20, 4];
    const jobs: JobSpec[] = [
      { M: n, N: 12, c: op('yk', 0, n, 12), segs: [{ p: op('x', 0, n, inF), q: op('wk', 0, 12, inF), transQ: true }] },
      ...[0, 1].map((i) => ({ M: n, N: r, c: op('u', i, n, r), segs: [{ p: op('x', 0, n, inF), q: op('slab', i, r, inF), transQ: true }] })),
    ];
    await check(jobs, 'tiled', 1);
  });

  it('tiled: dx as one job of three K-segments, accumulating', async () => {
    const [n, inF] = [40, 28];
    const outs = [28, 8, 8];
    const jobs: JobSpec[] = [{
      M: n, N: inF, c: op('dx', 0, n, inF), accumulate: true,
      segs: outs.map((o, i) => ({ p: op(`dy${i}`, 0, n, o), q: op(`w${i}`, 0, o, inF) })),
    }];
    await check(jobs, 'tiled', 1);
  });

  it('split-K: du = s·dy·B and dB += s·dyᵀ·u of two projections in one dispatch (transposes per job)', async () => {
    const [n, r] = [70, 4];
    const outs = [20, 12];
    const jobs: JobSpec[] = [
      ...outs.map((o, i) => ({ M: n, N: r, c: op('du', i, n, r), segs: [{ p: op(`dy${i}`, 0, n, o), q: op('slab', i, o, r), alpha: 2 }] })),
      ...outs.map((o, i) => ({ M: o, N: r, c: op('grad', i, o, r), accumulate: true, segs: [{ p: op(`dy${i}`, 0, n, o), q: op('u', i, n, r), alpha: 2, transP: true }] })),
    ];
    await check(jobs, 'splitk', 1);
  });

  it('split-K: dA += duᵀ·x beside dx = Σ du_i·A_i', async () => {
    const [n, inF, r] = [45, 36, 4];
    const jobs: JobSpec[] = [
      ...[0, 1].map((i) => ({ M: r, N: inF, c: op('grad', i, r, inF), accumulate: true, segs: [{ p: op('du', i, n, r), q: op('x', 0, n, inF), transP: true }] })),
      { M: n, N: inF, c: op('dx', 0, n, inF), segs: [0, 1].map((i) => ({ p: op('du', i, n, r), q: op('slab', i, r, inF) })) },
    ];
    await check(jobs, 'splitk', 1);
  });

  it('a job that reads one buffer and writes one runs on version 1 (the grouped kernel needs three to bind)', async () => {
    const [n, inF] = [12, 16];
    await check([{ M: n, N: 8, c: op('y', 0, n, 8), segs: [{ p: op('x', 0, n, inF), q: op('x', 1, 8, inF), transQ: true }] }], 'tiled', 1, 'matmul');
  });

  for (const kernel of ['tiled', 'splitk'] as const) {
    it(`${kernel}: jobs over more than eight buffers are cut into dispatches that each bind at most eight`, async () => {
      const [n, inF] = [20, 16];
      const jobs: JobSpec[] = [0, 1, 2, 3, 4].map((i) => ({ M: n, N: 8, c: op(`y${i}`, 0, n, 8), segs: [{ p: op('x', 0, n, inF), q: op(`w${i}`, 0, 8, inF), transQ: true }] }));
      await check(jobs, kernel, 3);
    });
  }
});

describe('matmul_grouped job table', () => {
  const wgsl = SHADERS.matmul_grouped.replace(/\/\/.*$/gm, '');
  for (const [name, fields] of [['Job', JOB_FIELDS], ['Seg', SEG_FIELDS]] as const) {
    it(`struct ${name} matches ${name.toUpperCase()}_FIELDS`, () => {
      const body = new RegExp(`struct ${name}\\s*\\{([^}]*)\\}`).exec(wgsl)![1];
      const parsed = body.split(',').map((f) => f.trim()).filter(Boolean).map((f) => f.replace(/\s+/g, ' '));
      expect(parsed).toEqual(fields.map(([f, t]) => `${f}: ${t}`));
    });
  }
});
