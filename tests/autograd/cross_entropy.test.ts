// Chunked softmax cross-entropy (shaders/cross_entropy.wgsl via src/autograd/cross_entropy.ts) against the
// float64 reference: per-row losses, the mean loss, and dlogits, with the vocabulary in 1 chunk and in 3
// uneven chunks (one of them a single column) held in padded scratch buffers (row stride ld > Vc, padding NaN so
// any stray read shows), ignored rows (−100), and a batch where every row is ignored. Every case runs twice: with
// the forward and reduce on the subgroup path (shaders/cross_entropy_subgroups.wgsl) and on the plain one.
//
// Tolerance: 1e-6 of the largest magnitude (relMaxDiff). lse = m + log(s) is exact to a few ulp of lse
// (|lse| ≲ 15 here), i.e. ≲ 2e-7 relative to the largest row loss; softmax = e^(x − lse) inherits that absolute
// error as a relative one on each probability, so dlogits = (p − onehot)/count is off by a few 1e-7 of 1/count,
// the scale of the largest dlogit (measured ≤ 1.5e-7). A misplaced column or a wrong chunk merge is an error
// of order 1.

import { describe, expect, it } from 'vitest';
import {
  crossEntropyBackward, crossEntropyLoss, vocabChunks, IGNORE_INDEX, type CrossEntropyDims, type LogitsChunk,
} from '../../src/autograd/cross_entropy';
import type { Gpu } from '../../src/gpu/gpu';
import * as ref from '../reference/ops';
import { mulberry32, randint, randn } from '../reference/rng';
import { relMaxDiff, REDUCTION_PATHS, shaderOf, testGpuOn } from '../gpu/test-gpu';

const TOL = 1e-6;

/** Runs forward (all chunks), reduce and backward; returns losses (N), result (2) and dlogits (N, V). */
async function runGpu(gpu: Gpu, d: CrossEntropyDims, logits: Float64Array, targets: Int32Array, cols: { v0: number; vc: number }[], pad = 0) {
  const { n: N, v: V } = d;
  const ld = Math.max(...cols.map((c) => c.vc)) + pad;
  const logitBufs = cols.map(({ v0, vc }, i) => {
    const a = new Float32Array(N * ld).fill(NaN);
    for (let r = 0; r < N; r++) for (let j = 0; j < vc; j++) a[r * ld + j] = logits[r * V + v0 + j];
    return gpu.upload(`cross_entropy.test.logits${i}`, a);
  });
  const chunks: LogitsChunk[] = cols.map(({ v0, vc }, i) => ({ logits: logitBufs[i], v0, vc, ld }));
  const b = {
    targets: gpu.upload('cross_entropy.test.targets', targets),
    stats: gpu.buffer('cross_entropy.test.stats', N * 3 * 4),
    losses: gpu.buffer('cross_entropy.test.losses', N * 4),
    result: gpu.buffer('cross_entropy.test.result', 2 * 4),
  };
  const dbufs = chunks.map((_, i) => gpu.buffer(`cross_entropy.test.dlogits${i}`, N * ld * 4));
  const loss = crossEntropyLoss(gpu, 'test', d, b, chunks);
  expect(loss.map(shaderOf)).toEqual(loss.map(() => (gpu.subgroups ? 'cross_entropy_subgroups' : 'cross_entropy')));
  gpu.run([
    ...loss,
    ...chunks.map((c, i) => crossEntropyBackward(gpu, `test.chunk${i}`, d, b, c, dbufs[i])),
  ]);
  const dlogits = new Float64Array(N * V);
  for (let i = 0; i < chunks.length; i++) {
    const got = await gpu.read(dbufs[i], N * ld);
    for (let r = 0; r < N; r++) for (let j = 0; j < chunks[i].vc; j++) dlogits[r * V + chunks[i].v0 + j] = got[r * ld + j];
  }
  const out = { losses: await gpu.read(b.losses, N), result: await gpu.read(b.result, 2), dlogits };
  for (const buf of [...logitBufs, ...dbufs, ...Object.values(b)]) gpu.release(buf);
  return out;
}

function reference(logits: Float64Array, targets: Int32Array, N: number, V: number) {
  const fwd = ref.crossEntropyForward(logits, targets, N, V);
  const losses = Array.from(targets, (t, n) => (t === IGNORE_INDEX ? 0 : -Math.log(fwd.probs[n * V + t])));
  return { loss: fwd.loss, count: fwd.count, losses, dlogits: ref.crossEntropyBackward(fwd.probs, targets, N, V) };
}

const CASES: { N: number; V: number; split: number[] }[] = [
  { N: 3, V: 7, split: [7] },
  { N: 3, V: 7, split: [3, 1, 3] },
  { N: 5, V: 130, split: [130] },
  { N: 5, V: 130, split: [57, 1, 72] },
  { N: 4, V: 600, split: [600] },
  { N: 4, V: 600, split: [300, 299, 1] },
];

for (const path of REDUCTION_PATHS) describe(`cross_entropy, ${path} path`, () => {
  for (const { N, V, split } of CASES) {
    it(`N=${N} V=${V} in chunks of ${split.join('+')}`, async () => {
      const gpu = await testGpuOn(path);
      const rng = mulberry32(N * 1000 + V);
      const logits = Float64Array.from(new Float32Array(randn(rng, N * V, 3)));
      const targets = randint(rng, N, V);
      targets[1] = IGNORE_INDEX;
      targets[N - 1] = V - 1; // the last column: in the last chunk
      let v0 = 0;
      const cols = split.map((vc) => ({ v0: (v0 += vc) - vc, vc }));
      const got = await runGpu(gpu, { n: N, v: V }, logits, targets, cols, split.length > 1 ? 3 : 0);
      const want = reference(logits, targets, N, V);

      const dRows = relMaxDiff(got.losses, want.losses);
      const dLoss = relMaxDiff([got.result[0]], [want.loss]);
      const dGrad = relMaxDiff(got.dlogits, want.dlogits);
      console.log(`cross_entropy (${path}) N=${N} V=${V} chunks ${split.join('+')}: row losses maxdiff ${dRows.toExponential(2)}, ` +
        `mean loss ${dLoss.toExponential(2)}, dlogits ${dGrad.toExponential(2)}`);
      expect(got.result[1]).toBe(want.count);
      expect(dRows, `maxdiff ${dRows}`).toBeLessThan(TOL);
      expect(dLoss, `maxdiff ${dLoss}`).toBeLessThan(TOL);
      expect(dGrad, `maxdiff ${dGrad}`).toBeLessThan(TOL);
    });
  }

  it('every row ignored: loss 0, count 0, dlogits 0 (torch would give NaN)', async () => {
    const gpu = await testGpuOn(path);
    const logits = Float64Array.from(new Float32Array(randn(mulberry32(5), 3 * 7)));
    const got = await runGpu(gpu, { n: 3, v: 7 }, logits, Int32Array.from([-100, -100, -100]), [{ v0: 0, vc: 4 }, { v0: 4, vc: 3 }]);
    expect(Array.from(got.result)).toEqual([0, 0]);
    expect(Array.from(got.losses)).toEqual([0, 0, 0]);
    expect(got.dlogits.every((x) => x === 0)).toBe(true);
  });

  it('vocabChunks covers [0, V) in order', () => {
    expect(vocabChunks(7, 3)).toEqual([{ v0: 0, vc: 3 }, { v0: 3, vc: 3 }, { v0: 6, vc: 1 }]);
    expect(vocabChunks(6, 6)).toEqual([{ v0: 0, vc: 6 }]);
  });
});
