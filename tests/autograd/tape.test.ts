// The autograd tape itself (src/autograd/tape.ts): interval allocation of virtual tensors (a buffer goes back
// to the pool after its last use and the next tensor of that size takes it; kept tensors survive to the end;
// transientBytes is the high-water mark, worked out by hand below), one command buffer per training step,
// and gradient accumulation into a tensor consumed twice, against the float64 reference.
//
// Tolerance: 1e-5 of the largest magnitude (relMaxDiff), as for rmsnorm alone; the sums are exact in f32.

import { describe, expect, it, vi } from 'vitest';
import { Tape, type Tensor } from '../../src/autograd/tape';
import { add, addForward, fill } from '../../src/autograd/elementwise';
import { rmsnorm } from '../../src/autograd/rmsnorm';
import { loadModelDir } from '../../src/cli/files';
import { createModel } from '../../src/model/factory';
import { initLora } from '../../src/model/lora';
import { DEFAULT_OPTIMIZER, Trainer } from '../../src/train/trainer';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';
import { writeTinyModel } from '../cli/tiny-model';
import { relMaxDiff, testGpu } from '../gpu/test-gpu';

const f32 = (a: Float64Array) => Float64Array.from(new Float32Array(a));

/**
 * p (4) persistent → a = p + p → b = a + a, e = 1 (64 floats) → c = b + b → d = c + e[0..4).
 * Node i:      0      1           2        3
 * a lives over nodes 0–1, b 1–2, e 1–3, c 2–3, d 3 (16 bytes each, e 256).
 */
function chain(tape: Tape, p: Tensor) {
  const gpu = tape.gpu;
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((l) => tape.tensor(l, [4]));
  const e = tape.tensor('e', [64]);
  tape.op('a', [p], [a], (r) => addForward(gpu, 'a', 4, r(p), r(p), r(a)));
  tape.op('b', [a], [b, e], (r) => [addForward(gpu, 'b', 4, r(a), r(a), r(b)), fill(gpu, 'e', 64, r(e), 1)]);
  tape.op('c', [b], [c], (r) => addForward(gpu, 'c', 4, r(b), r(b), r(c)));
  tape.op('d', [c, e], [d], (r) => addForward(gpu, 'd', 4, r(c), r(e), r(d)));
  tape.keep(d);
  return { a, b, c, d, e };
}

