// Checks of the float64 reference ops: hand-computed forward values, and a central
// finite-difference check (step 1e-6) of every backward, including whole-model LoRA gradients.
import { describe, expect, it } from 'vitest';
import { mulberry32, randn, randint } from './rng';
import {
  adamwStep,
  attentionBackward,
  attentionForward,
  clipGradNorm,
  crossEntropyBackward,
  crossEntropyForward,
  embeddingBackward,
  embeddingForward,
  linearBackward,
  linearForward,
  llamaLoss,
  llamaLossAndLoraGrads,
  LORA_TARGETS,
  loraLinearBackward,
  loraLinearForward,
  matmulNN,
  matmulNT,
  matmulTN,
  randomRefModel,
  refLoraShapes,
  residualAdd,
  rmsnormBackward,
  rmsnormForward,
  ropeBackward,
  ropeForward,
  sgdStep,
  swigluBackward,
  swigluForward,
  type RefConfig,
  type RefModel,
} from './ops';

const FD_STEP = 1e-6;
const RTOL = 1e-6;

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Central finite differences of scalar f with respect to every entry of `param` (perturbed in place, restored). */
function numericGrad(f: () => number, param: Float64Array, h = FD_STEP): Float64Array {
  const g = new Float64Array(param.length);
  for (let i = 0; i < param.length; i++) {
    const orig = param[i];
    param[i] = orig + h;
    const fp = f();
    param[i] = orig - h;
    const fm = f();
    param[i] = orig;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/**
 * Normwise relative comparison: max|analytic − numeric| / max|numeric| ≤ rtol. Reports the max
 * difference, where it is, and both values on failure.
 */
function expectGradClose(name: string, analytic: Float64Array, numeric: Float64Array, rtol = RTOL): void {
  expect(analytic.length, `${name}: length`).toBe(numeric.length);
  let maxDiff = 0;
  let at = 0;
  let scale = 0;
  for (let i = 0; i < numeric.length; i++) {
    const d = Math.abs(analytic[i] - numeric[i]);
    if (d > maxDiff || Number.isNaN(d)) {
      maxDiff = d;
      at = i;
    }
    scale = Math.max(scale, Math.abs(numeric[i]), Math.abs(analytic[i]));
  }
  const rel = maxDiff / Math.max(scale, 1e-12);
  const msg =
    `${name}: max |analytic - numeric| = ${maxDiff.toExponential(3)} at [${at}] ` +
    `(analytic ${analytic[at]}, numeric ${numeric[at]}), max |grad| = ${scale.toExponential(3)}, ` +
    `relative ${rel.toExponential(3)} > ${rtol}`;
  expect(scale, `${name}: gradient is identically zero, the check would be vacuous`).toBeGreaterThan(0);
  if (!(rel <= rtol)) throw new Error(msg);
}

function expectArrayClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-12): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= tol * Math.max(1, Math.abs(expected[i])))) {
      throw new Error(`index ${i}: got ${actual[i]}, expected ${expected[i]} (tol ${tol})`);
    }
  }
}

const f64 = (xs: number[]) => Float64Array.from(xs);

describe('matmul helpers', () => {
  it('matmulNT / matmulNN / matmulTN by hand', () => {
    const a = f64([1, 2, 3, 4]); // [[1,2],[3,4]]
    const b = f64([5, 6, 7, 8]); // [[5,6],[7,8]]
    expectArrayClose(matmulNT(a, b, 2, 2, 2), [17, 23, 39, 53]);
    expectArrayClose(matmulNN(a, b, 2, 2, 2), [19, 22, 43, 50]);
    expectArrayClose(matmulTN(a, b, 2, 2, 2), [26, 30, 38, 44]);
    // Non-square: [1,3]·[2,3]ᵀ.
    expectArrayClose(matmulNT(f64([1, 2, 3]), f64([1, 0, 0, 0, 1, 1]), 1, 2, 3), [1, 5]);
  });
});

