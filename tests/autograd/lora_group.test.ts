// The projections of one input as one rule (src/autograd/lora_group.ts) against the same projections recorded
// one by one with `linear` (lora_linear.ts, itself checked against the float64 reference and PyTorch): the
// outputs, dx and every adapter gradient, for adapters packed in one slab and for adapters each in a slab of
// their own (more buffers to bind: more dispatches), with a projection without LoRA among them, at odd sizes.
//
// Tolerance: 2e-5 of the largest magnitude (relMaxDiff), as lora_linear's tests: the group sums dx's terms in
// another order (one job of every term), so the two agree to fp32 rounding, not bit for bit.

import { describe, expect, it } from 'vitest';
import { linear } from '../../src/autograd/lora_linear';
import { linearGroup } from '../../src/autograd/lora_group';
import { packParameters } from '../../src/autograd/packed';
import { fill } from '../../src/autograd/elementwise';
import { Tape, type Tensor } from '../../src/autograd/tape';
import type { Gpu } from '../../src/gpu/gpu';
import { mulberry32, randn } from '../reference/rng';
import { relMaxDiff, testGpu } from '../gpu/test-gpu';

const TOL = 2e-5;
const [N, IN, R] = [7, 13, 3];
const OUTS = [11, 5, 5]; // q-like, then two GQA-like projections; the second has no adapter

interface Data { x: Float32Array; W: Float32Array[]; A: Float32Array[]; B: Float32Array[]; dy: Float32Array[] }

function data(): Data {
  const rng = mulberry32(7);
  const r = (n: number, s = 1) => Float32Array.from(randn(rng, n, s));
  return {
    x: r(N * IN), W: OUTS.map((o) => r(o * IN, 0.3)), A: OUTS.map(() => r(R * IN, 0.3)), B: OUTS.map((o) => r(o * R, 0.3)), dy: OUTS.map((o) => r(N * o)),
  };
}

/** Records the three projections (grouped or not) of x, seeds their gradients, runs forward and backward. */
async function run(gpu: Gpu, d: Data, grouped: boolean, packedAt: 'stride' | 'apart') {
  const tape = new Tape(gpu);
  const x = tape.persistent('x', [N, IN], gpu.upload('g.x', d.x), true);
  const W = d.W.map((w, i) => tape.persistent(`W${i}`, [OUTS[i], IN], gpu.upload(`g.W${i}`, w)));
  // 'stride': A0, A2 next to each other in one slab (as gpu_weights packs them), then the B's; 'apart': each
  // projection's A and B in a slab of their own, so no one stride reaches both A's.
  const spec = (k: 'A' | 'B', i: number) => ({ key: `${k}${i}`, shape: k === 'A' ? [R, IN] : [OUTS[i], R], data: k === 'A' ? d.A[i] : d.B[i] });
  const packs = packedAt === 'stride'
    ? [packParameters(gpu, 'g.lora', [spec('A', 0), spec('A', 2), spec('B', 0), spec('B', 2)])]
    : [0, 2].map((i) => packParameters(gpu, `g.lora${i}`, [spec('A', i), spec('B', i)]));
  const slabs = packs.flatMap((q) => q.slabs);
  const p = (key: string) => packs.flatMap((q) => q.tensors).find((t) => t.label === key)!;
  const lora = (i: number) => (i === 1 ? undefined : { A: p(`A${i}`), B: p(`B${i}`), scale: 1.5, dropout: 0 });
  const ys = grouped
    ? linearGroup(tape, 'g', x, OUTS.map((_, i) => ({ label: `p${i}`, W: W[i], lora: lora(i) })))
    : OUTS.map((_, i) => linear(tape, `p${i}`, x, W[i], undefined, lora(i)));
  ys.forEach((y, i) => { tape.keep(y); tape.seedGrad(y, gpu.upload(`g.dy${i}`, d.dy[i])); });
  tape.backward();
  const dx = tape.grad(x).buffer!;
  const program = tape.compile().dispatches;
  gpu.run([fill(gpu, 'g.zero_dx', N * IN, dx), ...slabs.map((s) => fill(gpu, 'g.zero', s.n, s.grads)), ...program]);
  const read = (t: Tensor) => gpu.read(t.buffer!, t.numel, t.offset / 4);
  const grad = (t: Tensor) => gpu.read(t.gradAt!.buffer, t.numel, t.offset / 4);
  return {
    labels: program.map((x) => x.label), y: await Promise.all(ys.map(read)), dx: await gpu.read(dx, N * IN),
    dA: await Promise.all([0, 2].map((i) => grad(p(`A${i}`)))), dB: await Promise.all([0, 2].map((i) => grad(p(`B${i}`)))),
  };
}

describe('linearGroup: projections of one input', () => {
  for (const packedAt of ['stride', 'apart'] as const) {
    it(`equals linear per projection (adapters packed ${packedAt === 'stride' ? 'in one slab' : 'apart'})`, async () => {
      const gpu = await testGpu();
      const d = data();
      const want = await run(gpu, d, false, packedAt);
      const got = await run(gpu, d, true, packedAt);
      // At one stride every stage is one dispatch: the downs with p1's frozen GEMM, the adapted projections,
      // du with dB, dA with dx's LoRA terms, dx's frozen terms. Apart, each adapter's slab is one more buffer to
      // bind and one more to write, so du/dB and dA/dx need two dispatches each.
      expect(got.labels).toEqual(packedAt === 'stride'
        ? ['g.forward0', 'g.forward1', 'g.backward_du', 'g.backward_dA', 'g.backward_dx']
        : ['g.forward0', 'g.forward1', 'g.backward_du0', 'g.backward_du1', 'g.backward_dA0', 'g.backward_dA1', 'g.backward_dx']);
      const pairs: [string, Float32Array, Float32Array][] = [
        ...got.y.map((y, i) => [`y${i}`, y, want.y[i]] as [string, Float32Array, Float32Array]), ['dx', got.dx, want.dx],
        ...got.dA.map((g, i) => [`dA${i}`, g, want.dA[i]] as [string, Float32Array, Float32Array]),
        ...got.dB.map((g, i) => [`dB${i}`, g, want.dB[i]] as [string, Float32Array, Float32Array]),
      ];
      for (const [name, a, b] of pairs) {
        const diff = relMaxDiff(a, b);
        expect(diff, `${name}: maxdiff ${diff.toExponential(2)}`).toBeLessThan(TOL);
        expect(b.some((v) => v !== 0), `${name} is not all zero`).toBe(true);
      }
    });
  }
});
