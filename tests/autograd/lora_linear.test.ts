// The fused LoRA linear (src/autograd/lora_linear.ts on shaders/matmul.wgsl) on real WGSL: forward and the three adapter gradients
// against the float64 CPU reference on random shapes (odd ones included), against finite differences,
// against the PyTorch fixture, and the seeds' worked examples.
//
// Tolerance: 2e-5 of the largest magnitude (relMaxDiff). fp32 accumulation over K ≤ 130 terms of
// unit-scale products leaves ~1e-6 relative error; 2e-5 leaves room for SwiftShader's and real GPUs'
// differing fma contraction without hiding a wrong index (which gives errors of order 1).

import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { testGpu, relMaxDiff } from '../gpu/test-gpu';
import { loraLinearBackward, loraLinearForward, type LoraLinearDims } from '../../src/autograd/lora_linear';
import type { Gpu } from '../../src/gpu/gpu';
import * as ref from '../reference/ops';
import { mulberry32, randn } from '../reference/rng';

const TOL = 2e-5;

/** Round to f32 so the reference sees exactly what the GPU sees. */
const f32 = (a: ArrayLike<number>) => Float64Array.from(new Float32Array(a as ArrayLike<number>));

interface Case { x: Float64Array; W: Float64Array; bias?: Float64Array; A: Float64Array; B: Float64Array; dy: Float64Array; d: LoraLinearDims }

async function runGpu(gpu: Gpu, c: Case) {
  const { n, inF, outF, r } = c.d;
  const up = (name: string, a: ArrayLike<number>) => gpu.upload(`test.${name}`, new Float32Array(a as ArrayLike<number>));
  const x = up('x', c.x), W = up('W', c.W), A = up('A', c.A), B = up('B', c.B), dy = up('dy', c.dy);
  const bias = c.bias ? up('bias', c.bias) : undefined;
  const u = gpu.buffer('test.u', n * r * 4), y = gpu.buffer('test.y', n * outF * 4);
  const du = gpu.buffer('test.du', n * r * 4), dx = gpu.buffer('test.dx', n * inF * 4);
  // Parameter gradients accumulate (+=), so they start from explicit zeros.
  const dA = up('dA', new Float32Array(r * inF)), dB = up('dB', new Float32Array(outF * r));
  const bufs = { x, W, bias, A, B, u, y };
  gpu.run([...loraLinearForward(gpu, 'test', c.d, bufs), ...loraLinearBackward(gpu, 'test', c.d, bufs, { dy, du, dx, dA, dB })]);
  return { y: await gpu.read(y, n * outF), dx: await gpu.read(dx, n * inF), dA: await gpu.read(dA, r * inF), dB: await gpu.read(dB, outF * r) };
}

function randomCase(seed: number, n: number, inF: number, outF: number, r: number, alpha: number, withBias: boolean): Case {
  const rng = mulberry32(seed);
  return {
    x: f32(randn(rng, n * inF)), W: f32(randn(rng, outF * inF, 0.3)), A: f32(randn(rng, r * inF, 0.3)), B: f32(randn(rng, outF * r, 0.3)),
    bias: withBias ? f32(randn(rng, outF, 0.1)) : undefined, dy: f32(randn(rng, n * outF)),
    d: { n, inF, outF, r, scale: alpha / r },
  };
}

function reference(c: Case) {
  const { n: N, inF, outF, r, scale } = c.d;
  const fwd = ref.loraLinearForward({ x: c.x, W: c.W, bias: c.bias, A: c.A, B: c.B, N, inF, outF, r, scale });
  const bwd = ref.loraLinearBackward({ x: c.x, W: c.W, A: c.A, B: c.B, u: fwd.u, dy: c.dy, N, inF, outF, r, scale });
  return { y: fwd.y, dx: bwd.dx, dA: bwd.dA, dB: bwd.dB };
}

