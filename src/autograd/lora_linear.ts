// The fused LoRA linear y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ and its adapter-only backward (dx, dA, dB; the
// frozen W and bias get no gradient). It has no kernel of its own: every pass is one two-segment GEMM of the
// matmul stem (src/autograd/matmul.ts, shaders/matmul.wgsl):
//   forward   u  = x·Aᵀ                         P1 = x,  Q1 = A (TRANS_Q)
//             y  = x·Wᵀ + s·u·Bᵀ + bias         P1 = x,  Q1 = W, P2 = u, Q2 = B (TRANS_Q)
//   backward  du = s·dy·B                       P1 = dy, Q1 = B
//             dx = dy·W + du·A                  P1 = dy, Q1 = W, P2 = du, Q2 = A
//             dA += duᵀ·x                       P1 = du (TRANS_P), Q1 = x
//             dB += s·dyᵀ·u                     P1 = dy (TRANS_P), Q1 = u
// W never receives a gradient: it is frozen, so no dW pass exists.
// The builders make Dispatch records over buffers the caller owns; they encode nothing themselves. `linear`
// is the tape rule of every projection, plain (one GEMM) or with LoRA and PEFT's lora_dropout on the
// adapter's input, or with DoRA (its magnitude and norm are the dora stem's, src/autograd/dora.ts, composed
// here around the same GEMMs); `runLoraLinear` is a one-off eager evaluation for the calculator and the Teach panel.
//
// Shapes: N rows, IN input features, OUT output features, R rank.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import { gemm, type GemmFn } from './matmul';
import { matmul } from './matmul_fast';
import { dropoutBackward, dropoutForward } from './dropout';
import { doraBackward, doraForward, doraNorm } from './dora';
import type { Tape, Tensor } from './tape';

export interface LoraLinearDims {
  n: number; // N rows
  inF: number; // IN
  outF: number; // OUT
  r: number; // R
  scale: number; // s = α/r (α/√r with rsLoRA)
}

