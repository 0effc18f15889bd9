// DoRA (src/autograd/dora.ts on shaders/dora.wgsl, composed by lora_linear.ts `linear`) on real WGSL: the row
// norm, and the DoRA linear's y and its gradients dx, dA, dB and dm against the float64 CPU reference
// (tests/reference/ops.ts doraLinearForward / doraLinearBackward, PEFT's formula written literally), with and
// without a bias, with and without lora_dropout (the same mask on both sides); against central finite
// differences with the norm held fixed (PEFT detaches it); and the fact that a fresh DoRA adapter (B = 0,
// m = ‖W‖) computes the base layer.
//
// Tolerance: 2e-5 of the largest magnitude (relMaxDiff), as for the LoRA linear: fp32 against float64.

import { describe, expect, it } from 'vitest';
import { testGpu, relMaxDiff } from '../gpu/test-gpu';
import { doraNorm } from '../../src/autograd/dora';
import { fill } from '../../src/autograd/elementwise';
import { dropoutScale } from '../../src/autograd/dropout';
import { Tape } from '../../src/autograd/tape';
import { labelHash, linear } from '../../src/autograd/lora_linear';
import type { Gpu } from '../../src/gpu/gpu';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';

const TOL = 2e-5;
const f32 = (a: ArrayLike<number>) => Float64Array.from(new Float32Array(a as ArrayLike<number>));

interface Case {
  N: number; inF: number; outF: number; r: number; scale: number;
  x: Float64Array; W: Float64Array; bias?: Float64Array; A: Float64Array; B: Float64Array; m: Float64Array; dy: Float64Array;
  /** lora_dropout p (0: none) */
  p: number;
}

function randomCase(seed: number, N: number, inF: number, outF: number, r: number, withBias: boolean, p = 0): Case {
  const rng = mulberry32(seed);
  const W = f32(randn(rng, outF * inF, 0.3)), A = f32(randn(rng, r * inF, 0.3)), B = f32(randn(rng, outF * r, 0.3));
  const scale = 2;
  // A magnitude near the norm, as after a few steps of training from PEFT's init m = ‖W + s·B·A‖.
  const norm = ref.doraNorm(W, A, B, inF, outF, r, scale);
  const m = f32(norm.map((v) => v * (1 + 0.2 * randn(rng, 1)[0])));
  return {
    N, inF, outF, r, scale, W, A, B, m, p,
    x: f32(randn(rng, N * inF)), bias: withBias ? f32(randn(rng, outF, 0.1)) : undefined, dy: f32(randn(rng, N * outF)),
  };
}

const COUNTER = 5, SEED = 77;

/** The tape rule with a magnitude: y, and the gradients of x, A, B and m from seeding dy. */
async function runGpu(gpu: Gpu, c: Case) {
  const { N, inF, outF, r } = c;
  const up = (name: string, a: ArrayLike<number>) => gpu.upload(`t.${name}`, new Float32Array(a as ArrayLike<number>));
  const tape = new Tape(gpu);
  const tx = tape.persistent('x', [N, inF], up('x', c.x), true);
  const tA = tape.persistent('A', [r, inF], up('A', c.A), true), tB = tape.persistent('B', [outF, r], up('B', c.B), true);
  const tm = tape.persistent('m', [outF], up('m', c.m), true);
  const counter = tape.persistent('counter', [1], gpu.upload('t.counter', new Uint32Array([COUNTER])));
  const y = linear(tape, 'layer', tx, tape.persistent('W', [outF, inF], up('W', c.W)), c.bias && tape.persistent('b', [outF], up('b', c.bias)),
    { A: tA, B: tB, scale: c.scale, dropout: c.p, magnitude: tm }, { counter, seed: SEED });
  tape.keep(y);
  tape.seedGrad(y, up('dy', c.dy));
  tape.backward();
  const params = [tx, tA, tB, tm];
  const grads = params.map((t) => tape.grad(t).buffer!);
  gpu.run([...grads.map((g, i) => fill(gpu, `zero${i}`, params[i].numel, g)), ...tape.compile().dispatches]);
  return {
    y: await gpu.read(y.buffer!, N * outF), dx: await gpu.read(grads[0], N * inF), dA: await gpu.read(grads[1], r * inF),
    dB: await gpu.read(grads[2], outF * r), dm: await gpu.read(grads[3], outF),
  };
}

function keepOf(c: Case): Float64Array | undefined {
  if (c.p === 0) return undefined;
  const seed = (SEED ^ labelHash('layer')) >>> 0;
  return Float64Array.from({ length: c.N * c.inF }, (_, i) => dropoutScale(i, c.p, seed, COUNTER));
}

