// Rotary position embedding (Hugging Face rotate-half convention): forward and backward dispatch builders
// on shaders/rope.wgsl over buffers the caller owns (they encode nothing themselves), and `rope`, the tape
// rule that records both. RoPE has no parameters, so the backward only maps dy to dx (the inverse rotation).
//
// Shapes: B batch, T sequence length, N = B·T rows (row n = b·T + t), H heads in the tensor (query heads
// for q, KV heads for k), D head dimension (even).

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { accumulate } from './elementwise';
import { sameStart, type Tape, type Tensor } from './tape';

/** Mirrors `struct Params` in shaders/rope.wgsl. */
export const ROPE_PARAMS: UniformLayout = [
  ['N', 'u32'], ['T', 'u32'], ['H', 'u32'], ['D', 'u32'], ['pos_offset', 'u32'], ['theta', 'f32'],
];

const WG = 64; // threads per workgroup, as in rope.wgsl
const MAX_GRID_X = 65535; // the WebGPU default limit on workgroups per dimension

export interface RopeDims {
  B: number;
  T: number;
  /** heads in this tensor: H for queries, KV for keys */
  heads: number;
  D: number;
  /** config.rope_theta, e.g. 10000 (Llama 2) or 500000 (Llama 3) */
  theta: number;
  /** added to every position t (default 0): a sequence that continues after `posOffset` earlier tokens */
  posOffset?: number;
}

export function checkRopeDims(d: RopeDims): void {
  for (const [k, v] of [['batch size B', d.B], ['sequence length T', d.T], ['heads', d.heads], ['head dim D', d.D]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`RoPE: ${k} must be a positive integer (got ${v})`);
  }
  if (d.D % 2 !== 0) throw new RangeError(`RoPE: head dim D must be even to split into rotation pairs (got ${d.D})`);
  if (!(d.theta > 0) || !Number.isFinite(d.theta)) throw new RangeError(`RoPE: rope_theta must be a positive number (got ${d.theta})`);
  const off = d.posOffset ?? 0;
  if (!Number.isInteger(off) || off < 0) throw new RangeError(`RoPE: position offset must be a non-negative integer (got ${off})`);
}

function ropeDispatch(gpu: Gpu, label: string, dir: 'forward' | 'backward', d: RopeDims, src: Binding, dst: Binding): Dispatch[] {
  checkRopeDims(d);
  const N = d.B * d.T;
  // WebGPU forbids one buffer in two writable bindings, so in-place work has its own entry and binding.
  const inPlace = sameStart(src, dst);
  const entry = `rope_${dir}${inPlace ? '_inplace' : ''}`;
  const l = `${label}.${entry}`;
  const params = gpu.uniform(`${l}.params`, ROPE_PARAMS, {
    N, T: d.T, H: d.heads, D: d.D, pos_offset: d.posOffset ?? 0, theta: d.theta,
  });
  const groups = Math.ceil((N * d.heads * (d.D / 2)) / WG);
  const gx = Math.min(groups, MAX_GRID_X);
  const buffers = inPlace ? [params, dst] : [params, src, dst];
  // Each (x0, x1) pair: 4 multiplies and 2 adds (the angle's sin and cos counted as 2 more); read once, written once.
  const elements = N * d.heads * d.D;
  return [gpu.dispatch(l, gpu.pipeline('rope', entry), buffers, [gx, Math.ceil(groups / gx), 1], { flops: 4 * elements, bytes: 8 * elements })];
}

/** y (N, heads·D) = rope(x (N, heads·D)); `y` may be `x` for an in-place rotation. */
export function ropeForward(gpu: Gpu, label: string, d: RopeDims, b: { x: Binding; y: Binding }): Dispatch[] {
  return ropeDispatch(gpu, label, 'forward', d, b.x, b.y);
}

/** dx (N, heads·D) = the inverse rotation of dy (N, heads·D), overwritten; `dx` may be `dy` (in place). */
export function ropeBackward(gpu: Gpu, label: string, d: RopeDims, g: { dy: Binding; dx: Binding }): Dispatch[] {
  return ropeDispatch(gpu, label, 'backward', d, g.dy, g.dx);
}

/** Tape rule: y = rope(x), x (N, heads·D). The kernel overwrites dx, so a second gradient goes through a temporary. */
export function rope(tape: Tape, label: string, x: Tensor, d: RopeDims): Tensor {
  const gpu = tape.gpu;
  const y = tape.propagate(tape.tensor(label, x.shape), [x]);
  tape.op(`${label}.forward`, [x], [y], (b) => ropeForward(gpu, label, d, { x: b(x), y: b(y) }));
  tape.onGradient(y, [x], (dy) => {
    const slot = tape.gradSlot(x);
    if (!slot.accumulate) {
      tape.op(`${label}.backward`, [dy], [slot.grad], (b) => ropeBackward(gpu, label, d, { dy: b(dy), dx: b(slot.grad) }));
    } else {
      const tmp = tape.tensor(`${label}.dx`, x.shape);
      tape.op(`${label}.backward`, [dy], [tmp], (b) => ropeBackward(gpu, label, d, { dy: b(dy), dx: b(tmp) }));
      tape.op(`${label}.backward_acc`, [tmp], [slot.grad], (b) => accumulate(gpu, `${label}.backward_acc`, x.numel, b(slot.grad), b(tmp)));
    }
  });
  return y;
}