/** Checks dims, with messages a user can act on (the CLI calculator passes these through). */
export function checkLoraDims(d: LoraLinearDims): void {
  for (const [k, v] of [['rows', d.n], ['in_features', d.inF], ['out_features', d.outF]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer (got ${v})`);
  }
  if (!Number.isInteger(d.r) || d.r < 1) throw new RangeError(`LoRA rank r must be a positive integer (got ${d.r}): use r ≥ 1, typically 4–64`);
  if (!Number.isFinite(d.scale)) throw new RangeError(`LoRA scale α/r must be finite (got ${d.scale})`);
}

export interface LoraLinearBuffers {
  x: Binding; //    (N, IN)
  W: Binding; //    (OUT, IN) frozen
  bias?: Binding; // (OUT) frozen
  A: Binding; //    (R, IN)
  B: Binding; //    (OUT, R)
  u: Binding; //    (N, R) written by the forward, read by the backward
  y: Binding; //    (N, OUT)
  /** (N, IN) the adapter's input when it differs from x (LoRA dropout: dropout(x)); default x. */
  xLora?: Binding;
}

/** u = x·Aᵀ; y = x·Wᵀ + bias + s·u·Bᵀ. `mm`: the GEMM kernel (version 1 unless the caller picks another). */
export function loraLinearForward(gpu: Gpu, label: string, d: LoraLinearDims, b: LoraLinearBuffers, mm: GemmFn = gemm): Dispatch[] {
  checkLoraDims(d);
  return [
    mm(gpu, `${label}.down`, { M: d.n, N: d.r, K1: d.inF, p1: b.xLora ?? b.x, q1: b.A, transQ: true, c: b.u }),
    mm(gpu, `${label}.forward`, {
      M: d.n, N: d.outF, K1: d.inF, p1: b.x, q1: b.W,
      K2: d.r, p2: b.u, q2: b.B, alpha2: d.scale, bias: b.bias, transQ: true, c: b.y,
    }),
  ];
}

export interface LoraLinearGradBuffers {
  dy: Binding; // (N, OUT)
  du: Binding; // (N, R) scratch
  dx?: Binding; // (N, IN); omitted when x needs no gradient (e.g. it is the embedding output of a frozen table)
  dA: Binding; // (R, IN) accumulated into
  dB: Binding; // (OUT, R) accumulated into
}

/**
 * du = s·dy·B; dx = dy·W + du·A (overwritten, or accumulated when `accumulateDx`);
 * dA += duᵀ·x; dB += s·dyᵀ·u. Zero dA and dB before the first backward of a step.
 */
export function loraLinearBackward(
  gpu: Gpu, label: string, d: LoraLinearDims, b: LoraLinearBuffers, g: LoraLinearGradBuffers, accumulateDx = false,
  mm: GemmFn = gemm,
): Dispatch[] {
  checkLoraDims(d);
  const out = [
    mm(gpu, `${label}.backward_du`, { M: d.n, N: d.r, K1: d.outF, p1: g.dy, q1: b.B, alpha1: d.scale, c: g.du }),
    mm(gpu, `${label}.backward_dA`, { M: d.r, N: d.inF, K1: d.n, p1: g.du, q1: b.xLora ?? b.x, transP: true, c: g.dA, accumulate: true }),
    mm(gpu, `${label}.backward_dB`, { M: d.outF, N: d.r, K1: d.n, p1: g.dy, q1: b.u, alpha1: d.scale, transP: true, c: g.dB, accumulate: true }),
  ];
  if (g.dx) {
    if (b.xLora) throw new Error(`${label}: with a separate adapter input (dropout), dx is the caller's: dy·W plus dropout_backward(du·A)`);
    out.push(mm(gpu, `${label}.backward_dx`, {
      M: d.n, N: d.inF, K1: d.outF, p1: g.dy, q1: b.W, K2: d.r, p2: g.du, q2: b.A, c: g.dx, accumulate: accumulateDx,
    }));
  }
  return out;
}

/** ΔW (OUT, IN) = s·B·A: the update the adapter adds to W (what merging writes into the weight). */
export function loraDeltaW(gpu: Gpu, label: string, d: LoraLinearDims, A: Binding, B: Binding, deltaW: Binding): Dispatch {
  checkLoraDims(d);
  return gemm(gpu, `${label}.deltaW`, { M: d.outF, N: d.inF, K1: d.r, p1: B, q1: A, alpha1: d.scale, c: deltaW });
}

export interface LoraLinearResult {
  y: Float32Array; // (N, OUT)
  deltaW: Float32Array; // (OUT, IN)
}

/**
 * One-off evaluation for the calculator and the Teach panel: uploads, runs the forward and ΔW in one
 * command buffer, reads back, and returns the buffers to the pool.
 */
export async function runLoraLinear(
  gpu: Gpu, d: LoraLinearDims, data: { x: Float32Array; W: Float32Array; A: Float32Array; B: Float32Array; bias?: Float32Array },
): Promise<LoraLinearResult> {
  checkLoraDims(d);
  const label = 'loraLinear.eager';
  const b = {
    x: gpu.upload(`${label}.x`, data.x), W: gpu.upload(`${label}.W`, data.W), A: gpu.upload(`${label}.A`, data.A),
    B: gpu.upload(`${label}.B`, data.B), bias: data.bias && gpu.upload(`${label}.bias`, data.bias),
    u: gpu.buffer(`${label}.u`, d.n * d.r * 4), y: gpu.buffer(`${label}.y`, d.n * d.outF * 4),
  } satisfies LoraLinearBuffers;
  const deltaW = gpu.buffer(`${label}.deltaW`, d.outF * d.inF * 4);
  const dispatches = [...loraLinearForward(gpu, label, d, b), loraDeltaW(gpu, label, d, b.A, b.B, deltaW)];
  gpu.run(dispatches);
  const out = { y: await gpu.read(b.y, d.n * d.outF), deltaW: await gpu.read(deltaW, d.outF * d.inF) };
  for (const buf of [...Object.values(b), deltaW]) if (buf) gpu.release(buf);
  gpu.releaseDispatches(dispatches);
  return out;
}

// ---- tape rule ---------------------------------------------------------------------------------------

/** The adapter of one projection: A (R, IN) and B (OUT, R) trainable, its scale s and lora_dropout p; DoRA's magnitude m (OUT) when set. */
export interface LoraOperand {
  A: Tensor;
  B: Tensor;
  scale: number;
  dropout: number;
  magnitude?: Tensor;
}

/** LoRA dropout while training: the GPU step counter its masks hash, and a base seed. */
export interface DropoutState {
  counter: Tensor; // (1) u32, advanced once per step on the GPU
  seed: number;
}

/**
 * Tape rule: y (N, OUT) = x·Wᵀ + bias (+ s·(dropout(x)·Aᵀ)·Bᵀ with an adapter), x (N, IN), W (OUT, IN) and
 * bias (OUT) frozen. Dropout applies only when `dropout` is given (training) and the adapter's p > 0.
 */
export function linear(
  tape: Tape, label: string, x: Tensor, W: Tensor, bias: Tensor | undefined, lora?: LoraOperand, dropout?: DropoutState,
): Tensor {
  const gpu = tape.gpu;
  const [n, inF] = x.shape;
  const outF = W.shape[0];
  const y = tape.propagate(tape.tensor(label, [n, outF]), lora ? [x, lora.A, lora.B, ...(lora.magnitude ? [lora.magnitude] : [])] : [x]);
  const frozen = bias ? [x, W, bias] : [x, W];
  if (!lora) {
    tape.op(`${label}.forward`, frozen, [y], (b) =>
      matmul(gpu, `${label}.forward`, { M: n, N: outF, K1: inF, p1: b(x), q1: b(W), transQ: true, bias: bias && b(bias), c: b(y) }));
    tape.onGradient(y, [x], (dy) => {
      const dx = tape.gradSlot(x);
      tape.op(`${label}.backward_dx`, [dy, W], [dx.grad], (b) =>
        matmul(gpu, `${label}.backward_dx`, { M: n, N: inF, K1: outF, p1: b(dy), q1: b(W), c: b(dx.grad), accumulate: dx.accumulate }));
    });
    return y;
  }
  const { A, B } = lora;
  const r = A.shape[0];
  const d = { n, inF, outF, r, scale: lora.scale };
  const u = tape.tensor(`${label}.u`, [n, r]);
  // PEFT's lora_dropout acts on the adapter's input only: y = x·Wᵀ + s·B(A(dropout(x))).
  const p = dropout ? lora.dropout : 0;
  const seed = dropout ? (dropout.seed ^ labelHash(label)) >>> 0 : 0;
  const xd = p > 0 ? tape.tensor(`${label}.dropout`, [n, inF]) : undefined;
  if (xd) {
    tape.op(`${label}.dropout`, [dropout!.counter, x], [xd], (b) => dropoutForward(gpu, label, x.numel, p, seed, b(dropout!.counter), b(x), b(xd)));
  }
  if (lora.magnitude) return dora(tape, label, d, { x, xd, W, bias, A, B, m: lora.magnitude, y }, p, seed, dropout);
  const adapterIn = xd ?? x;
  tape.op(`${label}.forward`, [...frozen, adapterIn, A, B], [u, y], (b) =>
    loraLinearForward(gpu, label, d, { x: b(x), xLora: xd && b(xd), W: b(W), bias: bias && b(bias), A: b(A), B: b(B), u: b(u), y: b(y) }, matmul));
  tape.onGradient(y, [x, A, B], (dy) => {
    const du = tape.tensor(`${label}.du`, [n, r]);
    const dA = tape.gradSlot(A).grad, dB = tape.gradSlot(B).grad;
    const slot = x.requiresGrad ? tape.gradSlot(x) : undefined;
    const fusedDx = slot && !xd ? slot : undefined;
    tape.op(`${label}.backward`, [x, adapterIn, W, A, B, u, dy], [du, dA, dB, ...(fusedDx ? [fusedDx.grad] : [])], (b) =>
      loraLinearBackward(gpu, label, d, { x: b(x), xLora: xd && b(xd), W: b(W), A: b(A), B: b(B), u: b(u), y: b(y) },
        { dy: b(dy), du: b(du), dx: fusedDx && b(fusedDx.grad), dA: b(dA), dB: b(dB) }, fusedDx?.accumulate, matmul));
    if (slot && xd) {
      // dx = dy·W + dropout_backward(du·A): the dropout mask splits the fused dx GEMM in two.
      const duA = tape.tensor(`${label}.duA`, [n, inF]);
      tape.op(`${label}.backward_dx`, [dy, W, du, A], [slot.grad, duA], (b) => [
        matmul(gpu, `${label}.backward_dx`, { M: n, N: inF, K1: outF, p1: b(dy), q1: b(W), c: b(slot.grad), accumulate: slot.accumulate }),
        matmul(gpu, `${label}.backward_duA`, { M: n, N: inF, K1: r, p1: b(du), q1: b(A), c: b(duA) }),
        dropoutBackward(gpu, label, x.numel, p, seed, b(dropout!.counter), b(duA), b(slot.grad)),
      ]);
    }
  });
  return y;
}

/**
 * The DoRA branch of `linear`, as PEFT's DoraLinearVariant computes it (norm = ‖W + s·B·A‖ per row, detached;
 * g = m/norm). Without dropout: z = x·Wᵀ + s·u·Bᵀ with u = x·Aᵀ, y = g ⊙ z + bias. PEFT applies lora_dropout
 * to the input of the rescaled part, base layer included, and keeps the base layer on x outside it:
 * y = x·Wᵀ + bias + (g − 1) ⊙ (xd·Wᵀ) + g ⊙ s·(xd·Aᵀ)·Bᵀ = (x − xd)·Wᵀ + bias + g ⊙ z, z from xd.
 * Backward: dz = g ⊙ dy and dm += Σ dy ⊙ z / norm (dora stem), then the LoRA backward with dz for dy;
 * with dropout dx = dy·W + dropout_backward(dz·W + du·A − dy·W).
 */
function dora(
  tape: Tape, label: string, d: LoraLinearDims,
  t: { x: Tensor; xd?: Tensor; W: Tensor; bias?: Tensor; A: Tensor; B: Tensor; m: Tensor; y: Tensor },
  p: number, seed: number, dropout?: DropoutState,
): Tensor {
  const gpu = tape.gpu;
  const { x, xd, W, bias, A, B, m, y } = t;
  const { n, inF, outF, r } = d;
  const xIn = xd ?? x; // what the rescaled part reads
  const norm = tape.tensor(`${label}.dora_norm`, [outF]);
  const u = tape.tensor(`${label}.u`, [n, r]);
  const z = tape.tensor(`${label}.dora_z`, [n, outF]);
  tape.op(`${label}.dora_norm`, [W, A, B], [norm], (b) => doraNorm(gpu, label, d, b(W), b(A), b(B), b(norm)));
  tape.op(`${label}.forward`, [xIn, W, A, B], [u, z], (b) =>
    loraLinearForward(gpu, label, d, { x: b(xIn), W: b(W), A: b(A), B: b(B), u: b(u), y: b(z) }, matmul));
  const base = xd ? tape.tensor(`${label}.dora_base`, [n, outF]) : undefined;
  if (base) {
    tape.op(`${label}.dora_base`, [x, xd!, W, ...(bias ? [bias] : [])], [base], (b) => matmul(gpu, `${label}.dora_base`, {
      M: n, N: outF, K1: inF, p1: b(x), q1: b(W), K2: inF, p2: b(xd!), q2: b(W), alpha2: -1, bias: bias && b(bias), transQ: true, c: b(base),
    }));
  }
  tape.op(`${label}.dora_forward`, [z, m, norm, ...(base ? [base] : bias ? [bias] : [])], [y], (b) =>
    doraForward(gpu, label, d, { z: b(z), m: b(m), norm: b(norm), bias: !base && bias ? b(bias) : undefined, base: base && b(base), y: b(y) }));
  tape.onGradient(y, [x, A, B, m], (dy) => {
    const dz = tape.tensor(`${label}.dora_dz`, [n, outF]);
    const dm = tape.gradSlot(m).grad;
    tape.op(`${label}.dora_backward`, [dy, z, m, norm], [dz, dm], (b) =>
      doraBackward(gpu, label, d, { dy: b(dy), z: b(z), m: b(m), norm: b(norm), dz: b(dz), dm: b(dm) }));
    const du = tape.tensor(`${label}.du`, [n, r]);
    const dA = tape.gradSlot(A).grad, dB = tape.gradSlot(B).grad;
    const slot = x.requiresGrad ? tape.gradSlot(x) : undefined;
    const fusedDx = slot && !xd ? slot : undefined;
    tape.op(`${label}.backward`, [xIn, W, A, B, u, dz], [du, dA, dB, ...(fusedDx ? [fusedDx.grad] : [])], (b) =>
      loraLinearBackward(gpu, label, d, { x: b(xIn), W: b(W), A: b(A), B: b(B), u: b(u), y: b(z) },
        { dy: b(dz), du: b(du), dx: fusedDx && b(fusedDx.grad), dA: b(dA), dB: b(dB) }, fusedDx?.accumulate, matmul));
    if (slot && xd) {
      const dxd = tape.tensor(`${label}.dora_dxd`, [n, inF]);
      tape.op(`${label}.backward_dx`, [dy, dz, W, du, A], [slot.grad, dxd], (b) => [
        matmul(gpu, `${label}.backward_dx`, { M: n, N: inF, K1: outF, p1: b(dy), q1: b(W), c: b(slot.grad), accumulate: slot.accumulate }),
        matmul(gpu, `${label}.backward_dxd`, { M: n, N: inF, K1: outF, p1: b(dz), q1: b(W), K2: r, p2: b(du), q2: b(A), c: b(dxd) }),
        matmul(gpu, `${label}.backward_dxd_base`, { M: n, N: inF, K1: outF, p1: b(dy), q1: b(W), alpha1: -1, c: b(dxd), accumulate: true }),
        dropoutBackward(gpu, label, x.numel, p, seed, b(dropout!.counter), b(dxd), b(slot.grad)),
      ]);
    }
  });
  return y;
}

/** FNV-1a of a label: a distinct, stable dropout stream per layer and projection. */
export function labelHash(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
