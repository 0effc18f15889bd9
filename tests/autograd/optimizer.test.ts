// Optimizer kernels (shaders/optimizer.wgsl via src/autograd/optimizer.ts) against the float64 reference:
// SGD, three AdamW steps (weight decay on, bias corrections changing every step) and global gradient-norm
// clipping over several buffers, one of them larger than grad_norm_sq's 64 workgroups × 256 threads so the
// grid-stride loop runs, both when the norm exceeds max_norm and when it does not.
//
// Tolerance: 1e-6 of the largest magnitude (relMaxDiff). Each AdamW update is a dozen f32 operations per element
// with β and 1 − β (formed in f64) rounded once to f32; after 3 steps p, m, v stay within a few 1e-7. The
// norm is a sum of 21 290 squares in f32: the per-thread sums and the tree keep its relative error ~1e-7.

import { describe, expect, it } from 'vitest';
import {
  adamwParams, adamwStep, clipGradNorm, clipPartialsSize, OPTIMIZER_PARAMS, sgdStep, type AdamWHyper,
} from '../../src/autograd/optimizer';
import { packUniform } from '../../src/gpu/uniforms';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';
import { relMaxDiff, testGpu } from '../gpu/test-gpu';

const TOL = 1e-6;
const sample = (rng: () => number, n: number, std = 1) => Float64Array.from(new Float32Array(randn(rng, n, std)));

describe('optimizer', () => {
  it('sgd_step', async () => {
    const gpu = await testGpu();
    const rng = mulberry32(1);
    const n = 1283, p = sample(rng, n), g = sample(rng, n), lr = 0.05;
    const pBuf = gpu.upload('optimizer.test.p', new Float32Array(p));
    gpu.run([sgdStep(gpu, 'test', n, pBuf, gpu.upload('optimizer.test.g', new Float32Array(g)), lr)]);
    const d = relMaxDiff(await gpu.read(pBuf, n), ref.sgdStep(p, g, lr));
    console.log(`sgd_step n=${n}: maxdiff ${d.toExponential(2)}`);
    expect(d, `maxdiff ${d}`).toBeLessThan(TOL);
  });

  // n = 7 builds a fresh dispatch per step; n = 1283 records one and rewrites its uniforms from adamwParams
  // each step, as the trainer's replayed step does.
  for (const [n, rerecord] of [[7, true], [1283, false]] as const) {
    it(`adamw_step: 3 steps, n=${n}, ${rerecord ? 'a dispatch per step' : 'one dispatch, uniforms rewritten per step'}`, async () => {
      const gpu = await testGpu();
      const rng = mulberry32(n);
      const hp: AdamWHyper = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
      let want: { p: Float64Array; m: Float64Array; v: Float64Array } = { p: sample(rng, n), m: new Float64Array(n), v: new Float64Array(n) };
      const b = {
        p: gpu.upload('optimizer.test.p', new Float32Array(want.p)),
        g: gpu.buffer('optimizer.test.g', n * 4),
        m: gpu.upload('optimizer.test.m', new Float32Array(n)), // moments start at explicit zeros
        v: gpu.upload('optimizer.test.v', new Float32Array(n)),
      };
      const recorded = adamwStep(gpu, 'test', n, b, hp, 1);
      for (let step = 1; step <= 3; step++) {
        const g = sample(rng, n, 0.5);
        gpu.write(b.g, new Float32Array(g));
        if (rerecord) gpu.run([adamwStep(gpu, 'test', n, b, hp, step)]);
        else {
          gpu.device.queue.writeBuffer(recorded.uniforms[0], 0, packUniform(OPTIMIZER_PARAMS, adamwParams(n, hp, step)));
          gpu.run([recorded]);
        }
        want = ref.adamwStep(want.p, g, want.m, want.v, step, hp);
      }
      const dP = relMaxDiff(await gpu.read(b.p, n), want.p);
      const dM = relMaxDiff(await gpu.read(b.m, n), want.m);
      const dV = relMaxDiff(await gpu.read(b.v, n), want.v);
      console.log(`adamw_step n=${n} after 3 steps: p maxdiff ${dP.toExponential(2)}, m ${dM.toExponential(2)}, v ${dV.toExponential(2)}`);
      expect(dP, `maxdiff ${dP}`).toBeLessThan(TOL);
      expect(dM, `maxdiff ${dM}`).toBeLessThan(TOL);
      expect(dV, `maxdiff ${dV}`).toBeLessThan(TOL);
      for (const buf of Object.values(b)) gpu.release(buf);
    });
  }

  for (const maxNorm of [1.0, 1e4]) {
    it(`clip_grad_norm over 3 buffers, max_norm ${maxNorm} (${maxNorm < 100 ? 'clips' : 'leaves grads unchanged'})`, async () => {
      const gpu = await testGpu();
      const rng = mulberry32(42);
      const sizes = [7, 1283, 20000];
      const grads = sizes.map((n) => sample(rng, n, 0.1));
      const bufs = grads.map((g, i) => ({ g: gpu.upload(`optimizer.test.grad${i}`, new Float32Array(g)), n: sizes[i] }));
      const partials = gpu.buffer('optimizer.test.partials', clipPartialsSize(sizes) * 4);
      const norm = gpu.buffer('optimizer.test.norm', 2 * 4);
      gpu.run(clipGradNorm(gpu, 'test', bufs, maxNorm, { partials, norm }));
      const want = ref.clipGradNorm(grads, maxNorm);
      const got = await gpu.read(norm, 2);
      const dNorm = relMaxDiff([got[0]], [want.totalNorm]);
      const dGrads = await Promise.all(bufs.map(async (b, i) => relMaxDiff(await gpu.read(b.g, b.n), want.grads[i])));
      console.log(`clip max_norm=${maxNorm}: total norm ${got[0]} (maxdiff ${dNorm.toExponential(2)}), coef ${got[1]}, ` +
        `grads maxdiff ${dGrads.map((d) => d.toExponential(2)).join(', ')}`);
      expect(dNorm, `maxdiff ${dNorm}`).toBeLessThan(TOL);
      for (const d of dGrads) expect(d, `maxdiff ${d}`).toBeLessThan(TOL);
      if (maxNorm > 100) expect(got[1]).toBe(1);
      for (const b of bufs) gpu.release(b.g);
    });
  }
});
