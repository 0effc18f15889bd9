// The flat helpers of shaders/elementwise.wgsl (via src/autograd/elementwise.ts): add_forward against the
// reference residualAdd (and as an exact copy with alpha = ½), accumulate, fill and scale, on sizes that are not multiples of a workgroup, plus the
// 2-D workgroup grid that `grid` produces for counts beyond 65535 workgroups.
//
// Tolerance: add and accumulate are one f32 rounding of the exact sum of two f32 values, so relative to the
// largest magnitude they differ from float64 by ≤ 2^-24 ≈ 6e-8; fill is exact; scale is one rounding. 1e-6.

import { describe, expect, it } from 'vitest';
import { accumulate, addForward, fill, grid, scale } from '../../src/autograd/elementwise';
import type { Gpu } from '../../src/gpu/gpu';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';
import { relMaxDiff, testGpu } from '../gpu/test-gpu';

const TOL = 1e-6;
const sample = (seed: number, n: number) => Float64Array.from(new Float32Array(randn(mulberry32(seed), n)));

describe('elementwise', () => {
  for (const n of [7, 1283]) {
    it(`add_forward, accumulate, fill, scale with n=${n}`, async () => {
      const gpu = await testGpu();
      const a = sample(1, n), b = sample(2, n);
      const aBuf = gpu.upload('elementwise.test.a', new Float32Array(a));
      const bBuf = gpu.upload('elementwise.test.b', new Float32Array(b));
      const out = gpu.buffer('elementwise.test.out', n * 4);
      gpu.run([addForward(gpu, 'test', n, aBuf, aBuf, out, 0.5)]); // alpha·(a + a) with alpha = ½: an exact copy
      const copied = await gpu.read(out, n);
      gpu.run([addForward(gpu, 'test', n, aBuf, bBuf, out)]);
      const sum = ref.residualAdd(a, b);
      const dAdd = relMaxDiff(await gpu.read(out, n), sum);
      expect(Array.from(copied)).toEqual(Array.from(a));

      gpu.run([accumulate(gpu, 'test', n, aBuf, bBuf)]);
      const dAcc = relMaxDiff(await gpu.read(aBuf, n), sum);

      gpu.run([scale(gpu, 'test', n, bBuf, -0.37)]);
      const dScale = relMaxDiff(await gpu.read(bBuf, n), b.map((v) => v * Math.fround(-0.37)));

      // fill writes exactly n elements: the rest of a larger buffer keeps its values.
      gpu.run([fill(gpu, 'test', n - 2, out, 0)]);
      const filled = await gpu.read(out, n);
      const wantFill = Float64Array.from(filled.map((_, i) => (i < n - 2 ? 0 : Math.fround(sum[i]))));
      const dFill = relMaxDiff(filled, wantFill);

      console.log(`elementwise n=${n}: add maxdiff ${dAdd.toExponential(2)}, accumulate ${dAcc.toExponential(2)}, scale ${dScale.toExponential(2)}, fill ${dFill}`);
      expect(dAdd, `maxdiff ${dAdd}`).toBeLessThan(TOL);
      expect(dAcc, `maxdiff ${dAcc}`).toBeLessThan(TOL);
      expect(dScale, `maxdiff ${dScale}`).toBeLessThan(TOL);
      expect(dFill, `maxdiff ${dFill}`).toBe(0);
      for (const buf of [aBuf, bBuf, out]) gpu.release(buf);
    });
  }

  it('grid splits a workgroup count over x and y within the device limit', () => {
    const fake = { limits: { maxComputeWorkgroupsPerDimension: 65535 } } as unknown as Gpu;
    expect(grid(fake, 0)).toEqual([0, 1, 1]);
    expect(grid(fake, 65535)).toEqual([65535, 1, 1]);
    for (const g of [65536, 200_000, 3 * 65535 + 1]) {
      const [x, y] = grid(fake, g);
      expect(x).toBeLessThanOrEqual(65535);
      expect(x * y).toBeGreaterThanOrEqual(g);
      expect(x * (y - 1)).toBeLessThan(g); // no wholly idle row of workgroups
    }
  });

  it('a 2-D workgroup grid covers the flat range exactly once', async () => {
    const gpu = await testGpu();
    const n = 5 * 256 + 3; // 6 workgroups' worth
    const x = gpu.upload('elementwise.test.x', new Float32Array(n + 5).fill(1));
    // 4×2 = 8 workgroups: index (wg.x + 4·wg.y)·256 + lid; the last two groups and the 5 spare elements stay 1.
    gpu.run([{ ...scale(gpu, 'test', n, x, 3), workgroups: [4, 2, 1] }]);
    const got = await gpu.read(x, n + 5);
    const want = Array.from({ length: n + 5 }, (_, i) => (i < n ? 3 : 1));
    const d = relMaxDiff(got, want);
    expect(d, `maxdiff ${d}`).toBe(0);
  });
});