describe('lora_linear on WebGPU', () => {
  // (rows N, in, out, rank r): odd sizes, sizes just past the 64-wide tile, r from 1 to 64, and in ≠ out
  // as in a GQA model's k/v projections (576 → 192 in SmolLM2, scaled down here).
  const shapes: [number, number, number, number][] = [
    [1, 1, 1, 1], [3, 7, 5, 1], [17, 33, 65, 8], [70, 65, 130, 64], [5, 96, 32, 16], [2, 130, 3, 2], [65, 64, 64, 4],
  ];
  for (const [n, inF, outF, r] of shapes) {
    it(`matches the float64 reference for N=${n} in=${inF} out=${outF} r=${r}`, async () => {
      const gpu = await testGpu();
      const c = randomCase(n * 1000 + inF * 10 + r, n, inF, outF, r, 2 * r, n % 2 === 1);
      const got = await runGpu(gpu, c);
      const want = reference(c);
      for (const k of ['y', 'dx', 'dA', 'dB'] as const) {
        const d = relMaxDiff(got[k], want[k]);
        expect(d, `${k}: maxdiff ${d}`).toBeLessThan(TOL);
      }
    });
  }

  it('gradients agree with central finite differences of the float64 loss Σ y·dy', async () => {
    const gpu = await testGpu();
    const c = randomCase(7, 3, 5, 4, 2, 3, true);
    const got = await runGpu(gpu, c);
    const { n: N, inF, outF, r, scale } = c.d;
    const loss = (cc: Case) => {
      const y = ref.loraLinearForward({ x: cc.x, W: cc.W, bias: cc.bias, A: cc.A, B: cc.B, N, inF, outF, r, scale }).y;
      return y.reduce((s, v, i) => s + v * cc.dy[i], 0);
    };
    const h = 1e-6;
    for (const k of ['x', 'A', 'B'] as const) {
      const g = got[k === 'x' ? 'dx' : k === 'A' ? 'dA' : 'dB'];
      const numeric = new Float64Array(c[k].length);
      for (let i = 0; i < c[k].length; i++) {
        const plus = { ...c, [k]: c[k].slice() }, minus = { ...c, [k]: c[k].slice() };
        plus[k][i] += h; minus[k][i] -= h;
        numeric[i] = (loss(plus) - loss(minus)) / (2 * h);
      }
      // The finite differences are float64 (error ~1e-9); the GPU side is fp32.
      const d = relMaxDiff(g, numeric);
      expect(d, `d${k}: maxdiff ${d}`).toBeLessThan(TOL);
    }
  });

  it('matches the PyTorch fixture (tests/fixtures/lora_linear)', async () => {
    const gpu = await testGpu();
    const fx = JSON.parse(readFileSync(new URL('../fixtures/lora_linear/expected.json', import.meta.url), 'utf8'));
    const s = fx.shapes;
    const c: Case = {
      ...fx.inputs, x: Float64Array.from(fx.inputs.x), dy: Float64Array.from(fx.inputs.dy),
      d: { n: s.x[0], inF: s.x[1], outF: s.W[0], r: fx.r, scale: fx.alpha / fx.r },
    };
    const got = await runGpu(gpu, c);
    for (const k of ['y', 'dx', 'dA', 'dB'] as const) {
      const d = relMaxDiff(got[k], fx[k]);
      expect(d, `${k}: maxdiff ${d}`).toBeLessThan(TOL);
    }
  });

  it('reproduces the worked example W = I₄, α = 4, r = 2 → y = [9, 14, 11, 16] exactly', async () => {
    const gpu = await testGpu();
    const got = await runGpu(gpu, {
      W: Float64Array.from([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]), x: Float64Array.from([1, 2, 3, 4]),
      A: Float64Array.from([1, 0, 1, 0, 0, 1, 0, 1]), B: Float64Array.from([1, 0, 0, 1, 1, 0, 0, 1]), dy: new Float64Array(4),
      d: { n: 1, inF: 4, outF: 4, r: 2, scale: 4 / 2 },
    });
    expect([...got.y]).toEqual([9, 14, 11, 16]);
  });

  it('reproduces the rank-1 worked example: W + [1,0,−1,2]ᵀ·[2,−1,3] with α = r', async () => {
    const gpu = await testGpu();
    // With x = I₃ the rows of y are the columns of W + ΔW, i.e. y = (W + ΔW)ᵀ.
    const got = await runGpu(gpu, {
      W: Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), x: Float64Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1]),
      A: Float64Array.from([2, -1, 3]), B: Float64Array.from([1, 0, -1, 2]), dy: new Float64Array(12),
      d: { n: 3, inF: 3, outF: 4, r: 1, scale: 1 },
    });
    const merged = [0, 1, 2, 3].map((o) => [0, 1, 2].map((i) => got.y[i * 4 + o]));
    expect(merged).toEqual([[3, 1, 6], [4, 5, 6], [5, 9, 6], [14, 9, 18]]);
  });

  it('refuses rank 0 with a message that says what to use', async () => {
    const gpu = await testGpu();
    const b = gpu.buffer('test.dummy', 16);
    expect(() => loraLinearForward(gpu, 'test', { n: 1, inF: 4, outF: 4, r: 0, scale: 1 }, { x: b, W: b, A: b, B: b, u: b, y: b }))
      .toThrow(/rank r must be a positive integer \(got 0\)/);
  });
});

describe('one-off evaluation returns only its own buffers to the pool', () => {
  it('gives the same answer on repeated calls (a storage buffer released twice would be handed out twice)', async () => {
    const { runLoraLinear } = await import('../../src/autograd/lora_linear');
    const gpu = await testGpu();
    const c = randomCase(11, 4, 16, 16, 4, 8, true);
    const want = reference(c);
    const data = { x: new Float32Array(c.x), W: new Float32Array(c.W), A: new Float32Array(c.A), B: new Float32Array(c.B), bias: new Float32Array(c.bias!) };
    for (let i = 0; i < 6; i++) {
      const { y } = await runLoraLinear(gpu, c.d, data);
      const d = relMaxDiff(y, want.y);
      expect(d, `call ${i}: maxdiff ${d}`).toBeLessThan(TOL);
    }
  });
});
