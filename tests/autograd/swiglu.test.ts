// SwiGLU forward and backward (shaders/swiglu.wgsl via src/autograd/swiglu.ts) against the float64 reference,
// on odd sizes, and with gates of ±100 and −89 where e^−g overflows f32 (σ must become 0, not NaN).
//
// Tolerance: 1e-5 of the largest magnitude (relMaxDiff). Each output is a handful of f32 operations on one
// element; exp and the division carry a few ulp each (WGSL allows exp 3 + 2|x| ulp), so errors stay ~1e-6
// relative to the element and below that relative to the largest one.

import { describe, expect, it } from 'vitest';
import { swigluBackward, swigluForward } from '../../src/autograd/swiglu';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';
import { relMaxDiff, testGpu } from '../gpu/test-gpu';

const TOL = 1e-5;
const sample = (rng: () => number, n: number, std = 1) => Float64Array.from(new Float32Array(randn(rng, n, std)));

describe('swiglu', () => {
  for (const [N, I, std] of [[3, 7, 2], [5, 130, 2], [2, 301, 12]] as const) {
    it(`forward and backward, N=${N} I=${I} gate std ${std}`, async () => {
      const gpu = await testGpu();
      const n = N * I;
      const rng = mulberry32(N * 1000 + I);
      const gate = sample(rng, n, std), up = sample(rng, n), dh = sample(rng, n);
      if (std > 10) gate.set([-100, 100, -89]); // e^100 and e^89 overflow f32
      const u = (name: string, a: Float64Array) => gpu.upload(`swiglu.test.${name}`, new Float32Array(a));
      const gBuf = u('gate', gate), uBuf = u('up', up), dhBuf = u('dh', dh);
      const h = gpu.buffer('swiglu.test.h', n * 4), dg = gpu.buffer('swiglu.test.dgate', n * 4), du = gpu.buffer('swiglu.test.dup', n * 4);
      gpu.run([swigluForward(gpu, 'test', n, gBuf, uBuf, h), swigluBackward(gpu, 'test', n, gBuf, uBuf, dhBuf, dg, du)]);
      const bwd = ref.swigluBackward(gate, up, dh);
      const dH = relMaxDiff(await gpu.read(h, n), ref.swigluForward(gate, up));
      const dG = relMaxDiff(await gpu.read(dg, n), bwd.dgate);
      const dU = relMaxDiff(await gpu.read(du, n), bwd.dup);
      console.log(`swiglu N=${N} I=${I}: h maxdiff ${dH.toExponential(2)}, dgate ${dG.toExponential(2)}, dup ${dU.toExponential(2)}`);
      expect(dH, `maxdiff ${dH}`).toBeLessThan(TOL);
      expect(dG, `maxdiff ${dG}`).toBeLessThan(TOL);
      expect(dU, `maxdiff ${dU}`).toBeLessThan(TOL);
      for (const buf of [gBuf, uBuf, dhBuf, h, dg, du]) gpu.release(buf);
    });
  }
});
