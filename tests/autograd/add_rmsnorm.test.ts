// The residual add fused with the RMSNorm after it (shaders/add_rmsnorm.wgsl via src/autograd/add_rmsnorm.ts):
// the forward bit for bit as add_forward then the plain rmsnorm_forward, and against the float64 reference; the tape
// rule's backward (RMSNorm's over h, then the add's pass-through to both inputs) against the reference, with a
// gradient for h from elsewhere too, as a decoder's next residual add gives it. Odd shapes as rmsnorm's tests.
//
// Tolerance: 1e-5 of the largest magnitude (relMaxDiff), as for rmsnorm alone; the add is exact in f32.

import { describe, expect, it } from 'vitest';
import { addRmsnorm, addRmsnormForward } from '../../src/autograd/add_rmsnorm';
import { addForward, fill } from '../../src/autograd/elementwise';
import { rmsnormForward, type RmsnormDims } from '../../src/autograd/rmsnorm';
import { Tape } from '../../src/autograd/tape';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';
import { relMaxDiff, testGpu, testGpuOn } from '../gpu/test-gpu';

const TOL = 1e-5;
const sample = (rng: () => number, n: number, std = 1, mean = 0) => Float64Array.from(new Float32Array(randn(rng, n, std).map((v) => v + mean)));
const CASES: RmsnormDims[] = [{ n: 3, c: 7, eps: 1e-5 }, { n: 5, c: 130, eps: 1e-6 }, { n: 2, c: 600, eps: 1e-5 }];

describe('add_rmsnorm', () => {
  for (const d of CASES) {
    it(`forward as add then rmsnorm, bit for bit, and against the reference: N=${d.n} C=${d.c}`, async () => {
      // add_rmsnorm reduces as the plain rmsnorm does (it has no subgroup variant yet), so it equals that path bit
      // for bit; the subgroup rmsnorm sums in another order and agrees only to float32 rounding.
      const gpu = await testGpuOn('plain');
      const rng = mulberry32(d.n * 100 + d.c);
      const a = sample(rng, d.n * d.c, 2), b = sample(rng, d.n * d.c), w = sample(rng, d.c, 0.1, 1);
      const up = (name: string, x: Float64Array) => gpu.upload(`add_rmsnorm.test.${name}`, new Float32Array(x));
      const out = (name: string, n: number) => gpu.buffer(`add_rmsnorm.test.${name}`, n * 4);
      const bufs = { a: up('a', a), b: up('b', b), w: up('w', w), h: out('h', d.n * d.c), y: out('y', d.n * d.c), rstd: out('rstd', d.n) };
      const [h2, y2, rstd2] = [out('h2', d.n * d.c), out('y2', d.n * d.c), out('rstd2', d.n)];
      gpu.run([
        addRmsnormForward(gpu, 'test', d, bufs),
        addForward(gpu, 'test.add', d.n * d.c, bufs.a, bufs.b, h2), rmsnormForward(gpu, 'test.norm', d, { x: h2, w: bufs.w, y: y2, rstd: rstd2 }),
      ]);
      const [h, y, rstd] = [await gpu.read(bufs.h, d.n * d.c), await gpu.read(bufs.y, d.n * d.c), await gpu.read(bufs.rstd, d.n)];
      expect(Array.from(h)).toEqual(Array.from(await gpu.read(h2, d.n * d.c)));
      expect(Array.from(y)).toEqual(Array.from(await gpu.read(y2, d.n * d.c)));
      expect(Array.from(rstd)).toEqual(Array.from(await gpu.read(rstd2, d.n)));
      const fwd = ref.rmsnormForward(a.map((v, i) => v + b[i]), w, d.n, d.c, d.eps);
      const dY = relMaxDiff(y, fwd.y);
      expect(dY, `y maxdiff ${dY.toExponential(2)}`).toBeLessThan(TOL);
    });
  }

  it('tape rule: dy through the norm plus h\'s own gradient, to both inputs', async () => {
    const gpu = await testGpu();
    const d = { n: 5, c: 130, eps: 1e-6 };
    const rng = mulberry32(3);
    const a = sample(rng, d.n * d.c, 2), b = sample(rng, d.n * d.c), w = sample(rng, d.c, 0.1, 1);
    const dy = sample(rng, d.n * d.c), dh = sample(rng, d.n * d.c);
    const up = (name: string, x: Float64Array) => gpu.upload(`add_rmsnorm.tape.${name}`, new Float32Array(x));
    const tape = new Tape(gpu);
    const ta = tape.persistent('a', [d.n, d.c], up('a', a), true), tb = tape.persistent('b', [d.n, d.c], up('b', b), true);
    const [h, y] = addRmsnorm(tape, { add: 'h', norm: 'y' }, ta, tb, tape.persistent('w', [d.c], up('w', w)), d.eps);
    tape.keep(h);
    tape.keep(y);
    tape.seedGrad(h, up('dh', dh));
    tape.seedGrad(y, up('dy', dy));
    tape.backward();
    const [ga, gb] = [tape.grad(ta).buffer!, tape.grad(tb).buffer!];
    gpu.run([...[ga, gb].map((g) => fill(gpu, 'zero', d.n * d.c, g)), ...tape.compile().dispatches]);
    const hv = a.map((v, i) => v + b[i]);
    const fwd = ref.rmsnormForward(hv, w, d.n, d.c, d.eps);
    const want = ref.rmsnormBackward(hv, w, fwd.rstd, dy, d.n, d.c).dx.map((v, i) => v + dh[i]);
    for (const [name, g] of [['da', ga], ['db', gb]] as const) {
      const diff = relMaxDiff(await gpu.read(g, d.n * d.c), want);
      expect(diff, `${name} maxdiff ${diff.toExponential(2)}`).toBeLessThan(TOL);
    }
  });
});
