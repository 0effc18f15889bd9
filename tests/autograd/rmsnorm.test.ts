// RMSNorm forward and input gradient (shaders/rmsnorm.wgsl via src/autograd/rmsnorm.ts) against the float64
// reference in tests/reference/ops.ts, on odd shapes: C < one workgroup's width, C = 130 and C = 600 so the
// per-thread stride loop and the tree reduction both matter; the accumulate flag; and a 2-D workgroup grid.
// Every case runs twice: on the subgroup path (shaders/rmsnorm_subgroups.wgsl) and on the plain one.
//
// Tolerance: 1e-5 of the largest magnitude (relMaxDiff). The row sums run over C ≤ 600 unit-scale terms in
// f32 (relative error ~1e-7·log C for the tree, ~1e-6 worst case for the strided part), and the backward's
// rstd·g − k·x loses at most a few more ulp to cancellation; a wrong index gives errors of order 1.

import { describe, expect, it } from 'vitest';
import { rmsnormBackward, rmsnormForward, type RmsnormDims } from '../../src/autograd/rmsnorm';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';
import { relMaxDiff, REDUCTION_PATHS, shaderOf, testGpuOn } from '../gpu/test-gpu';

const TOL = 1e-5;

/** Random normal values rounded to f32, so the reference sees exactly what the GPU sees. */
const sample = (rng: () => number, n: number, std = 1, mean = 0) => Float64Array.from(new Float32Array(randn(rng, n, std).map((v) => v + mean)));

const CASES: RmsnormDims[] = [
  { n: 3, c: 7, eps: 1e-5 },
  { n: 5, c: 130, eps: 1e-6 },
  { n: 2, c: 600, eps: 1e-5 },
];

for (const path of REDUCTION_PATHS) describe(`rmsnorm, ${path} path`, () => {
  const SHADER = path === 'subgroups' ? 'rmsnorm_subgroups' : 'rmsnorm';
  for (const d of CASES) {
    it(`forward and backward, N=${d.n} C=${d.c} eps=${d.eps}`, async () => {
      const gpu = await testGpuOn(path);
      const rng = mulberry32(d.n * 1000 + d.c);
      const x = sample(rng, d.n * d.c, 2), w = sample(rng, d.c, 0.1, 1), dy = sample(rng, d.n * d.c);
      const up = (name: string, a: Float64Array) => gpu.upload(`rmsnorm.test.${name}`, new Float32Array(a));
      const b = { x: up('x', x), w: up('w', w), y: gpu.buffer('rmsnorm.test.y', d.n * d.c * 4), rstd: gpu.buffer('rmsnorm.test.rstd', d.n * 4) };
      const dyBuf = up('dy', dy), dxBuf = gpu.buffer('rmsnorm.test.dx', d.n * d.c * 4);
      const ds = [rmsnormForward(gpu, 'test', d, b), rmsnormBackward(gpu, 'test', d, b, dyBuf, dxBuf)];
      expect(ds.map(shaderOf)).toEqual([SHADER, SHADER]);
      gpu.run(ds);

      const fwd = ref.rmsnormForward(x, w, d.n, d.c, d.eps);
      const bwd = ref.rmsnormBackward(x, w, fwd.rstd, dy, d.n, d.c);
      const dY = relMaxDiff(await gpu.read(b.y, d.n * d.c), fwd.y);
      const dR = relMaxDiff(await gpu.read(b.rstd, d.n), fwd.rstd);
      const dX = relMaxDiff(await gpu.read(dxBuf, d.n * d.c), bwd.dx);
      console.log(`rmsnorm (${path}) N=${d.n} C=${d.c}: y maxdiff ${dY.toExponential(2)}, rstd ${dR.toExponential(2)}, dx ${dX.toExponential(2)}`);
      expect(dY, `maxdiff ${dY}`).toBeLessThan(TOL);
      expect(dR, `maxdiff ${dR}`).toBeLessThan(TOL);
      expect(dX, `maxdiff ${dX}`).toBeLessThan(TOL);
      for (const buf of [b.x, b.w, b.y, b.rstd, dyBuf, dxBuf]) gpu.release(buf);
    });
  }

  it('backward accumulates into dx when asked (the residual gradient is already there)', async () => {
    const gpu = await testGpuOn(path);
    const d: RmsnormDims = { n: 5, c: 130, eps: 1e-5 };
    const rng = mulberry32(7);
    const x = sample(rng, d.n * d.c), w = sample(rng, d.c, 0.1, 1), dy = sample(rng, d.n * d.c), prior = sample(rng, d.n * d.c);
    const up = (name: string, a: Float64Array) => gpu.upload(`rmsnorm.test.${name}`, new Float32Array(a));
    const b = { x: up('x', x), w: up('w', w), y: gpu.buffer('rmsnorm.test.y', d.n * d.c * 4), rstd: gpu.buffer('rmsnorm.test.rstd', d.n * 4) };
    const dyBuf = up('dy', dy), dxBuf = up('dx', prior);
    gpu.run([rmsnormForward(gpu, 'test', d, b), rmsnormBackward(gpu, 'test', d, b, dyBuf, dxBuf, true)]);
    const fwd = ref.rmsnormForward(x, w, d.n, d.c, d.eps);
    const want = ref.residualAdd(prior, ref.rmsnormBackward(x, w, fwd.rstd, dy, d.n, d.c).dx);
    const dX = relMaxDiff(await gpu.read(dxBuf, d.n * d.c), want);
    console.log(`rmsnorm (${path}) accumulate: dx maxdiff ${dX.toExponential(2)}`);
    expect(dX, `maxdiff ${dX}`).toBeLessThan(TOL);
  });

  it('rows spread over a 2-D workgroup grid (as for N > 65535) give the same result', async () => {
    const gpu = await testGpuOn(path);
    const d: RmsnormDims = { n: 5, c: 9, eps: 1e-5 };
    const rng = mulberry32(11);
    const x = sample(rng, d.n * d.c), w = sample(rng, d.c, 0.1, 1);
    const b = {
      x: gpu.upload('rmsnorm.test.x', new Float32Array(x)), w: gpu.upload('rmsnorm.test.w', new Float32Array(w)),
      y: gpu.buffer('rmsnorm.test.y', d.n * d.c * 4), rstd: gpu.buffer('rmsnorm.test.rstd', d.n * 4),
    };
    // 3×2 = 6 workgroups for 5 rows: row = wg.x + 3·wg.y, the sixth does nothing.
    gpu.run([{ ...rmsnormForward(gpu, 'test', d, b), workgroups: [3, 2, 1] }]);
    const dY = relMaxDiff(await gpu.read(b.y, d.n * d.c), ref.rmsnormForward(x, w, d.n, d.c, d.eps).y);
    expect(dY, `maxdiff ${dY}`).toBeLessThan(TOL);
  });
});
