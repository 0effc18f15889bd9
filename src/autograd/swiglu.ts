// SwiGLU h = silu(gate)·up and its gradients over caller-owned buffers, binding shaders/swiglu.wgsl.
// These functions build Dispatch records; they encode nothing themselves.
//
// Shapes: N rows, I intermediate size; the kernels see n = N·I flat elements.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { grid, WG } from './elementwise';

export const SWIGLU_PARAMS: UniformLayout = [['n', 'u32']];

function checkCount(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`swiglu element count N·I must be a u32 (got ${n})`);
}

/** h = silu(gate)·up.  gate, up, h (N, I); n = N·I. */
export function swigluForward(gpu: Gpu, label: string, n: number, gate: Binding, up: Binding, h: Binding): Dispatch {
  checkCount(n);
  const params = gpu.uniform(`${label}.swiglu_forward.params`, SWIGLU_PARAMS, { n });
  const pipeline = gpu.pipeline('swiglu', 'swiglu_forward');
  return gpu.dispatch(`${label}.swiglu_forward`, pipeline, [params, gate, up, h], grid(gpu, Math.ceil(n / WG)));
}

/** dgate = dh·up·σ(g)·(1 + g·(1 − σ(g))), dup = dh·silu(g); both overwritten.  All (N, I); n = N·I. */
export function swigluBackward(
  gpu: Gpu, label: string, n: number, gate: Binding, up: Binding, dh: Binding, dgate: Binding, dup: Binding,
): Dispatch {
  checkCount(n);
  const params = gpu.uniform(`${label}.swiglu_backward.params`, SWIGLU_PARAMS, { n });
  const pipeline = gpu.pipeline('swiglu', 'swiglu_backward');
  return gpu.dispatch(`${label}.swiglu_backward`, pipeline, [params, gate, up, dh, dgate, dup], grid(gpu, Math.ceil(n / WG)));
}