describe('tape', () => {
  it("reuses a virtual tensor's buffer after its last use; transientBytes is the interval high-water mark", async () => {
    const gpu = await testGpu();
    const pv = new Float32Array([1, -2, 3.5, 0.25]);
    const tape = new Tape(gpu);
    const p = tape.persistent('p', [4], gpu.upload('tape.test.p', pv));
    const { a, b, c, d } = chain(tape, p);
    const program = tape.compile();
    // a is free after node 1, so c (first used at node 2) takes its buffer; b is free after node 2, d takes it.
    expect(c.buffer).toBe(a.buffer);
    expect(d.buffer).toBe(b.buffer);
    // Live bytes per node: 0: a = 16; 1: a + b + e = 288, then a goes; 2: c + b + e = 288; 3: c + e + d = 288.
    expect(program.transientBytes).toBe(288);
    gpu.run(program.dispatches);
    expect([...(await gpu.read(d.buffer!, 4))]).toEqual([...pv].map((v) => 8 * v + 1));
  });

  it('keeps a kept tensor to the end of the program: nothing reuses it and it can be read afterwards', async () => {
    const gpu = await testGpu();
    const pv = new Float32Array([0.5, 4, -1, 2]);
    const tape = new Tape(gpu);
    const p = tape.persistent('p', [4], gpu.upload('tape.test.p', pv));
    const { a, b, c, d, e } = chain(tape, p);
    tape.keep(a);
    const program = tape.compile();
    const buffers = [a, b, c, d, e].map((t) => t.buffer);
    expect(new Set(buffers.slice(0, 3)).size, 'a, b and c are live at once and need three buffers').toBe(3);
    expect(d.buffer).toBe(b.buffer);
    // a now stays live: 0: 16; 1: 288; 2: a + b + c + e = 304, then b goes; 3: a + c + e + d = 304.
    expect(program.transientBytes).toBe(304);
    gpu.run(program.dispatches);
    expect([...(await gpu.read(a.buffer!, 4))]).toEqual([...pv].map((v) => 2 * v));
    expect([...(await gpu.read(d.buffer!, 4))]).toEqual([...pv].map((v) => 8 * v + 1));
  });

  it('accumulates the gradient of a tensor used twice: x feeding two rmsnorms, and s added to itself', async () => {
    const gpu = await testGpu();
    const [N, C, eps] = [3, 10, 1e-5];
    const rng = mulberry32(5);
    const pv = f32(randn(rng, N * C, 2)), w1 = f32(randn(rng, C, 0.3).map((v) => v + 1)), w2 = f32(randn(rng, C, 0.3).map((v) => v - 1));
    const ds = f32(randn(rng, N * C));
    const up = (name: string, a: Float64Array) => gpu.upload(`tape.test.${name}`, new Float32Array(a));

    const tape = new Tape(gpu);
    const p = tape.persistent('p', [N, C], up('p', pv), true);
    const zero = tape.persistent('zero', [N, C], up('zero', new Float64Array(N * C)));
    const x = add(tape, 'x', p, zero); // virtual, so its gradient is first written, then accumulated
    const y1 = rmsnorm(tape, 'norm1', x, tape.persistent('w1', [C], up('w1', w1)), eps);
    const y2 = rmsnorm(tape, 'norm2', x, tape.persistent('w2', [C], up('w2', w2)), eps);
    const s = add(tape, 's', y1, y2);
    const t = add(tape, 't', s, s); // s used twice by one op: dt flows into ds twice
    tape.seedGrad(t, up('dt', ds));
    tape.backward();
    const dp = tape.grad(p).buffer!;
    gpu.run([fill(gpu, 'tape.test.zero_dp', N * C, dp), ...tape.compile().dispatches]);

    const dy = ds.map((v) => 2 * v);
    const back = (w: Float64Array) => ref.rmsnormBackward(pv, w, ref.rmsnormForward(pv, w, N, C, eps).rstd, dy, N, C).dx;
    const want = ref.residualAdd(back(w1), back(w2));
    const diff = relMaxDiff(await gpu.read(dp, N * C), want);
    expect(diff, `dp maxdiff ${diff}`).toBeLessThan(1e-5);
  });

  it('runs a training step as one command buffer (plus the read-back of the loss)', async () => {
    const gpu = await testGpu();
    const { config, weights } = await loadModelDir(writeTinyModel(2));
    const adapter = { r: 2, loraAlpha: 4, loraDropout: 0.1, targetModules: ['q_proj' as const, 'down_proj' as const], useRslora: false, baseModel: 'tiny' };
    const model = createModel(gpu, config, weights);
    model.setAdapter(adapter, initLora(config, adapter, 1));
    const trainer = new Trainer(model, 2, 6, DEFAULT_OPTIMIZER);
    const ids = Int32Array.from({ length: 12 }, (_, i) => (i * 5) % config.vocab);
    await trainer.step(ids); // the first step may compile pipelines; count a later one
    const submit = vi.spyOn(gpu.device.queue, 'submit');
    const encoders = vi.spyOn(gpu.device, 'createCommandEncoder');
    const loss = await trainer.step(ids);
    expect(Number.isFinite(loss)).toBe(true);
    expect(encoders.mock.calls.map(([desc]) => desc?.label)).toEqual(['train.step', 'train.loss_sum.readback']);
    expect(submit.mock.calls.map(([buffers]) => [...buffers].length)).toEqual([1, 1]);
    submit.mockRestore();
    encoders.mockRestore();
  }, 600_000); // compiling every pipeline of the model on SwiftShader takes most of a minute
});
