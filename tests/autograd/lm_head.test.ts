// The LM head's tape rules (src/autograd/lm_head.ts) against the float64 reference: lmHeadLoss's mean
// cross-entropy and dxf with the vocabulary in one chunk and in several (the backward then recomputes each
// chunk's logits), an ignored target included; lmHeadLogits writing chunked columns into one (T, V) tensor;
// and the chunk sizes keeping every binding offset a multiple of 256 bytes.
//
// Tolerance: 1e-5 of the largest magnitude (relMaxDiff), as for the model's parity test: fp32 sums over
// C = 8 products and softmaxes over V = 150 columns; a wrong chunk offset gives errors of order 1.

import { describe, expect, it } from 'vitest';
import { Tape } from '../../src/autograd/tape';
import { fill } from '../../src/autograd/elementwise';
import { lmHeadLogits, lmHeadLoss, logitsChunkWidth, tableChunkRows } from '../../src/autograd/lm_head';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';
import { relMaxDiff, testGpu } from '../gpu/test-gpu';

const TOL = 1e-5;
const [N, C, V] = [5, 8, 150];
const f32 = (a: Float64Array) => Float64Array.from(new Float32Array(a));

function data(seed: number) {
  const rng = mulberry32(seed);
  const x = f32(randn(rng, N * C)), E = f32(randn(rng, V * C, 0.5));
  const targets = Int32Array.from({ length: N }, (_, n) => (n === 2 ? ref.IGNORE_INDEX : (n * 37 + 11) % V));
  return { x, E, targets };
}

describe('lm_head', () => {
  for (const chunk of [V, 64]) {
    it(`lmHeadLoss: loss and dxf match the reference with chunks of ${chunk} columns`, async () => {
      const gpu = await testGpu();
      const { x, E, targets } = data(chunk);
      const tape = new Tape(gpu);
      const xf = tape.persistent('xf', [N, C], gpu.upload('lm_head.test.xf', new Float32Array(x)), true);
      const head = tape.persistent('E', [V, C], gpu.upload('lm_head.test.E', new Float32Array(E)));
      const io = {
        targets: tape.persistent('targets', [N], gpu.upload('lm_head.test.targets', targets)),
        result: tape.persistent('result', [2], gpu.buffer('lm_head.test.result', 8)),
      };
      lmHeadLoss(tape, xf, head, io, chunk);
      tape.backward();
      const dxf = tape.grad(xf).buffer!;
      gpu.run([fill(gpu, 'lm_head.test.zero', N * C, dxf), ...tape.compile().dispatches]);

      const want = ref.crossEntropyForward(ref.matmulNT(x, E, N, V, C), targets, N, V);
      const wantDx = ref.matmulNN(ref.crossEntropyBackward(want.probs, targets, N, V), E, N, C, V);
      const [loss, count] = await gpu.read(io.result.buffer!, 2);
      expect(count).toBe(N - 1);
      expect(Math.abs(loss - want.loss) / want.loss, `loss ${loss} vs ${want.loss}`).toBeLessThan(TOL);
      const d = relMaxDiff(await gpu.read(dxf, N * C), wantDx);
      expect(d, `dxf maxdiff ${d}`).toBeLessThan(TOL);
    });
  }

  it('lmHeadLogits writes every chunk of columns into one (T, V) tensor', async () => {
    const gpu = await testGpu();
    const { x, E } = data(3);
    const tape = new Tape(gpu);
    const xf = tape.persistent('xf', [N, C], gpu.upload('lm_head.test.xf', new Float32Array(x)));
    const head = tape.persistent('E', [V, C], gpu.upload('lm_head.test.E', new Float32Array(E)));
    const logits = tape.persistent('logits', [N, V], gpu.buffer('lm_head.test.logits', N * V * 4));
    lmHeadLogits(tape, 'lm_head.test', xf, head, logits, 64); // columns [0, 64), [64, 128), [128, 150)
    const program = tape.compile();
    expect(program.dispatches.map((d) => d.label)).toEqual(['lm_head.test.chunk0', 'lm_head.test.chunk1', 'lm_head.test.chunk2']);
    gpu.run(program.dispatches);
    const d = relMaxDiff(await gpu.read(logits.buffer!, N * V), ref.matmulNT(x, E, N, V, C));
    expect(d, `logits maxdiff ${d}`).toBeLessThan(TOL);
  });

  it('sizes chunks so that every table and logits offset is a multiple of 256 bytes', () => {
    for (const c of [8, 24, 896, 1000]) {
      const rows = tableChunkRows(c, 1 << 20);
      expect((rows * c * 4) % 256, `C=${c}`).toBe(0);
      expect(rows * c * 4).toBeLessThanOrEqual(1 << 20);
      const cols = logitsChunkWidth(64, 151936, c, 1 << 20);
      expect((cols * c * 4) % 256, `C=${c}`).toBe(0);
      expect(64 * cols * 4).toBeLessThanOrEqual(1 << 20);
    }
    expect(logitsChunkWidth(4, 100, 8, 1 << 20)).toBe(100); // fits: one chunk
  });
});
