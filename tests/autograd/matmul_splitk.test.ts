// The split-K GEMM (shaders/matmul_splitk.wgsl) against version 1, matmul.wgsl's gemm, and against the float64
// CPU reference, at skinny shapes that hit every edge: M or N below, at and past the 8- and 32-wide tile sides,
// K not a multiple of the 16 slices (and shorter than them), both tile orientations, the layouts the adapters'
// gradients use (dA += duᵀ·x, dB += s·dyᵀ·u: transposed P, accumulate) and the rest of gemm's contract (two
// segments, alpha, bias, transposed Q, batch). Also gemmChoice's rule, and that `matmul` follows it.
//
// Tolerance: 2e-5 of the largest magnitude (relMaxDiff), as for matmul_fast: fp32 sums of ≤ 600 unit-scale
// products carry ~1e-6 relative error, a wrong index gives errors of order 1.

import { describe, expect, it } from 'vitest';
import { testGpu, relMaxDiff } from '../gpu/test-gpu';
import { gemm, type GemmSpec } from '../../src/autograd/matmul';
import { gemmSplitK, type SplitKRows } from '../../src/autograd/matmul_splitk';
import { gemmChoice, matmul } from '../../src/autograd/matmul_fast';
import type { Gpu } from '../../src/gpu/gpu';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';

const TOL = 2e-5;

const f32 = (a: ArrayLike<number>) => Float64Array.from(new Float32Array(a as ArrayLike<number>));

