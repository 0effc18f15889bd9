// Causal grouped-query attention (shaders/attention.wgsl via src/autograd/attention.ts) against the float64
// reference in tests/reference/ops.ts: out, the saved logsumexp, and dq, dk, dv.
//
// Shapes: the grouped case (H = 4 over KV = 2), multi-query (KV = 1) with odd T and D, T = 33 so the key loop
// crosses tile boundaries (tiles of BK = 16 keys), T = 70 so it spans two query blocks of BQ = 64, and
// D = 128 (the largest head dimension). Every case runs twice: the forward on its subgroup path
// (shaders/attention_subgroups.wgsl, one subgroup per query row; on SwiftShader 4 lanes, so D = 5 and 8 leave
// lanes idle and D = 128 gives each lane 32 values) and on the plain one; the backward is the same on both.
//
// Tolerance 1e-5 relative (max |gpu − ref| / max |ref|): inputs are rounded to f32 before both sides see
// them, so the difference is only f32 arithmetic — dot products of ≤ 128 terms and sums of ≤ 70 weighted
// rows, each a few ulp (2^-24 ≈ 6e-8) per term, growing like √terms: a few 1e-7 expected, 1e-5 is ample
// yet far below any indexing or masking mistake (those give O(1) differences).

import { describe, expect, it } from 'vitest';
import { attentionBackward, attentionForward, type AttentionDims } from '../../src/autograd/attention.ts';
import { attentionBackward as refAttentionBackward, attentionForward as refAttentionForward } from '../reference/ops.ts';
import { mulberry32, randn } from '../reference/rng.ts';
import { relMaxDiff, REDUCTION_PATHS, shaderOf, testGpu, testGpuOn } from '../gpu/test-gpu.ts';

const TOL = 1e-5;

/** n normal samples rounded to f32, as a Float32Array for the GPU and a Float64Array for the reference. */
function sample(seed: number, n: number): { f32: Float32Array; f64: Float64Array } {
  const f32 = Float32Array.from(randn(mulberry32(seed), n));
  return { f32, f64: Float64Array.from(f32) };
}

/** Reference logsumexp (B, H, T) of the scaled causal scores. */
function refLse(q: Float64Array, k: Float64Array, d: AttentionDims): Float64Array {
  const { B, T, H, KV, D } = d;
  const lse = new Float64Array(B * H * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / KV));
      for (let t = 0; t < T; t++) {
        const s: number[] = [];
        for (let j = 0; j <= t; j++) {
          let dot = 0;
          for (let e = 0; e < D; e++) dot += q[(b * T + t) * H * D + h * D + e] * k[(b * T + j) * KV * D + kh * D + e];
          s.push(dot / Math.sqrt(D));
        }
        const m = Math.max(...s);
        lse[(b * H + h) * T + t] = m + Math.log(s.reduce((acc, x) => acc + Math.exp(x - m), 0));
      }
    }
  }
  return lse;
}

const CASES: AttentionDims[] = [
  { B: 2, T: 5, H: 4, KV: 2, D: 8 },
  { B: 1, T: 7, H: 3, KV: 1, D: 5 },
  { B: 1, T: 33, H: 2, KV: 2, D: 16 },
  { B: 1, T: 70, H: 2, KV: 1, D: 16 },
  { B: 1, T: 20, H: 2, KV: 2, D: 128 },
];

describe('attention', () => {
  for (const d of CASES) for (const path of REDUCTION_PATHS) {
    it(`forward and backward, B=${d.B} T=${d.T} H=${d.H} KV=${d.KV} D=${d.D}, ${path} forward`, async () => {
      const gpu = await testGpuOn(path);
      const N = d.B * d.T;
      const nq = N * d.H * d.D, nkv = N * d.KV * d.D, nl = d.B * d.H * d.T;
      const q = sample(1, nq), k = sample(2, nkv), v = sample(3, nkv), dout = sample(4, nq);

      // Outputs start as NaN, so an element the kernels fail to write fails the comparison.
      const nan = (label: string, n: number) => gpu.upload(label, new Float32Array(n).fill(NaN));
      const b = {
        q: gpu.upload('attention.test.q', q.f32),
        k: gpu.upload('attention.test.k', k.f32),
        v: gpu.upload('attention.test.v', v.f32),
        out: nan('attention.test.out', nq),
        lse: nan('attention.test.lse', nl),
      };
      const g = {
        dout: gpu.upload('attention.test.dout', dout.f32),
        delta: nan('attention.test.delta', nl),
        dq: nan('attention.test.dq', nq),
        dk: nan('attention.test.dk', nkv),
        dv: nan('attention.test.dv', nkv),
      };
      const forward = attentionForward(gpu, 'test', d, b);
      expect(forward.map(shaderOf)).toEqual([path === 'subgroups' ? 'attention_subgroups' : 'attention']);
      await gpu.checked('attention test', () => gpu.run([...forward, ...attentionBackward(gpu, 'test', d, b, g)]));

      const ref = refAttentionForward({ q: q.f64, k: k.f64, v: v.f64, ...d });
      const refGrad = refAttentionBackward({ q: q.f64, k: k.f64, v: v.f64, ...d, probs: ref.probs, dout: dout.f64 });
      const got = {
        out: await gpu.read(b.out, nq),
        lse: await gpu.read(b.lse, nl),
        dq: await gpu.read(g.dq, nq),
        dk: await gpu.read(g.dk, nkv),
        dv: await gpu.read(g.dv, nkv),
      };
      const diffs = {
        out: relMaxDiff(got.out, ref.out),
        lse: relMaxDiff(got.lse, refLse(q.f64, k.f64, d)),
        dq: relMaxDiff(got.dq, refGrad.dq),
        dk: relMaxDiff(got.dk, refGrad.dk),
        dv: relMaxDiff(got.dv, refGrad.dv),
      };
      console.log(`attention (${path} forward) B=${d.B} T=${d.T} H=${d.H} KV=${d.KV} D=${d.D}: maxdiff ` +
        Object.entries(diffs).map(([name, x]) => `${name} ${x.toExponential(2)}`).join(', '));
      for (const [name, x] of Object.entries(diffs)) expect(x, `${name} maxdiff ${x}`).toBeLessThan(TOL);

      // A second backward overwrites (does not accumulate into) dq, dk, dv, bit for bit: no atomics.
      gpu.run(attentionBackward(gpu, 'test', d, b, g));
      expect(Array.from(await gpu.read(g.dq, nq))).toEqual(Array.from(got.dq));
      expect(Array.from(await gpu.read(g.dk, nkv))).toEqual(Array.from(got.dk));
      expect(Array.from(await gpu.read(g.dv, nkv))).toEqual(Array.from(got.dv));
      for (const buf of [...Object.values(b), ...Object.values(g)]) gpu.release(buf);
    });
  }

  it('rejects shapes it cannot run, saying what to change', async () => {
    const gpu = await testGpu();
    const buf = gpu.buffer('attention.test.dummy', 16);
    const b = { q: buf, k: buf, v: buf, out: buf, lse: buf };
    expect(() => attentionForward(gpu, 'test', { B: 1, T: 4, H: 3, KV: 2, D: 8 }, b)).toThrow(/multiple of kv heads/);
    expect(() => attentionForward(gpu, 'test', { B: 1, T: 4, H: 2, KV: 2, D: 256 }, b)).toThrow(/maximum of 128/);
    gpu.release(buf);
  });
});