describe('linear', () => {
  it('backward matches finite differences', () => {
    const rng = mulberry32(1);
    const [N, inF, outF] = [3, 5, 4];
    const x = randn(rng, N * inF, 1);
    const W = randn(rng, outF * inF, 1);
    const bias = randn(rng, outF, 1);
    const R = randn(rng, N * outF, 1);
    const L = () => dot(linearForward(x, W, bias, N, inF, outF), R);
    const g = linearBackward(x, W, R, N, inF, outF);
    expectGradClose('dx', g.dx, numericGrad(L, x));
    expectGradClose('dW', g.dW, numericGrad(L, W));
    expectGradClose('dbias', g.dbias, numericGrad(L, bias));
  });
});

describe('loraLinear', () => {
  it('worked example: W = I4, x = [1,2,3,4], alpha = 4, r = 2 → y = [9,14,11,16]', () => {
    const W = f64([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
    const A = f64([1, 0, 1, 0, 0, 1, 0, 1]);
    const B = f64([1, 0, 0, 1, 1, 0, 0, 1]);
    const { y, u } = loraLinearForward({ x: f64([1, 2, 3, 4]), W, A, B, N: 1, inF: 4, outF: 4, r: 2, scale: 4 / 2 });
    expectArrayClose(u, [4, 6]);
    expectArrayClose(y, [9, 14, 11, 16]);
    // With a bias.
    const yb = loraLinearForward({ x: f64([1, 2, 3, 4]), W, bias: f64([1, -1, 0, 0.5]), A, B, N: 1, inF: 4, outF: 4, r: 2, scale: 2 }).y;
    expectArrayClose(yb, [10, 13, 11, 16.5]);
  });

  it('equals a linear layer with merged weight W + scale·B·A', () => {
    const rng = mulberry32(2);
    const [N, inF, outF, r, scale] = [3, 6, 5, 2, 1.5];
    const x = randn(rng, N * inF, 1);
    const W = randn(rng, outF * inF, 1);
    const A = randn(rng, r * inF, 1);
    const B = randn(rng, outF * r, 1);
    const BA = matmulNN(B, A, outF, inF, r);
    const merged = W.map((w, i) => w + scale * BA[i]);
    expectArrayClose(loraLinearForward({ x, W, A, B, N, inF, outF, r, scale }).y, linearForward(x, merged, undefined, N, inF, outF), 1e-12);
  });

  it('backward matches finite differences', () => {
    const rng = mulberry32(3);
    const [N, inF, outF, r, scale] = [4, 6, 5, 3, 16 / 3];
    const x = randn(rng, N * inF, 1);
    const W = randn(rng, outF * inF, 1);
    const bias = randn(rng, outF, 1);
    const A = randn(rng, r * inF, 1);
    const B = randn(rng, outF * r, 1);
    const R = randn(rng, N * outF, 1);
    const L = () => dot(loraLinearForward({ x, W, bias, A, B, N, inF, outF, r, scale }).y, R);
    const { u } = loraLinearForward({ x, W, bias, A, B, N, inF, outF, r, scale });
    const g = loraLinearBackward({ x, W, A, B, u, dy: R, N, inF, outF, r, scale });
    expectGradClose('dx', g.dx, numericGrad(L, x));
    expectGradClose('dA', g.dA, numericGrad(L, A));
    expectGradClose('dB', g.dB, numericGrad(L, B));
    expectGradClose('dbias', g.dbias, numericGrad(L, bias));
  });
});

describe('embedding', () => {
  it('forward gathers rows', () => {
    const table = f64([0, 1, 10, 11, 20, 21]); // V=3, C=2
    expectArrayClose(embeddingForward([2, 0, 2], table, 2), [20, 21, 0, 1, 20, 21]);
    expectArrayClose(embeddingForward(Int32Array.from([1]), table, 2), [10, 11]);
  });

  it('backward accumulates repeated ids and matches finite differences', () => {
    const dt = embeddingBackward([2, 0, 2], f64([1, 2, 3, 4, 5, 6]), 4, 2);
    expectArrayClose(dt, [3, 4, 0, 0, 6, 8, 0, 0]);
    const rng = mulberry32(4);
    const [V, C] = [5, 3];
    const ids = Int32Array.from([1, 3, 1, 0, 1, 4]);
    const table = randn(rng, V * C, 1);
    const R = randn(rng, ids.length * C, 1);
    const L = () => dot(embeddingForward(ids, table, C), R);
    const g = embeddingBackward(ids, R, V, C);
    expectGradClose('dtable', g, numericGrad(L, table));
  });
});

describe('rmsnorm', () => {
  it('forward by hand: [3,4], w = 1, eps = 0 → [3,4]/sqrt(12.5)', () => {
    const { y, rstd } = rmsnormForward(f64([3, 4]), f64([1, 1]), 1, 2, 0);
    expectArrayClose(y, [3 / Math.sqrt(12.5), 4 / Math.sqrt(12.5)]);
    expectArrayClose(rstd, [1 / Math.sqrt(12.5)]);
    const y2 = rmsnormForward(f64([3, 4, 1, 1]), f64([2, 0.5]), 2, 2, 1).y;
    expectArrayClose(y2, [(3 / Math.sqrt(13.5)) * 2, (4 / Math.sqrt(13.5)) * 0.5, (1 / Math.sqrt(2)) * 2, (1 / Math.sqrt(2)) * 0.5]);
  });

  it('backward matches finite differences', () => {
    const rng = mulberry32(5);
    const [N, C, eps] = [3, 7, 1e-5];
    const x = randn(rng, N * C, 1);
    const w = randn(rng, C, 1);
    const R = randn(rng, N * C, 1);
    const L = () => dot(rmsnormForward(x, w, N, C, eps).y, R);
    const { rstd } = rmsnormForward(x, w, N, C, eps);
    const g = rmsnormBackward(x, w, rstd, R, N, C);
    expectGradClose('dx', g.dx, numericGrad(L, x));
    expectGradClose('dw', g.dw, numericGrad(L, w));
  });
});

describe('rope', () => {
  it('position 0 is the identity; D = 2 at position t rotates by angle t', () => {
    // B=1, T=3, H=1, D=2: inv_freq = [1], angle = t.
    const x = f64([1, 2, 1, 2, 1, 2]);
    const out = ropeForward(x, 1, 3, 1, 2, 10000);
    const exp: number[] = [];
    for (let t = 0; t < 3; t++) exp.push(1 * Math.cos(t) - 2 * Math.sin(t), 2 * Math.cos(t) + 1 * Math.sin(t));
    expectArrayClose(out, exp);
    expectArrayClose(out.subarray(0, 2), [1, 2]);
  });

  it('matches the transformers formula x·cos + rotate_half(x)·sin with duplicated cos/sin', () => {
    const rng = mulberry32(6);
    const [B, T, H, D, theta] = [2, 4, 3, 6, 500];
    const x = randn(rng, B * T * H * D, 1);
    const out = ropeForward(x, B, T, H, D, theta);
    const half = D / 2;
    const exp = new Float64Array(x.length);
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T; t++)
        for (let h = 0; h < H; h++) {
          const base = ((b * T + t) * H + h) * D;
          const head = Array.from(x.subarray(base, base + D));
          const rot = [...head.slice(half).map((v) => -v), ...head.slice(0, half)];
          for (let j = 0; j < D; j++) {
            const i = j % half; // emb = cat(freqs, freqs)
            const ang = t / Math.pow(theta, (2 * i) / D);
            exp[base + j] = head[j] * Math.cos(ang) + rot[j] * Math.sin(ang);
          }
        }
    expectArrayClose(out, exp);
  });

  it('backward matches finite differences', () => {
    const rng = mulberry32(7);
    const [B, T, H, D, theta] = [2, 5, 2, 4, 10000];
    const x = randn(rng, B * T * H * D, 1);
    const R = randn(rng, x.length, 1);
    const L = () => dot(ropeForward(x, B, T, H, D, theta), R);
    expectGradClose('dx', ropeBackward(R, B, T, H, D, theta), numericGrad(L, x));
  });
});

describe('attention', () => {
  it('T = 1 returns v (per kv group); probs rows sum to 1 and are causal', () => {
    const q = f64([1, 2, 3, 4]); // H=2, D=2
    const k = f64([5, 6]); // KV=1
    const v = f64([7, 8]);
    const { out, probs } = attentionForward({ q, k, v, B: 1, T: 1, H: 2, KV: 1, D: 2 });
    expectArrayClose(out, [7, 8, 7, 8]);
    expectArrayClose(probs, [1, 1]);

    const rng = mulberry32(8);
    const [B, T, H, KV, D] = [2, 4, 4, 2, 3];
    const r = attentionForward({
      q: randn(rng, B * T * H * D, 1),
      k: randn(rng, B * T * KV * D, 1),
      v: randn(rng, B * T * KV * D, 1),
      B,
      T,
      H,
      KV,
      D,
    });
    for (let row = 0; row < B * H * T; row++) {
      const t = row % T;
      let s = 0;
      for (let j = 0; j < T; j++) {
        s += r.probs[row * T + j];
        if (j > t) expect(r.probs[row * T + j]).toBe(0);
      }
      expect(Math.abs(s - 1)).toBeLessThan(1e-12);
    }
  });

  it('hand example: T = 2, one head, D = 1', () => {
    // scores at t=1: [q1·k0, q1·k1] = [1·0, 1·ln 3] → probs [1/4, 3/4].
    const { out, probs } = attentionForward({ q: f64([0.5, 1]), k: f64([0, Math.log(3)]), v: f64([4, 8]), B: 1, T: 2, H: 1, KV: 1, D: 1 });
    expectArrayClose(probs, [1, 0, 0.25, 0.75]);
    expectArrayClose(out, [4, 7]);
  });

  it('grouped-query: query head h uses kv head floor(h / (H/KV)) (same as repeating kv heads)', () => {
    const rng = mulberry32(9);
    const [B, T, H, KV, D] = [1, 3, 6, 2, 2];
    const q = randn(rng, B * T * H * D, 1);
    const k = randn(rng, B * T * KV * D, 1);
    const v = randn(rng, B * T * KV * D, 1);
    const rep = (x: Float64Array) => {
      const out = new Float64Array(B * T * H * D);
      for (let n = 0; n < B * T; n++)
        for (let h = 0; h < H; h++)
          for (let d = 0; d < D; d++) out[(n * H + h) * D + d] = x[(n * KV + Math.floor(h / (H / KV))) * D + d];
      return out;
    };
    const gqa = attentionForward({ q, k, v, B, T, H, KV, D });
    const mha = attentionForward({ q, k: rep(k), v: rep(v), B, T, H, KV: H, D });
    expectArrayClose(gqa.out, mha.out);
    expectArrayClose(gqa.probs, mha.probs);
  });

  it('backward matches finite differences (GQA)', () => {
    const rng = mulberry32(10);
    const [B, T, H, KV, D] = [2, 4, 4, 2, 3];
    const q = randn(rng, B * T * H * D, 1);
    const k = randn(rng, B * T * KV * D, 1);
    const v = randn(rng, B * T * KV * D, 1);
    const R = randn(rng, B * T * H * D, 1);
    const L = () => dot(attentionForward({ q, k, v, B, T, H, KV, D }).out, R);
    const { probs } = attentionForward({ q, k, v, B, T, H, KV, D });
    const g = attentionBackward({ q, k, v, probs, dout: R, B, T, H, KV, D });
    expectGradClose('dq', g.dq, numericGrad(L, q));
    expectGradClose('dk', g.dk, numericGrad(L, k));
    expectGradClose('dv', g.dv, numericGrad(L, v));
  });
});

describe('swiglu', () => {
  it('forward by hand', () => {
    const sig = (z: number) => 1 / (1 + Math.exp(-z));
    expectArrayClose(swigluForward(f64([0, 1, -2]), f64([5, 2, 3])), [0, 2 * sig(1), -2 * sig(-2) * 3]);
  });

  it('backward matches finite differences', () => {
    const rng = mulberry32(11);
    const n = 3 * 8;
    const gate = randn(rng, n, 2);
    const up = randn(rng, n, 1);
    const R = randn(rng, n, 1);
    const L = () => dot(swigluForward(gate, up), R);
    const g = swigluBackward(gate, up, R);
    expectGradClose('dgate', g.dgate, numericGrad(L, gate));
    expectGradClose('dup', g.dup, numericGrad(L, up));
  });
});

describe('cross entropy', () => {
  it('forward by hand; ignored rows do not count', () => {
    const V = 4;
    // Row 0: uniform → log 4. Row 1: ignored. Row 2: logits [ln1, ln2, ln3, ln4] target 3 → −ln(4/10).
    const logits = f64([0, 0, 0, 0, 9, -3, 2, 1, 0, Math.log(2), Math.log(3), Math.log(4)]);
    const targets = Int32Array.from([1, -100, 3]);
    const { loss, probs, count } = crossEntropyForward(logits, targets, 3, V);
    expect(count).toBe(2);
    expect(Math.abs(loss - (Math.log(4) - Math.log(0.4)) / 2)).toBeLessThan(1e-12);
    expectArrayClose(probs.subarray(8, 12), [0.1, 0.2, 0.3, 0.4]);
    const d = crossEntropyBackward(probs, targets, 3, V);
    expectArrayClose(d, [0.125, 0.125 - 0.5, 0.125, 0.125, 0, 0, 0, 0, 0.05, 0.1, 0.15, 0.2 - 0.5]);
  });

  it('backward matches finite differences', () => {
    const rng = mulberry32(12);
    const [N, V] = [5, 7];
    const logits = randn(rng, N * V, 2);
    const targets = Int32Array.from([3, -100, 0, 6, -100]);
    const L = () => crossEntropyForward(logits, targets, N, V).loss;
    const { probs } = crossEntropyForward(logits, targets, N, V);
    expectGradClose('dlogits', crossEntropyBackward(probs, targets, N, V), numericGrad(L, logits));
  });
});

describe('residual and optimizers', () => {
  it('residualAdd', () => {
    expectArrayClose(residualAdd(f64([1, 2, 3]), f64([10, 20, 30])), [11, 22, 33]);
  });

  it('sgdStep returns a fresh array', () => {
    const p = f64([1, 2]);
    const out = sgdStep(p, f64([10, -10]), 0.1);
    expectArrayClose(out, [0, 3]);
    expectArrayClose(p, [1, 2]);
  });

  it('adamwStep step 1: moves each parameter by ≈ lr·sign(g) after decoupled decay', () => {
    const hp = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
    const p = f64([1, -2, 0.5]);
    const g = f64([0.3, -4, 0]);
    const r = adamwStep(p, g, new Float64Array(3), new Float64Array(3), 1, hp);
    expectArrayClose(r.m, [0.03, -0.4, 0]);
    expectArrayClose(r.v, [0.001 * 0.09, 0.001 * 16, 0]);
    const decay = 1 - 0.1 * 0.01;
    expectArrayClose(r.p, [1 * decay - (0.1 * 0.3) / (0.3 + 1e-8), -2 * decay + (0.1 * 4) / (4 + 1e-8), 0.5 * decay]);
    expectArrayClose(p, [1, -2, 0.5]); // inputs untouched
  });

  it('adamwStep step 3 with existing moments, by the torch formula', () => {
    const hp = { lr: 0.01, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 };
    const r = adamwStep(f64([2]), f64([0.5]), f64([0.2]), f64([0.04]), 3, hp);
    const m = 0.8 * 0.2 + 0.2 * 0.5; // 0.26
    const v = 0.95 * 0.04 + 0.05 * 0.25; // 0.0505
    const bc1 = 1 - 0.8 ** 3;
    const bc2 = 1 - 0.95 ** 3;
    const p = 2 * (1 - 0.01 * 0.1) - (0.01 / bc1) * (m / (Math.sqrt(v) / Math.sqrt(bc2) + 1e-6));
    expectArrayClose(r.m, [m]);
    expectArrayClose(r.v, [v]);
    expectArrayClose(r.p, [p]);
  });

  it('clipGradNorm scales only when the norm exceeds maxNorm', () => {
    const a = f64([3]);
    const b = f64([0, 4]);
    const r = clipGradNorm([a, b], 1);
    expect(r.totalNorm).toBe(5);
    const c = 1 / (5 + 1e-6);
    expectArrayClose(r.grads[0], [3 * c]);
    expectArrayClose(r.grads[1], [0, 4 * c]);
    expectArrayClose(a, [3]); // inputs untouched
    const r2 = clipGradNorm([a, b], 10);
    expectArrayClose(r2.grads[0], [3]);
    expectArrayClose(r2.grads[1], [0, 4]);
    expect(r2.grads[0]).not.toBe(a);
  });
});

describe('whole model LoRA gradients', () => {
  const baseCfg: RefConfig = {
    vocab: 20,
    hidden: 16,
    heads: 4,
    kvHeads: 2,
    headDim: 4,
    intermediate: 24,
    layers: 2,
    rmsEps: 1e-6,
    ropeTheta: 10000,
    tied: false,
    attnBias: false,
  };
  const [B, T] = [2, 5];

  function build(cfg: RefConfig, targets: string[], seed: number): { model: RefModel; ids: Int32Array } {
    const rng = mulberry32(seed);
    const model = randomRefModel(cfg, { r: 2, alpha: 4, targets }, (n, s) => randn(rng, n, s), 0.3, 0.3);
    const ids = randint(rng, B * T, cfg.vocab);
    return { model, ids };
  }

  function checkAll(model: RefModel, ids: Int32Array): void {
    const { loss, grads } = llamaLossAndLoraGrads(model, ids, B, T);
    expect(Math.abs(loss - llamaLoss(model, ids, B, T))).toBe(0);
    expect([...grads.keys()].sort()).toEqual([...model.lora.weights.keys()].sort());
    for (const [name, param] of model.lora.weights) {
      const numeric = numericGrad(() => llamaLoss(model, ids, B, T), param);
      expectGradClose(name, grads.get(name)!, numeric);
    }
  }

  for (const variant of [
    { name: 'untied, no bias', tied: false, attnBias: false, seed: 21 },
    { name: 'tied + attention bias', tied: true, attnBias: true, seed: 22 },
    { name: 'Qwen3 q/k norm, head dim 6 ≠ hidden / heads', tied: true, attnBias: false, qkNorm: true, headDim: 6, seed: 25 },
  ]) {
    it(`all seven targets: ${variant.name}`, () => {
      const cfg = { ...baseCfg, tied: variant.tied, attnBias: variant.attnBias, qkNorm: variant.qkNorm, headDim: variant.headDim ?? baseCfg.headDim };
      const { model, ids } = build(cfg, [...LORA_TARGETS], variant.seed);
      expect(model.weights.has('lm_head.weight')).toBe(!variant.tied);
      expect(model.weights.has('model.layers.1.self_attn.k_proj.bias')).toBe(variant.attnBias);
      expect(model.weights.has('model.layers.1.self_attn.o_proj.bias')).toBe(false);
      expect(model.weights.get('model.layers.1.self_attn.k_norm.weight')?.length).toBe(variant.qkNorm ? variant.headDim : undefined);
      const loss = llamaLoss(model, ids, B, T);
      expect(Number.isFinite(loss)).toBe(true);
      expect(loss).toBeGreaterThan(0);
      checkAll(model, ids);
    });
  }

  it('subset of targets (q_proj, v_proj) only produces those gradients', () => {
    const { model, ids } = build(baseCfg, ['q_proj', 'v_proj'], 23);
    expect([...model.lora.weights.keys()].sort()).toEqual([...refLoraShapes(baseCfg, 2, ['q_proj', 'v_proj']).keys()].sort());
    checkAll(model, ids);
  });

  it('LoRA with B = 0 leaves the base model loss unchanged; loss of a zero model is ln V', () => {
    const { model, ids } = build({ ...baseCfg, tied: true, attnBias: true }, [...LORA_TARGETS], 24);
    const zeroB: RefModel = {
      ...model,
      lora: {
        ...model.lora,
        weights: new Map([...model.lora.weights].map(([k, v]) => [k, k.endsWith('.B') ? new Float64Array(v.length) : v])),
      },
    };
    const noLora: RefModel = { ...model, lora: { ...model.lora, targets: [], weights: new Map() } };
    expect(Math.abs(llamaLoss(zeroB, ids, B, T) - llamaLoss(noLora, ids, B, T))).toBeLessThan(1e-12);
    // Zero head weights → uniform predictions → loss = ln V exactly.
    const zeroHead: RefModel = { ...noLora, weights: new Map(noLora.weights) };
    zeroHead.weights.set('model.norm.weight', new Float64Array(baseCfg.hidden));
    expect(Math.abs(llamaLoss(zeroHead, ids, B, T) - Math.log(baseCfg.vocab))).toBeLessThan(1e-12);
  });
});
