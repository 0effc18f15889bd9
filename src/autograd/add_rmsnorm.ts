// The residual add and the RMSNorm after it as one op: h = a + b, y = rmsnorm(h)·w, forward in one dispatch
// of shaders/add_rmsnorm.wgsl (a decoder's two norms per layer each follow a residual add, so this saves a
// dispatch and a pass over (N, C) per norm). The backward composes the two stems it fuses: RMSNorm's input
// gradient (rmsnorm.ts, over h) and the add's pass-through (elementwise.ts `addGradient`), so nothing new is
// differentiated here. The dispatch builder encodes nothing; `addRmsnorm` is the tape rule.
//
// Shapes: N rows, C hidden size.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { addGradient, grid } from './elementwise';
import { rmsnormBackward, rmsnormForward, type RmsnormDims } from './rmsnorm';
import type { Tape, Tensor } from './tape';

/** Mirrors `struct Params` in shaders/add_rmsnorm.wgsl. */
export const ADD_RMSNORM_PARAMS: UniformLayout = [['N', 'u32'], ['C', 'u32'], ['eps', 'f32']];

export interface AddRmsnormBuffers {
  a: Binding; //    (N, C)
  b: Binding; //    (N, C)
  w: Binding; //    (C) frozen
  h: Binding; //    (N, C) a + b
  y: Binding; //    (N, C)
  rstd: Binding; // (N) written by the forward, read by the backward
}

/** h = a + b; y = h·rstd·w with rstd = 1/sqrt(mean(h²) + eps) per row. */
export function addRmsnormForward(gpu: Gpu, label: string, d: RmsnormDims, b: AddRmsnormBuffers): Dispatch {
  if (!Number.isInteger(d.n) || d.n < 1 || !Number.isInteger(d.c) || d.c < 1) throw new RangeError(`add_rmsnorm: rows and hidden size must be positive integers (got ${d.n}, ${d.c})`);
  const params = gpu.uniform(`${label}.add_rmsnorm_forward.params`, ADD_RMSNORM_PARAMS, { N: d.n, C: d.c, eps: d.eps });
  const pipeline = gpu.pipeline('add_rmsnorm', 'add_rmsnorm_forward');
  // The add (1), h² summed, ·rstd·w (4): 5 flops an element; a, b read, h, y written, w and rstd once.
  return gpu.dispatch(`${label}.add_rmsnorm_forward`, pipeline, [params, b.a, b.b, b.w, b.h, b.y, b.rstd], grid(gpu, d.n),
    { flops: 5 * d.n * d.c, bytes: 4 * (4 * d.n * d.c + d.c + d.n) });
}

/**
 * Tape rule: [h, y] with h (N, C) = a + b and y = rmsnorm(h)·w, w (C). `labels`: h's and y's (the add's and
 * the norm's names, so the tensors read as they did when they were two ops).
 */
export function addRmsnorm(tape: Tape, labels: { add: string; norm: string }, a: Tensor, b_: Tensor, w: Tensor, eps: number): [Tensor, Tensor] {
  const gpu = tape.gpu;
  const d = { n: a.numel / w.numel, c: w.numel, eps };
  const h = tape.propagate(tape.tensor(labels.add, a.shape), [a, b_]);
  const y = tape.propagate(tape.tensor(labels.norm, a.shape), [h]);
  const rstd = tape.tensor(`${labels.norm}.rstd`, [d.n]);
  tape.op(`${labels.norm}.add_forward`, [a, b_, w], [h, y, rstd], (b) =>
    addRmsnormForward(gpu, labels.norm, d, { a: b(a), b: b(b_), w: b(w), h: b(h), y: b(y), rstd: b(rstd) }));
  // As rmsnorm's output: a backward that needs y recomputes it from h, which the norm's backward keeps, with the
  // plain kernel, whose sums run in this op's order: the copy is y bit for bit (a recomputed layer relies on it).
  tape.recomputable(y, () => {
    const y2 = tape.tensor(`${labels.norm}.recomputed`, a.shape), rstd2 = tape.tensor(`${labels.norm}.recomputed_rstd`, [d.n]);
    tape.op(`${labels.norm}.recompute`, [h, w], [y2, rstd2], (b) => rmsnormForward(gpu, `${labels.norm}.recompute`, d, { x: b(h), w: b(w), y: b(y2), rstd: b(rstd2) }, true));
    return y2;
  });
  tape.onBackward(() => {
    if (!h.requiresGrad) return;
    if (tape.hasGrad(y)) {
      const dy = tape.grad(y), dh = tape.gradSlot(h);
      tape.op(`${labels.norm}.backward`, [h, w, rstd, dy], [dh.grad], (b) =>
        rmsnormBackward(gpu, labels.norm, d, { x: b(h), w: b(w), rstd: b(rstd) }, b(dy), b(dh.grad), dh.accumulate));
    }
    if (tape.hasGrad(h)) addGradient(tape, labels.add, a, b_, tape.grad(h));
  });
  return [h, y];
}
