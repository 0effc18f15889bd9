// RoPE forward and backward (shaders/rope.wgsl via src/autograd/rope.ts) against the float64 reference in
// tests/reference/ops.ts: out-of-place and in-place, and with a position offset.
//
// Tolerance: the kernel computes inv_freq = 1/theta^(2i/D) and the angle t·inv_freq in f32, as transformers
// does, so the angle carries f32 rounding that the float64 reference does not: half an ulp of the product
// (≤ (T−1)·2^-24 rad) plus t times inv_freq's own error (about 1 ulp, ≤ (T−1)·2^-24 again), i.e.
// |Δangle| ≲ 2·(T−1)·2^-24 rad. Rotating a pair by an angle off by Δ moves it by |pair|·Δ ≤ √2·max|x|·Δ,
// so relative to the largest element the error is ≲ 3·(T−1)·2^-24: 1.1e-5 at T = 64. We allow
// 4·(T−1)·2^-24 + 1e-6 (1.6e-5 at T = 64; the 1e-6 covers sin/cos, evaluated to ~1 ulp, and the products).
// A T = 2048 case checks that long positions stay within the same bound (4.9e-4, set by the f32 angle).

import { describe, expect, it } from 'vitest';
import { ropeBackward, ropeForward, ropeQKDispatch, type RopeDims } from '../../src/autograd/rope.ts';
import { ropeBackward as refRopeBackward, ropeForward as refRopeForward } from '../reference/ops.ts';
import { mulberry32, randn } from '../reference/rng.ts';
import { relMaxDiff, testGpu } from '../gpu/test-gpu.ts';

const tolerance = (T: number) => 4 * (T - 1) * 2 ** -24 + 1e-6;

/** n normal samples rounded to f32, as a Float32Array for the GPU and a Float64Array for the reference. */
function sample(seed: number, n: number): { f32: Float32Array; f64: Float64Array } {
  const f32 = Float32Array.from(randn(mulberry32(seed), n));
  return { f32, f64: Float64Array.from(f32) };
}

const CASES: RopeDims[] = [
  { B: 2, T: 5, heads: 3, D: 8, theta: 10000 },
  { B: 2, T: 5, heads: 3, D: 6, theta: 10000 },
  { B: 1, T: 64, heads: 2, D: 128, theta: 500000 }, // Llama 3 head dim and theta, angles up to 63 rad
  { B: 1, T: 2048, heads: 1, D: 8, theta: 10000 }, // angles up to 2047 rad
];

