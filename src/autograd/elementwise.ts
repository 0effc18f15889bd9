// Flat-array helpers over caller-owned f32 buffers, binding shaders/elementwise.wgsl: residual add,
// accumulate (a += b), fill (explicit zeroing) and scale. Each builds one Dispatch; nothing is encoded here.
// add_forward takes an optional scale (out = alpha·(a + b)). `add` is the residual add's tape rule (its
// backward is addForward as a copy or accumulate). Also home of `grid`, the workgroup-count split that every
// flat kernel of this family uses.
//
// Shapes: n elements of any flattened shape.

import type { Binding, Dispatch, DispatchCost, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import type { Tape, Tensor } from './tape';

export const ELEMENTWISE_PARAMS: UniformLayout = [['n', 'u32'], ['value', 'f32']];

/** Threads per workgroup of every flat kernel (the WGSL `const WG`). */
export const WG = 256;

/**
 * `groups` workgroups as an (x, y, 1) grid within maxComputeWorkgroupsPerDimension; kernels index
 * workgroups as x + y·num_workgroups.x and bounds-check, so the few extra groups of the split do nothing.
 */
export function grid(gpu: Gpu, groups: number): [number, number, number] {
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [groups, 1, 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y, 1];
}

function checkCount(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`element count must be a u32 (got ${n})`);
}

/** Per element: flops, and f32 values read or written (an in-place operand counts twice). */
function flat(gpu: Gpu, label: string, entry: string, n: number, value: number, buffers: Binding[], perElement: DispatchCost): Dispatch {
  checkCount(n);
  const params = gpu.uniform(`${label}.${entry}.params`, ELEMENTWISE_PARAMS, { n, value });
  const pipeline = gpu.pipeline('elementwise', entry);
  return gpu.dispatch(`${label}.${entry}`, pipeline, [params, ...buffers], grid(gpu, Math.ceil(n / WG)),
    { flops: perElement.flops * n, bytes: 4 * perElement.bytes * n });
}

/**
 * out = alpha·(a + b), alpha = 1 for the residual add.  a, b, out (n); out must not alias a or b (a and b may
 * be the same buffer: alpha = 0.5 then copies it exactly, since x + x and ·0.5 are exact in f32).
 */
export function addForward(gpu: Gpu, label: string, n: number, a: Binding, b: Binding, out: Binding, alpha = 1): Dispatch {
  return flat(gpu, label, 'add_forward', n, alpha, [a, b, out], { flops: 2, bytes: 3 });
}

/** a += b.  a, b (n). */
export function accumulate(gpu: Gpu, label: string, n: number, a: Binding, b: Binding): Dispatch {
  return flat(gpu, label, 'accumulate', n, 0, [a, b], { flops: 1, bytes: 3 });
}

/** x = value for the first n elements of x (value 0: the explicit zeroing step before += backwards). */
export function fill(gpu: Gpu, label: string, n: number, x: Binding, value = 0): Dispatch {
  return flat(gpu, label, 'fill', n, value, [x], { flops: 0, bytes: 1 });
}

/** x *= s.  x (n). */
export function scale(gpu: Gpu, label: string, n: number, x: Binding, s: number): Dispatch {
  return flat(gpu, label, 'scale', n, s, [x], { flops: 1, bytes: 2 });
}

/**
 * Tape rule: out = a + b; the gradient passes to both unchanged (addGradient).
 */
export function add(tape: Tape, label: string, a: Tensor, b_: Tensor): Tensor {
  const gpu = tape.gpu;
  const out = tape.propagate(tape.tensor(label, a.shape), [a, b_]);
  tape.op(`${label}.forward`, [a, b_], [out], (b) => addForward(gpu, label, a.numel, b(a), b(b_), b(out)));
  tape.onGradient(out, [a, b_], (dout) => addGradient(tape, label, a, b_, dout));
  return out;
}

/**
 * The backward of out = a + b (also add_rmsnorm.ts's): dout to both inputs (to the one tensor twice when a is
 * b). The first input with no gradient yet takes dout itself (Tape.shareGrad: the residual stream's gradient
 * accumulates in place), and the other takes it too where the forward's order makes that sound
 * (Tape.shareGradWith: a decoder's branch output), so a decoder's residual adds cost no copy; elsewhere the
 * other input gets a copy.
 */
export function addGradient(tape: Tape, label: string, a: Tensor, b_: Tensor, dout: Tensor): void {
  const gpu = tape.gpu;
  let shared: Tensor | undefined;
  for (const t of [a, b_]) {
    if (!t.requiresGrad) continue;
    // Never two inputs through shareGrad: the second's gradient would be the first's buffer unchecked.
    // Nor when a is b: x + x adds dout twice.
    if (a !== b_ && (shared ? tape.shareGradWith(shared, t, dout) : tape.shareGrad(t, dout))) { shared ??= t; continue; }
    const slot = tape.gradSlot(t);
    tape.op(`${label}.backward`, [dout], [slot.grad], (b) =>
      slot.accumulate
        ? accumulate(gpu, `${label}.backward`, t.numel, b(slot.grad), b(dout))
        : addForward(gpu, `${label}.backward_copy`, t.numel, b(dout), b(dout), b(slot.grad), 0.5)); // ½(g + g) = g exactly
  }
}