function reference(c: Case) {
  const args = { ...c, keep: keepOf(c) };
  const fwd = ref.doraLinearForward(args);
  return { y: fwd.y, ...ref.doraLinearBackward({ ...args, u: fwd.u, z: fwd.z, norm: fwd.norm, dy: c.dy }) };
}

const KEYS = ['y', 'dx', 'dA', 'dB', 'dm'] as const;

describe('DoRA on WebGPU', () => {
  it('dora_norm matches ‖W + s·B·A‖ per output row, for rows longer than a workgroup', async () => {
    const gpu = await testGpu();
    for (const [inF, outF, r] of [[7, 5, 1], [300, 3, 4], [33, 70, 8]]) {
      const c = randomCase(inF + outF, 1, inF, outF, r, false);
      const norm = gpu.buffer('t.norm', outF * 4);
      const up = (a: Float64Array) => gpu.upload('t.in', new Float32Array(a));
      gpu.run([doraNorm(gpu, 't', { n: 0, inF, outF, r, scale: c.scale }, up(c.W), up(c.A), up(c.B), norm)]);
      const d = relMaxDiff(await gpu.read(norm, outF), ref.doraNorm(c.W, c.A, c.B, inF, outF, r, c.scale));
      expect(d, `norm ${inF}×${outF} r=${r}: maxdiff ${d}`).toBeLessThan(TOL);
    }
  });

  // (rows N, in, out, rank r, bias, dropout p): odd sizes, more output columns than one backward workgroup's 32.
  const shapes: [number, number, number, number, boolean, number][] = [
    [1, 1, 1, 1, false, 0], [3, 7, 5, 2, true, 0], [17, 33, 65, 8, false, 0], [40, 20, 33, 4, true, 0], [9, 13, 7, 3, true, 0.25], [6, 10, 40, 2, false, 0.5],
  ];
  for (const [N, inF, outF, r, bias, p] of shapes) {
    it(`matches the float64 reference for N=${N} in=${inF} out=${outF} r=${r}${bias ? ' with bias' : ''}${p ? ` with dropout ${p}` : ''}`, async () => {
      const gpu = await testGpu();
      const c = randomCase(N * 100 + inF + r, N, inF, outF, r, bias, p);
      const got = await runGpu(gpu, c);
      const want = reference(c);
      for (const k of KEYS) {
        const d = relMaxDiff(got[k], want[k]);
        expect(d, `${k}: maxdiff ${d}`).toBeLessThan(TOL);
      }
      if (p > 0) expect(keepOf(c)!.some((v) => v === 0)).toBe(true);
    });
  }

  it('gradients agree with central finite differences of Σ y·dy with the norm held fixed (PEFT detaches it)', async () => {
    const gpu = await testGpu();
    const c = randomCase(3, 4, 6, 5, 2, true);
    const got = await runGpu(gpu, c);
    const norm = ref.doraNorm(c.W, c.A, c.B, c.inF, c.outF, c.r, c.scale);
    const loss = (cc: Case) => ref.doraLinearForward({ ...cc, norm }).y.reduce((s, v, i) => s + v * cc.dy[i], 0);
    const h = 1e-6;
    for (const k of ['x', 'A', 'B', 'm'] as const) {
      const numeric = new Float64Array(c[k].length);
      for (let i = 0; i < c[k].length; i++) {
        const plus = { ...c, [k]: c[k].slice() }, minus = { ...c, [k]: c[k].slice() };
        plus[k][i] += h; minus[k][i] -= h;
        numeric[i] = (loss(plus) - loss(minus)) / (2 * h);
      }
      const d = relMaxDiff(got[`d${k}`], numeric);
      expect(d, `d${k}: maxdiff ${d}`).toBeLessThan(TOL);
    }
  });

  it('a fresh DoRA adapter (B = 0, m = ‖W‖ from dora_norm) computes exactly the base layer', async () => {
    const gpu = await testGpu();
    const c = randomCase(9, 5, 12, 6, 3, true);
    c.B = new Float64Array(c.B.length);
    const mBuf = gpu.buffer('t.m', c.outF * 4);
    const up = (a: Float64Array) => gpu.upload('t.in', new Float32Array(a));
    gpu.run([doraNorm(gpu, 't', { n: 0, inF: c.inF, outF: c.outF, r: c.r, scale: c.scale }, up(c.W), up(c.A), up(c.B), mBuf)]);
    c.m = Float64Array.from(await gpu.read(mBuf, c.outF));
    const got = await runGpu(gpu, c);
    const base = ref.linearForward(c.x, c.W, c.bias, c.N, c.inF, c.outF);
    // g = m/norm is exactly 1 when m is the norm the forward recomputes (the same kernel on the same values).
    const d = relMaxDiff(got.y, base);
    expect(d, `y vs base: maxdiff ${d}`).toBeLessThan(TOL);
    expect(got.dB.some((v) => v !== 0)).toBe(true);
  });
});