describe('rope', () => {
  for (const d of CASES) {
    it(`forward and backward, B=${d.B} T=${d.T} H=${d.heads} D=${d.D} theta=${d.theta}`, async () => {
      const gpu = await testGpu();
      const n = d.B * d.T * d.heads * d.D;
      const x = sample(1, n);
      const dy = sample(2, n);

      const xBuf = gpu.upload('rope.test.x', x.f32);
      const yBuf = gpu.buffer('rope.test.y', n * 4);
      const dyBuf = gpu.upload('rope.test.dy', dy.f32);
      const dxBuf = gpu.buffer('rope.test.dx', n * 4);
      gpu.run([...ropeForward(gpu, 'test', d, { x: xBuf, y: yBuf }), ...ropeBackward(gpu, 'test', d, { dy: dyBuf, dx: dxBuf })]);
      const y = await gpu.read(yBuf, n);
      const dx = await gpu.read(dxBuf, n);

      const dFwd = relMaxDiff(y, refRopeForward(x.f64, d.B, d.T, d.heads, d.D, d.theta));
      const dBwd = relMaxDiff(dx, refRopeBackward(dy.f64, d.B, d.T, d.heads, d.D, d.theta));
      console.log(`rope B=${d.B} T=${d.T} H=${d.heads} D=${d.D}: forward maxdiff ${dFwd.toExponential(2)}, backward maxdiff ${dBwd.toExponential(2)}`);
      expect(dFwd, `maxdiff ${dFwd}`).toBeLessThan(tolerance(d.T));
      expect(dBwd, `maxdiff ${dBwd}`).toBeLessThan(tolerance(d.T));

      // In place (x and y, dy and dx the same buffer) gives bit-identical results.
      gpu.run([...ropeForward(gpu, 'test', d, { x: xBuf, y: xBuf }), ...ropeBackward(gpu, 'test', d, { dy: dyBuf, dx: dyBuf })]);
      expect(Array.from(await gpu.read(xBuf, n))).toEqual(Array.from(y));
      expect(Array.from(await gpu.read(dyBuf, n))).toEqual(Array.from(dx));
      for (const b of [xBuf, yBuf, dyBuf, dxBuf]) gpu.release(b);
    });
  }

  it('position offset: T rows continuing after 3 earlier tokens', async () => {
    const gpu = await testGpu();
    const d: RopeDims = { B: 2, T: 5, heads: 3, D: 8, theta: 10000, posOffset: 3 };
    const T0 = d.T + 3; // the reference rotates whole sequences of T0 tokens; we keep their last T rows
    const row = d.heads * d.D;
    const full = sample(3, d.B * T0 * row);
    const dfull = sample(4, d.B * T0 * row);
    const tail = (a: ArrayLike<number>) => {
      const out: number[] = [];
      for (let b = 0; b < d.B; b++) for (let t = 3; t < T0; t++) for (let c = 0; c < row; c++) out.push(a[(b * T0 + t) * row + c]);
      return out;
    };
    const xBuf = gpu.upload('rope.test.x', Float32Array.from(tail(full.f32)));
    const dyBuf = gpu.upload('rope.test.dy', Float32Array.from(tail(dfull.f32)));
    gpu.run([...ropeForward(gpu, 'test', d, { x: xBuf, y: xBuf }), ...ropeBackward(gpu, 'test', d, { dy: dyBuf, dx: dyBuf })]);
    const n = d.B * d.T * row;
    const dFwd = relMaxDiff(await gpu.read(xBuf, n), tail(refRopeForward(full.f64, d.B, T0, d.heads, d.D, d.theta)));
    const dBwd = relMaxDiff(await gpu.read(dyBuf, n), tail(refRopeBackward(dfull.f64, d.B, T0, d.heads, d.D, d.theta)));
    console.log(`rope offset 3: forward maxdiff ${dFwd.toExponential(2)}, backward maxdiff ${dBwd.toExponential(2)}`);
    expect(dFwd, `maxdiff ${dFwd}`).toBeLessThan(tolerance(T0));
    expect(dBwd, `maxdiff ${dBwd}`).toBeLessThan(tolerance(T0));
    gpu.release(xBuf);
    gpu.release(dyBuf);
  });

  it('queries and keys in one dispatch (rope_qk): each as rope alone, H = 3 and KV = 1 heads', async () => {
    const gpu = await testGpu();
    const d: RopeDims = { B: 2, T: 5, heads: 3, D: 8, theta: 10000 };
    const KV = 1, nq = d.B * d.T * d.heads * d.D, nk = d.B * d.T * KV * d.D;
    const [q, k, dq, dk] = [sample(5, nq), sample(6, nk), sample(7, nq), sample(8, nk)];
    const up = (name: string, a: Float32Array) => gpu.upload(`rope.test.${name}`, a);
    const [xq, xk, dyq, dyk] = [up('q', q.f32), up('k', k.f32), up('dq', dq.f32), up('dk', dk.f32)];
    const [yq, yk, gq, gk] = [nq, nk, nq, nk].map((n, i) => gpu.buffer(`rope.test.out${i}`, n * 4));
    gpu.run([
      ropeQKDispatch(gpu, 'test', 'forward', d, KV, { xq, yq, xk, yk }),
      ropeQKDispatch(gpu, 'test', 'backward', d, KV, { xq: dyq, yq: gq, xk: dyk, yk: gk }),
    ]);
    const diffs = [
      relMaxDiff(await gpu.read(yq, nq), refRopeForward(q.f64, d.B, d.T, d.heads, d.D, d.theta)),
      relMaxDiff(await gpu.read(yk, nk), refRopeForward(k.f64, d.B, d.T, KV, d.D, d.theta)),
      relMaxDiff(await gpu.read(gq, nq), refRopeBackward(dq.f64, d.B, d.T, d.heads, d.D, d.theta)),
      relMaxDiff(await gpu.read(gk, nk), refRopeBackward(dk.f64, d.B, d.T, KV, d.D, d.theta)),
    ];
    console.log(`rope_qk: maxdiff q ${diffs[0].toExponential(2)}, k ${diffs[1].toExponential(2)}, dq ${diffs[2].toExponential(2)}, dk ${diffs[3].toExponential(2)}`);
    for (const diff of diffs) expect(diff, `maxdiff ${diff}`).toBeLessThan(tolerance(d.T));
    for (const b of [xq, xk, dyq, dyk, yq, yk, gq, gk]) gpu.release(b);
  });
});
