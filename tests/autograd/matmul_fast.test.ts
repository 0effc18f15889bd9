// The fast GEMM (shaders/matmul_fast.wgsl) against version 1, matmul.wgsl's gemm kernel it may replace, and
// against the float64 CPU reference: odd shapes that hit every edge of the 64- and 128-wide tiles and of the
// BK = 16 K step, the aligned (vec4) and unaligned (scalar) paths, both layouts the model uses most (P·Qᵀ
// and P·Q), and the rest of gemm's contract (two segments, alpha, bias, accumulate, transposed P, batch).
//
// Tolerance: 2e-5 of the largest magnitude (relMaxDiff), as for lora_linear: fp32 sums of ≤ 257 unit-scale
// products carry ~1e-6 relative error, a wrong index gives errors of order 1.

import { describe, expect, it } from 'vitest';
import { testGpu, relMaxDiff } from '../gpu/test-gpu';
import { gemm, type GemmSpec } from '../../src/autograd/matmul';
import { gemmFast, fastTileFor, type FastTile } from '../../src/autograd/matmul_fast';
import type { Gpu } from '../../src/gpu/gpu';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';

const TOL = 2e-5;

/** Round to f32 so the reference sees exactly what the GPU sees. */
const f32 = (a: ArrayLike<number>) => Float64Array.from(new Float32Array(a as ArrayLike<number>));

type Operands = Record<string, Float64Array>;

/** Run `spec` (built over freshly uploaded operands) with both kernels; C starts as `c0` (or zeros). */
async function runBoth(gpu: Gpu, ops: Operands, cLen: number, spec: (b: Record<string, GPUBuffer>) => Omit<GemmSpec, 'c'>, tile?: FastTile, c0?: Float64Array) {
  const out: Float32Array[] = [];
  for (const kernel of ['v1', 'fast'] as const) {
    const bufs: Record<string, GPUBuffer> = {};
    for (const [k, v] of Object.entries(ops)) bufs[k] = gpu.upload(`test.${k}`, new Float32Array(v));
    const c = gpu.upload('test.c', c0 ? new Float32Array(c0) : new Float32Array(cLen));
    const s = { ...spec(bufs), c };
    const d = kernel === 'v1' ? gemm(gpu, 'test.v1', s) : gemmFast(gpu, 'test.fast', s, tile);
    expect(d.pipeline.label).toMatch(kernel === 'v1' ? /^matmul\.gemm/ : /^matmul_fast\.matmul_fast/);
    gpu.run([d]);
    out.push(await gpu.read(c, cLen));
    gpu.releaseDispatches([d]);
    for (const b of [...Object.values(bufs), c]) gpu.release(b);
  }
  return { v1: out[0], fast: out[1] };
}

function check(got: { v1: Float32Array; fast: Float32Array }, want: Float64Array) {
  const dv1 = relMaxDiff(got.fast, got.v1), dref = relMaxDiff(got.fast, want);
  expect(dv1, `fast vs version 1: maxdiff ${dv1}`).toBeLessThan(TOL);
  expect(dref, `fast vs float64: maxdiff ${dref}`).toBeLessThan(TOL);
}