/** Run `spec` with version 1 and split-K over freshly uploaded operands; C starts as `c0` (or zeros). */
async function runBoth(gpu: Gpu, ops: Record<string, Float64Array>, cLen: number, spec: (b: Record<string, GPUBuffer>) => Omit<GemmSpec, 'c'>, rows?: SplitKRows, c0?: Float64Array) {
  const out: Float32Array[] = [];
  for (const kernel of ['v1', 'splitk'] as const) {
    const bufs: Record<string, GPUBuffer> = {};
    for (const [k, v] of Object.entries(ops)) bufs[k] = gpu.upload(`test.${k}`, new Float32Array(v));
    const c = gpu.upload('test.c', c0 ? new Float32Array(c0) : new Float32Array(cLen));
    const s = { ...spec(bufs), c };
    const d = kernel === 'v1' ? gemm(gpu, 'test.v1', s) : gemmSplitK(gpu, 'test.splitk', s, rows);
    expect(d.pipeline.label).toMatch(kernel === 'v1' ? /^matmul\.gemm/ : /^matmul_splitk\.matmul_splitk\{/);
    gpu.run([d]);
    out.push(await gpu.read(c, cLen));
    gpu.releaseDispatches([d]);
    for (const b of [...Object.values(bufs), c]) gpu.release(b);
  }
  return { v1: out[0], splitk: out[1] };
}

function check(got: { v1: Float32Array; splitk: Float32Array }, want: Float64Array) {
  const dv1 = relMaxDiff(got.splitk, got.v1), dref = relMaxDiff(got.splitk, want);
  expect(dv1, `split-K vs version 1: maxdiff ${dv1}`).toBeLessThan(TOL);
  expect(dref, `split-K vs float64: maxdiff ${dref}`).toBeLessThan(TOL);
}

/** (K, M) stored → (M, K). */
function transpose(a: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
  return t;
}

describe('matmul_splitk on WebGPU', () => {
  // (M, N, K): narrow M (8-row tiles) and narrow N (32-row tiles), one past a tile side, K off the 16 slices.
  const shapes: [number, number, number][] = [[1, 1, 1], [8, 33, 300], [9, 70, 17], [3, 5, 7], [40, 8, 129], [33, 16, 250], [16, 16, 15]];
  for (const [M, N, K] of shapes) {
    for (const rows of [8, 32] as const) {
      it(`dA-like C += Pᵀ·Q (transP, accumulate) matches version 1 and float64 for ${M}×${N}×${K}, ${rows}-row tiles`, async () => {
        const gpu = await testGpu();
        const rng = mulberry32(M * 7919 + N * 31 + K + rows);
        const ops = { p: f32(randn(rng, K * M)), q: f32(randn(rng, K * N)) };
        const c0 = f32(randn(rng, M * N));
        const got = await runBoth(gpu, ops, M * N, (b) => ({ M, N, K1: K, p1: b.p, q1: b.q, transP: true, accumulate: true }), rows, c0);
        const pq = ref.matmulNN(transpose(ops.p, K, M), ops.q, M, N, K);
        check(got, c0.map((v, i) => v + pq[i]));
      });
    }
  }

  it('C = P·Qᵀ with two segments, alpha and bias (transQ) matches', async () => {
    const gpu = await testGpu();
    const [M, N, K, R] = [37, 12, 90, 5];
    const rng = mulberry32(3);
    const ops = { x: f32(randn(rng, M * K)), W: f32(randn(rng, N * K)), u: f32(randn(rng, M * R)), B: f32(randn(rng, N * R)), bias: f32(randn(rng, N)) };
    const [a1, s] = [0.75, 2.5];
    const got = await runBoth(gpu, ops, M * N, (b) => ({ M, N, K1: K, p1: b.x, q1: b.W, alpha1: a1, K2: R, p2: b.u, q2: b.B, alpha2: s, bias: b.bias, transQ: true }));
    const xw = ref.matmulNT(ops.x, ops.W, M, N, K), ub = ref.matmulNT(ops.u, ops.B, M, N, R);
    check(got, xw.map((v, i) => a1 * v + s * ub[i] + ops.bias[i % N]));
  });

  it('batched (grid z) with per-operand strides matches', async () => {
    const gpu = await testGpu();
    const [Bt, M, N, K] = [3, 6, 41, 50];
    const rng = mulberry32(99);
    const ops = { p: f32(randn(rng, Bt * M * K)), q: f32(randn(rng, Bt * K * N)) };
    const got = await runBoth(gpu, ops, Bt * M * N, (b) => ({ M, N, K1: K, p1: b.p, q1: b.q, batch: Bt, batchStrides: { p1: M * K, q1: K * N, c: M * N } }));
    const want = new Float64Array(Bt * M * N);
    for (let i = 0; i < Bt; i++) want.set(ref.matmulNN(ops.p.subarray(i * M * K, (i + 1) * M * K), ops.q.subarray(i * K * N, (i + 1) * K * N), M, N, K), i * M * N);
    check(got, want);
  });

  it('gemmChoice: split-K for the adapters\' dA and dB, 128-wide tiles for big GEMMs, 64-wide otherwise', () => {
    const n = 8 * 256, C = 576, r = 8;
    expect(gemmChoice({ M: r, N: C, K1: n })).toEqual({ kernel: 'splitk', rows: 8 });    // dA (r, C), K = B·T
    expect(gemmChoice({ M: C, N: r, K1: n })).toEqual({ kernel: 'splitk', rows: 32 });   // dB (O, r), K = B·T
    expect(gemmChoice({ M: n, N: r, K1: C })).toEqual({ kernel: 'fast', tile: 64 });     // down u = x·Aᵀ: K short
    expect(gemmChoice({ M: n, N: 1536, K1: C })).toEqual({ kernel: 'fast', tile: 128 }); // mlp up
    expect(gemmChoice({ M: n, N: C, K1: C })).toEqual({ kernel: 'fast', tile: 64 });     // q_proj: < one wave of 128s
    expect(gemmChoice({ M: 8, N: 12, K1: 16 })).toEqual({ kernel: 'fast', tile: 64 });   // K too short to split
    expect(gemmChoice({ M: 8, N: 300, K1: 256 })).toEqual({ kernel: 'fast', tile: 64 }); // K below the wide side
  });

  it('matmul dispatches the kernel gemmChoice names', async () => {
    const gpu = await testGpu();
    const buf = (n: number) => gpu.buffer('test.b', n * 4);
    const dA: GemmSpec = { M: 8, N: 64, K1: 512, p1: buf(512 * 8), q1: buf(512 * 64), transP: true, c: buf(8 * 64), accumulate: true };
    expect(matmul(gpu, 'test.dA', dA).pipeline.label).toBe('matmul_splitk.matmul_splitk{TM=8,TRANS_P=1,TRANS_Q=0}');
    const big: GemmSpec = { M: 64, N: 64, K1: 16, p1: buf(64 * 16), q1: buf(64 * 16), transQ: true, c: buf(64 * 64) };
    expect(matmul(gpu, 'test.big', big).pipeline.label).toMatch(/^matmul_fast\.matmul_fast\{.*WG=8\}$/);
  });
});
