// SwiGLU h = silu(gate)·up: forward and gradient dispatch builders over caller-owned buffers, binding
// shaders/swiglu.wgsl (they encode nothing themselves), and `swiglu`, the tape rule that records both.
//
// Shapes: N rows, I intermediate size; the kernels see n = N·I flat elements.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { grid, WG } from './elementwise';
import type { Tape, Tensor } from './tape';

export const SWIGLU_PARAMS: UniformLayout = [['n', 'u32']];

function checkCount(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`swiglu element count N·I must be a u32 (got ${n})`);
}

/** h = silu(gate)·up.  gate, up, h (N, I); n = N·I. */
export function swigluForward(gpu: Gpu, label: string, n: number, gate: Binding, up: Binding, h: Binding): Dispatch {
  checkCount(n);
  const params = gpu.uniform(`${label}.swiglu_forward.params`, SWIGLU_PARAMS, { n });
  const pipeline = gpu.pipeline('swiglu', 'swiglu_forward');
  // σ(g) (exp, add, divide), ·g, ·up: 5 flops; gate and up read, h written.
  return gpu.dispatch(`${label}.swiglu_forward`, pipeline, [params, gate, up, h], grid(gpu, Math.ceil(n / WG)), { flops: 5 * n, bytes: 12 * n });
}

/** dgate = dh·up·σ(g)·(1 + g·(1 − σ(g))), dup = dh·silu(g); both overwritten.  All (N, I); n = N·I. */
export function swigluBackward(
  gpu: Gpu, label: string, n: number, gate: Binding, up: Binding, dh: Binding, dgate: Binding, dup: Binding,
): Dispatch {
  checkCount(n);
  const params = gpu.uniform(`${label}.swiglu_backward.params`, SWIGLU_PARAMS, { n });
  const pipeline = gpu.pipeline('swiglu', 'swiglu_backward');
  // σ(g) (3), silu (1), dup (1), the dgate product (6): 11 flops; gate, up, dh read, dgate, dup written.
  return gpu.dispatch(`${label}.swiglu_backward`, pipeline, [params, gate, up, dh, dgate, dup], grid(gpu, Math.ceil(n / WG)), { flops: 11 * n, bytes: 20 * n });
}

/** Tape rule: h (N, I) = silu(gate)·up. */
export function swiglu(tape: Tape, label: string, gate: Tensor, up: Tensor): Tensor {
  const gpu = tape.gpu;
  const n = gate.numel;
  const h = tape.propagate(tape.tensor(label, gate.shape), [gate, up]);
  tape.op(`${label}.forward`, [gate, up], [h], (b) => swigluForward(gpu, label, n, b(gate), b(up), b(h)));
  tape.onGradient(h, [gate, up], (dh) => {
    // gate and up are consumed only here, so their gradients are written, never accumulated.
    // Read through tape.saved: a layer may recompute gate and up here rather than keep them (decoder.ts).
    const dgate = tape.gradSlot(gate).grad, dup = tape.gradSlot(up).grad;
    const g = tape.saved(gate), u = tape.saved(up);
    tape.op(`${label}.backward`, [g, u, dh], [dgate, dup], (b) => swigluBackward(gpu, label, n, b(g), b(u), b(dh), b(dgate), b(dup)));
  });
  return h;
}
