// LoRA dropout: the kernel's mask against its CPU twin (dropoutScale), the step counter advancing on the
// GPU, and the model's LoRA linear with dropout (src/autograd/lora_linear.ts `linear`) against the float64 reference
// with the same mask: y = x·Wᵀ + b + s·((x⊙m)·Aᵀ)·Bᵀ, dx = dy·W + m⊙(du·A), dA = duᵀ·(x⊙m), dB = s·dyᵀ·u.
// Tolerance 2e-5 relative, as for the fused kernel (fp32 against float64).

import { describe, expect, it } from 'vitest';
import { testGpu, relMaxDiff } from '../gpu/test-gpu';
import { dropoutBackward, dropoutForward, dropoutScale, rngAdvance } from '../../src/autograd/dropout';
import { fill } from '../../src/autograd/elementwise';
import { Tape } from '../../src/autograd/tape';
import { labelHash, linear } from '../../src/autograd/lora_linear';
import { loraScale } from '../../src/io/peft';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';

describe('dropout', () => {
  it('masks exactly as dropoutScale says, keeps about 1 − p, and reuses the mask in the backward', async () => {
    const gpu = await testGpu();
    const n = 4099, p = 0.3, seed = 1234;
    const x = Float32Array.from(randn(mulberry32(1), n));
    const counter = gpu.upload('t.counter', new Uint32Array([6]));
    const xb = gpu.upload('t.x', x), out = gpu.buffer('t.out', n * 4), dx = gpu.upload('t.dx', new Float32Array(n).fill(1));
    gpu.run([rngAdvance(gpu, 't', counter), dropoutForward(gpu, 't', n, p, seed, counter, xb, out), dropoutBackward(gpu, 't', n, p, seed, counter, xb, dx)]);
    const [got, grad, step] = [await gpu.read(out, n), await gpu.read(dx, n), new Uint32Array(await gpu.readBytes(counter, 4))[0]];
    expect(step).toBe(7);
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const s = dropoutScale(i, p, seed, 7);
      expect(got[i]).toBe(Math.fround(x[i] * s));
      expect(grad[i]).toBe(Math.fround(1 + Math.fround(x[i] * s)));
      if (s > 0) kept++;
    }
    // Binomial(4099, 0.7): standard deviation ≈ 29, so ±4σ ≈ ±0.03 of the fraction.
    expect(Math.abs(kept / n - 0.7)).toBeLessThan(0.03);
    // A different step gives a different mask.
    let same = 0;
    for (let i = 0; i < n; i++) if ((dropoutScale(i, p, seed, 7) > 0) === (dropoutScale(i, p, seed, 8) > 0)) same++;
    expect(same / n).toBeLessThan(0.7);
  });

  it("the model's LoRA linear with dropout matches the float64 reference with the same mask", async () => {
    const gpu = await testGpu();
    const [N, inF, outF, r, p, alpha] = [5, 13, 7, 3, 0.25, 6];
    const rng = mulberry32(42);
    const f32 = (a: Float64Array) => Float64Array.from(new Float32Array(a));
    const x = f32(randn(rng, N * inF)), W = f32(randn(rng, outF * inF, 0.3)), bias = f32(randn(rng, outF, 0.1));
    const A = f32(randn(rng, r * inF, 0.3)), B = f32(randn(rng, outF * r, 0.3)), dy = f32(randn(rng, N * outF));
    const up = (name: string, a: ArrayLike<number>) => gpu.upload(`t.${name}`, new Float32Array(a as ArrayLike<number>));

    const tape = new Tape(gpu);
    const tx = tape.persistent('x', [N, inF], up('x', x), true);
    const tA = tape.persistent('A', [r, inF], up('A', A), true), tB = tape.persistent('B', [outF, r], up('B', B), true);
    const counter = tape.persistent('counter', [1], gpu.upload('t.counter', new Uint32Array([3])));
    const adapter = { r, loraAlpha: alpha, loraDropout: p, targetModules: ['q_proj' as const], useRslora: false, baseModel: '' };
    const y = linear(tape, 'layer', tx, tape.persistent('W', [outF, inF], up('W', W)), tape.persistent('b', [outF], up('b', bias)),
      { A: tA, B: tB, scale: loraScale(adapter), dropout: adapter.loraDropout }, { counter, seed: 99 });
    tape.keep(y);
    tape.seedGrad(y, up('dy', dy));
    tape.backward();
    const grads = [tx, tA, tB].map((t) => tape.grad(t).buffer!);
    gpu.run([...grads.map((g, i) => fill(gpu, `zero${i}`, [tx, tA, tB][i].numel, g)), ...tape.compile().dispatches]);

    const seed = (99 ^ labelHash('layer')) >>> 0;
    const m = Float64Array.from({ length: N * inF }, (_, i) => dropoutScale(i, p, seed, 3));
    const xm = x.map((v, i) => v * m[i]);
    const scale = alpha / r;
    const lora = ref.loraLinearForward({ x: xm, W: new Float64Array(outF * inF), A, B, N, inF, outF, r, scale });
    const base = ref.linearForward(x, W, bias, N, inF, outF);
    const wantY = base.map((v, i) => v + lora.y[i]);
    const lb = ref.loraLinearBackward({ x: xm, W: new Float64Array(outF * inF), A, B, u: lora.u, dy, N, inF, outF, r, scale });
    const wantDx = ref.matmulNN(dy, W, N, inF, outF).map((v, i) => v + m[i] * lb.dx[i]);

    const check = (got: Float32Array, want: ArrayLike<number>, what: string) => {
      const d = relMaxDiff(got, want);
      expect(d, `${what}: maxdiff ${d}`).toBeLessThan(2e-5);
    };
    check(await gpu.read(y.buffer!, N * outF), wantY, 'y');
    check(await gpu.read(grads[0], N * inF), wantDx, 'dx');
    check(await gpu.read(grads[1], r * inF), lb.dA, 'dA');
    check(await gpu.read(grads[2], outF * r), lb.dB, 'dB');
    expect(m.some((v) => v === 0)).toBe(true);
  });
});