describe('matmul_fast on WebGPU', () => {
  // (M, N, K): degenerate, odd, one past a 64- or 128-tile, exact tiles, K off the 16-step; the last two
  // are multiples of 4 everywhere, so they take the vec4 path with partial tiles in M, N and K.
  const shapes: [number, number, number][] = [[1, 1, 1], [3, 5, 7], [65, 130, 33], [128, 128, 128], [129, 257, 100], [68, 132, 36], [4, 200, 20]];
  for (const [M, N, K] of shapes) {
    for (const tile of [64, 128] as const) {
      it(`C = P·Qᵀ (transQ) matches version 1 and float64 for ${M}×${N}×${K}, tile ${tile}`, async () => {
        const gpu = await testGpu();
        const rng = mulberry32(M * 7919 + N * 31 + K);
        const ops = { p: f32(randn(rng, M * K)), q: f32(randn(rng, N * K)) };
        const got = await runBoth(gpu, ops, M * N, (b) => ({ M, N, K1: K, p1: b.p, q1: b.q, transQ: true }), tile);
        check(got, ref.matmulNT(ops.p, ops.q, M, N, K));
      });
      it(`C = P·Q matches version 1 and float64 for ${M}×${N}×${K}, tile ${tile}`, async () => {
        const gpu = await testGpu();
        const rng = mulberry32(M * 104729 + N * 17 + K);
        const ops = { p: f32(randn(rng, M * K)), q: f32(randn(rng, K * N)) };
        const got = await runBoth(gpu, ops, M * N, (b) => ({ M, N, K1: K, p1: b.p, q1: b.q }), tile);
        check(got, ref.matmulNN(ops.p, ops.q, M, N, K));
      });
    }
  }

  // The LoRA forward y = x·Wᵀ + s·u·Bᵀ + bias, accumulated onto y, as lora_linear's forward builds it.
  for (const [M, N, K, R] of [[33, 70, 65, 8], [64, 128, 96, 4], [5, 3, 9, 1]] as const) {
    it(`two segments, alpha, bias and accumulate match for M=${M} N=${N} K=${K} r=${R}`, async () => {
      const gpu = await testGpu();
      const rng = mulberry32(M + N + K + R);
      const ops = { x: f32(randn(rng, M * K)), W: f32(randn(rng, N * K)), u: f32(randn(rng, M * R)), B: f32(randn(rng, N * R)), bias: f32(randn(rng, N)) };
      const c0 = f32(randn(rng, M * N));
      const s = 2.5, a1 = 0.75;
      const got = await runBoth(gpu, ops, M * N, (b) => ({
        M, N, K1: K, p1: b.x, q1: b.W, alpha1: a1, K2: R, p2: b.u, q2: b.B, alpha2: s, bias: b.bias, transQ: true, accumulate: true,
      }), undefined, c0);
      const xw = ref.matmulNT(ops.x, ops.W, M, N, K), ub = ref.matmulNT(ops.u, ops.B, M, N, R);
      check(got, c0.map((v, i) => v + a1 * xw[i] + s * ub[i] + ops.bias[i % N]));
    });
  }

  it('transposed P (dA += duᵀ·x) matches, unaligned and aligned', async () => {
    const gpu = await testGpu();
    for (const [M, N, K] of [[3, 65, 70], [8, 64, 100]]) {
      const rng = mulberry32(M * N * K);
      const ops = { p: f32(randn(rng, K * M)), q: f32(randn(rng, K * N)) };
      const got = await runBoth(gpu, ops, M * N, (b) => ({ M, N, K1: K, p1: b.p, q1: b.q, transP: true }));
      const pT = new Float64Array(M * K);
      for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) pT[m * K + k] = ops.p[k * M + m];
      check(got, ref.matmulNN(pT, ops.q, M, N, K));
    }
  });

  it('batched (grid z) with per-operand strides matches', async () => {
    const gpu = await testGpu();
    const [Bt, M, N, K] = [3, 20, 12, 8];
    const rng = mulberry32(99);
    const ops = { p: f32(randn(rng, Bt * M * K)), q: f32(randn(rng, Bt * N * K)) };
    const got = await runBoth(gpu, ops, Bt * M * N, (b) => ({
      M, N, K1: K, p1: b.p, q1: b.q, transQ: true, batch: Bt, batchStrides: { p1: M * K, q1: N * K, c: M * N },
    }));
    const want = new Float64Array(Bt * M * N);
    for (let i = 0; i < Bt; i++) want.set(ref.matmulNT(ops.p.subarray(i * M * K, (i + 1) * M * K), ops.q.subarray(i * N * K, (i + 1) * N * K), M, N, K), i * M * N);
    check(got, want);
  });

  it('reads a range of a buffer (as the LM head binds vocabulary chunks), widening its size to whole vec4s', async () => {
    const gpu = await testGpu();
    const [M, N, K] = [6, 5, 7]; // the Q range is 140 bytes, not a multiple of 16
    const rng = mulberry32(5);
    const p = f32(randn(rng, M * K)), q = f32(randn(rng, N * K));
    const got: Float32Array[] = [];
    for (const build of [gemm, gemmFast]) {
      const pb = gpu.upload('test.p', new Float32Array(p));
      const big = gpu.buffer('test.q', 256 + 4 * N * K + 64);
      gpu.write(big, new Float32Array(q), 256);
      const c = gpu.upload('test.c', new Float32Array(M * N));
      const d = build(gpu, 'test.range', { M, N, K1: K, p1: pb, q1: { buffer: big, offset: 256, size: 4 * N * K }, transQ: true, c });
      gpu.run([d]);
      got.push(await gpu.read(c, M * N));
      for (const b of [pb, big, c]) gpu.release(b);
    }
    check({ v1: got[0], fast: got[1] }, ref.matmulNT(p, q, M, N, K));
  });

  it('picks 128-wide tiles only when they fill about one wave of workgroups', () => {
    expect(fastTileFor(4096, 4096)).toBe(128);
    expect(fastTileFor(2048, 49152)).toBe(128);
    expect(fastTileFor(2048, 576)).toBe(64);
    expect(fastTileFor(64, 64)).toBe(64);
  });
});
