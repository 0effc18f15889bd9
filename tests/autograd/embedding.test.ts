// Embedding lookup and scatter-add gradient (shaders/embedding.wgsl via src/autograd/embedding.ts) against the
// float64 reference, with repeated ids (the gradient must sum them), an odd C, and dtable accumulation (+=).
//
// Tolerance: the forward is a copy, so it must be exact. The backward sums at most N ≤ 9 f32 values per
// element: ≤ 9 roundings, 1e-6 of the largest magnitude.

import { describe, expect, it } from 'vitest';
import { embeddingBackward, embeddingForward, type EmbeddingDims } from '../../src/autograd/embedding';
import * as ref from '../reference/ops';
import { mulberry32, randint, randn } from '../reference/rng';
import { relMaxDiff, testGpu } from '../gpu/test-gpu';

const TOL = 1e-6;
const sample = (rng: () => number, n: number) => Float64Array.from(new Float32Array(randn(rng, n)));

describe('embedding', () => {
  for (const d of [{ n: 3, c: 7, v: 5 }, { n: 9, c: 130, v: 4 }] as EmbeddingDims[]) {
    it(`forward and backward, N=${d.n} C=${d.c} V=${d.v}`, async () => {
      const gpu = await testGpu();
      const rng = mulberry32(d.n * 100 + d.c);
      const ids = randint(rng, d.n, d.v); // with N > V some ids repeat
      const table = sample(rng, d.v * d.c), dout = sample(rng, d.n * d.c), prior = sample(rng, d.v * d.c);
      const idsBuf = gpu.upload('embedding.test.ids', ids);
      const tBuf = gpu.upload('embedding.test.table', new Float32Array(table));
      const out = gpu.buffer('embedding.test.out', d.n * d.c * 4);
      const doBuf = gpu.upload('embedding.test.dout', new Float32Array(dout));
      const dt = gpu.upload('embedding.test.dtable', new Float32Array(prior)); // backward adds into what is there
      gpu.run([embeddingForward(gpu, 'test', d, idsBuf, tBuf, out), embeddingBackward(gpu, 'test', d, idsBuf, doBuf, dt)]);
      const dF = relMaxDiff(await gpu.read(out, d.n * d.c), ref.embeddingForward(ids, table, d.c));
      const dB = relMaxDiff(await gpu.read(dt, d.v * d.c), ref.residualAdd(prior, ref.embeddingBackward(ids, dout, d.v, d.c)));
      console.log(`embedding N=${d.n} C=${d.c} V=${d.v}: forward maxdiff ${dF}, backward ${dB.toExponential(2)}`);
      expect(dF, `maxdiff ${dF}`).toBe(0);
      expect(dB, `maxdiff ${dB}`).toBeLessThan(TOL);
      for (const buf of [idsBuf, tBuf, out, doBuf, dt]) gpu.release(buf);
    });
  }

  it('an id outside [0, V) gives a zero row instead of reading out of bounds', async () => {
    const gpu = await testGpu();
    const d: EmbeddingDims = { n: 3, c: 5, v: 2 };
    const table = Float32Array.from({ length: 10 }, (_, i) => i + 1);
    const out = gpu.buffer('embedding.test.out', 15 * 4);
    gpu.run([embeddingForward(gpu, 'test', d, gpu.upload('embedding.test.ids', Int32Array.from([1, 2, -100])), gpu.upload('embedding.test.table', table), out)]);
    expect(Array.from(await gpu.read(out, 15))).toEqual([6, 7, 8, 9, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });
});
