// The fused LoRA linear y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ and its adapter-only backward (dx, dA, dB; the
// frozen W and bias get no gradient), built on the two-segment GEMM in shaders/lora_linear.wgsl.
// These functions build Dispatch records over buffers the caller owns; they encode nothing themselves.
//
// Shapes: N rows, IN input features, OUT output features, R rank.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';

export const GEMM_PARAMS: UniformLayout = [
  ['M', 'u32'], ['N', 'u32'], ['K1', 'u32'], ['K2', 'u32'],
  ['ld_p1', 'u32'], ['ld_q1', 'u32'], ['ld_p2', 'u32'], ['ld_q2', 'u32'],
  ['ld_c', 'u32'], ['batch_p1', 'u32'], ['batch_q1', 'u32'], ['batch_p2', 'u32'],
  ['batch_q2', 'u32'], ['batch_c', 'u32'], ['alpha1', 'f32'], ['alpha2', 'f32'],
  ['accumulate', 'u32'], ['has_bias', 'u32'],
];

const TILE = 64;

export interface GemmSpec {
  /** C (M, N) = [C +] alpha1·P1·Q1 + alpha2·P2·Q2 [+ bias] */
  M: number;
  N: number;
  K1: number;
  p1: Binding;
  q1: Binding;
  alpha1?: number;
  K2?: number;
  p2?: Binding;
  q2?: Binding;
  alpha2?: number;
  bias?: Binding;
  c: Binding;
  /** P stored (K, M) instead of (M, K); Q stored (N, K) instead of (K, N). Both segments share the layout. */
  transP?: boolean;
  transQ?: boolean;
  accumulate?: boolean;
  /** Row strides; default to the packed layout. */
  ldP1?: number; ldQ1?: number; ldP2?: number; ldQ2?: number; ldC?: number;
  batch?: number;
  batchStrides?: { p1?: number; q1?: number; p2?: number; q2?: number; c?: number };
}

/** A GEMM builder: `gemm` below (version 1) or matmul_fast's `gemmFast`; see src/autograd/matmul.ts. */
export type GemmFn = (gpu: Gpu, label: string, s: GemmSpec) => Dispatch;

/** One dispatch of the tiled two-segment GEMM. */
export function gemm(gpu: Gpu, label: string, s: GemmSpec): Dispatch {
  const K2 = s.K2 ?? 0;
  const transP = !!s.transP, transQ = !!s.transQ;
  // Packed row strides: P (M,K) → K, or (K,M) → M; Q (K,N) → N, or (N,K) → K.
  const ldP = (K: number) => (transP ? s.M : K);
  const ldQ = (K: number) => (transQ ? K : s.N);
  const bs = s.batchStrides ?? {};
  const params = gpu.uniform(`${label}.params`, GEMM_PARAMS, {
    M: s.M, N: s.N, K1: s.K1, K2,
    ld_p1: s.ldP1 ?? ldP(s.K1), ld_q1: s.ldQ1 ?? ldQ(s.K1), ld_p2: s.ldP2 ?? ldP(K2), ld_q2: s.ldQ2 ?? ldQ(K2),
    ld_c: s.ldC ?? s.N,
    batch_p1: bs.p1 ?? 0, batch_q1: bs.q1 ?? 0, batch_p2: bs.p2 ?? 0, batch_q2: bs.q2 ?? 0, batch_c: bs.c ?? 0,
    alpha1: s.alpha1 ?? 1, alpha2: s.alpha2 ?? 1,
    accumulate: s.accumulate ? 1 : 0, has_bias: s.bias ? 1 : 0,
  });
  const pipeline = gpu.pipeline('lora_linear', 'lora_gemm', { TRANS_P: transP ? 1 : 0, TRANS_Q: transQ ? 1 : 0 });
  // Unused bindings still need a buffer; p1/q1 stand in (never read when K2 = 0 or has_bias = 0).
  const buffers = [s.p1, s.q1, s.p2 ?? s.p1, s.q2 ?? s.q1, s.bias ?? s.q1, s.c, params];
  return gpu.dispatch(label, pipeline, buffers, [Math.ceil(s.N / TILE), Math.ceil(s.M / TILE), s.batch ?? 1]);
}

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
  x: GPUBuffer; //    (N, IN)
  W: GPUBuffer; //    (OUT, IN) frozen
  bias?: GPUBuffer; // (OUT) frozen
  A: GPUBuffer; //    (R, IN)
  B: GPUBuffer; //    (OUT, R)
  u: GPUBuffer; //    (N, R) written by the forward, read by the backward
  y: GPUBuffer; //    (N, OUT)
  /** (N, IN) the adapter's input when it differs from x (LoRA dropout: dropout(x)); default x. */
  xLora?: GPUBuffer;
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
  dy: GPUBuffer; // (N, OUT)
  du: GPUBuffer; // (N, R) scratch
  dx?: GPUBuffer; // (N, IN); omitted when x needs no gradient (e.g. it is the embedding output of a frozen table)
  dA: GPUBuffer; // (R, IN) accumulated into
  dB: GPUBuffer; // (OUT, R) accumulated into
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
export function loraDeltaW(gpu: Gpu, label: string, d: LoraLinearDims, A: GPUBuffer, B: GPUBuffer, deltaW: GPUBuffer): Dispatch {
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
  const b: LoraLinearBuffers = {
    x: gpu.upload(`${label}.x`, data.x), W: gpu.upload(`${label}.W`, data.W), A: gpu.upload(`${label}.A`, data.A),
    B: gpu.upload(`${label}.B`, data.B), bias: data.bias && gpu.upload(`${label}.bias`, data.bias),
    u: gpu.buffer(`${label}.u`, d.n * d.r * 4), y: gpu.buffer(`${label}.y`, d.n * d.outF * 4),
  };
  const deltaW = gpu.buffer(`${label}.deltaW`, d.outF * d.inF * 4);
  const dispatches = [...loraLinearForward(gpu, label, d, b), loraDeltaW(gpu, label, d, b.A, b.B, deltaW)];
  gpu.run(dispatches);
  const out = { y: await gpu.read(b.y, d.n * d.outF), deltaW: await gpu.read(deltaW, d.outF * d.inF) };
  for (const buf of [...Object.values(b), deltaW]) if (buf) gpu.release(buf);
  gpu.releaseDispatches(dispatches);
  return out;
}
