// RMSNorm: forward and input-gradient dispatch builders over caller-owned buffers, binding
// shaders/rmsnorm.wgsl, and `rmsnorm`, the tape rule that records both. The norm weight w is frozen in LoRA
// training, so there is no dw: only dx, written or accumulated. The builders encode nothing themselves.
//
// Shapes: N rows, C hidden size.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { grid } from './elementwise';
import type { Tape, Tensor } from './tape';

export const RMSNORM_PARAMS: UniformLayout = [['N', 'u32'], ['C', 'u32'], ['eps', 'f32'], ['accumulate', 'u32']];

export interface RmsnormDims {
  n: number; // N rows
  c: number; // C
  eps: number; // e.g. config.rms_norm_eps = 1e-5 (Llama) or 1e-6 (Qwen2)
}

function checkDims(d: RmsnormDims): void {
  for (const [k, v] of [['rows', d.n], ['hidden size', d.c]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`rmsnorm ${k} must be a positive integer (got ${v})`);
  }
  if (!(d.eps >= 0) || !Number.isFinite(d.eps)) throw new RangeError(`rmsnorm eps must be finite and ≥ 0 (got ${d.eps})`);
}

export interface RmsnormBuffers {
  x: Binding; //    (N, C)
  w: Binding; //    (C) frozen
  y: Binding; //    (N, C)
  rstd: Binding; // (N) written by the forward, read by the backward
}

/**
 * y = x·rstd·w with rstd = 1/sqrt(mean(x²) + eps) per row. `plain`: the plain kernel even where the device
 * has subgroups (it sums in add_rmsnorm's order, so it recomputes that op's output bit for bit).
 */
export function rmsnormForward(gpu: Gpu, label: string, d: RmsnormDims, b: RmsnormBuffers, plain = false): Dispatch {
  checkDims(d);
  const params = gpu.uniform(`${label}.rmsnorm_forward.params`, RMSNORM_PARAMS, { N: d.n, C: d.c, eps: d.eps, accumulate: 0 });
  const pipeline = gpu.pipeline(gpu.subgroups && !plain ? 'rmsnorm_subgroups' : 'rmsnorm', 'rmsnorm_forward');
  // x² summed, then ·rstd·w: 4 flops an element; x read, y written, w and rstd once.
  return gpu.dispatch(`${label}.rmsnorm_forward`, pipeline, [params, b.x, b.w, b.y, b.rstd], grid(gpu, d.n),
    { flops: 4 * d.n * d.c, bytes: 4 * (2 * d.n * d.c + d.c + d.n) });
}

/**
 * dx = rstd·(dy·w) − x·rstd³·mean(x·w·dy), overwriting dx, or adding into it when `accumulateDx`
 * (the residual stream's gradient is already there).  dy, dx (N, C).
 */
export function rmsnormBackward(
  gpu: Gpu, label: string, d: RmsnormDims, b: Omit<RmsnormBuffers, 'y'>, dy: Binding, dx: Binding, accumulateDx = false,
): Dispatch {
  checkDims(d);
  const params = gpu.uniform(`${label}.rmsnorm_backward.params`, RMSNORM_PARAMS, {
    N: d.n, C: d.c, eps: d.eps, accumulate: accumulateDx ? 1 : 0,
  });
  const pipeline = gpu.pipeline(gpu.subgroups ? 'rmsnorm_subgroups' : 'rmsnorm', 'rmsnorm_backward');
  // x·w·dy summed, then the two-term difference: 8 flops an element; x, dy read, dx written (and read when accumulating).
  return gpu.dispatch(`${label}.rmsnorm_backward`, pipeline, [params, b.x, b.w, b.rstd, dy, dx], grid(gpu, d.n),
    { flops: 8 * d.n * d.c, bytes: 4 * ((accumulateDx ? 4 : 3) * d.n * d.c + d.c + d.n) });
}

/**
 * Tape rule: y = rmsnorm(x)·w over rows of w's length. x (N, C) with w (C) is the usual norm; x (N, H·D)
 * with w (D) normalises each head on its own (the N·H rows of D are contiguous).
 */
export function rmsnorm(tape: Tape, label: string, x: Tensor, w: Tensor, eps: number): Tensor {
  const gpu = tape.gpu;
  const d = { n: x.numel / w.numel, c: w.numel, eps };
  const y = tape.propagate(tape.tensor(label, x.shape), [x]);
  const rstd = tape.tensor(`${label}.rstd`, [d.n]);
  tape.op(`${label}.forward`, [x, w], [y, rstd], (b) => rmsnormForward(gpu, label, d, { x: b(x), w: b(w), y: b(y), rstd: b(rstd) }));
  // A backward that needs y (a LoRA's dA) recomputes it from x, which the norm's own backward keeps anyway:
  // one cheap pass instead of an (N, C) activation alive from the forward to the backward.
  tape.recomputable(y, () => {
    const y2 = tape.tensor(`${label}.recomputed`, x.shape), rstd2 = tape.tensor(`${label}.recomputed_rstd`, [d.n]);
    tape.op(`${label}.recompute`, [x, w], [y2, rstd2], (b) => rmsnormForward(gpu, `${label}.recompute`, d, { x: b(x), w: b(w), y: b(y2), rstd: b(rstd2) }));
    return y2;
  });
  tape.onGradient(y, [x], (dy) => {
    const dx = tape.gradSlot(x);
    tape.op(`${label}.backward`, [x, w, rstd, dy], [dx.grad], (b) =>
      rmsnormBackward(gpu, label, d, { x: b(x), w: b(w), rstd: b(rstd) }, b(dy), b(dx.grad), dx.accumulate));
  });
  return y;
}
