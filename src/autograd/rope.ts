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
  ['N', 'u32'], ['T', 'u32'], ['H', 'u32'], ['D', 'u32'], ['pos_offset', 'u32'], ['theta', 'f32'], ['H2', 'u32'],
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
    N, T: d.T, H: d.heads, D: d.D, pos_offset: d.posOffset ?? 0, theta: d.theta, H2: 0,
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

/**
 * Queries and keys in one dispatch: yq (N, H·D) = rope(xq), yk (N, KV·D) = rope(xk), or the backward's
 * inverse rotation with `dir` = 'backward'. `d.heads` is H; the keys have `kvHeads`.
 */
export function ropeQKDispatch(
  gpu: Gpu, label: string, dir: 'forward' | 'backward', d: RopeDims, kvHeads: number,
  b: { xq: Binding; yq: Binding; xk: Binding; yk: Binding },
): Dispatch {
  checkRopeDims(d);
  checkRopeDims({ ...d, heads: kvHeads });
  const N = d.B * d.T;
  const entry = `rope_qk_${dir}`;
  const l = `${label}.${entry}`;
  const params = gpu.uniform(`${l}.params`, ROPE_PARAMS, {
    N, T: d.T, H: d.heads, D: d.D, pos_offset: d.posOffset ?? 0, theta: d.theta, H2: kvHeads,
  });
  const groups = Math.ceil((N * (d.heads + kvHeads) * (d.D / 2)) / WG);
  const gx = Math.min(groups, MAX_GRID_X);
  const elements = N * (d.heads + kvHeads) * d.D;
  return gpu.dispatch(l, gpu.pipeline('rope', entry), [params, b.xq, b.yq, b.xk, b.yk], [gx, Math.ceil(groups / gx), 1],
    { flops: 4 * elements, bytes: 8 * elements });
}

/** Tape rule: y = rope(x), x (N, heads·D). The kernel overwrites dx, so a second gradient goes through a temporary. */
export function rope(tape: Tape, label: string, x: Tensor, d: RopeDims): Tensor {
  const gpu = tape.gpu;
  const y = tape.propagate(tape.tensor(label, x.shape), [x]);
  tape.op(`${label}.forward`, [x], [y], (b) => ropeForward(gpu, label, d, { x: b(x), y: b(y) }));
  tape.onGradient(y, [x], (dy) => ropeGrad(tape, label, x, dy, d));
  return y;
}

/** dx (+)= the inverse rotation of dy, into x's gradient slot. */
function ropeGrad(tape: Tape, label: string, x: Tensor, dy: Tensor, d: RopeDims): void {
  const gpu = tape.gpu;
  const slot = tape.gradSlot(x);
  if (!slot.accumulate) {
    tape.op(`${label}.backward`, [dy], [slot.grad], (b) => ropeBackward(gpu, label, d, { dy: b(dy), dx: b(slot.grad) }));
  } else {
    const tmp = tape.tensor(`${label}.dx`, x.shape);
    tape.op(`${label}.backward`, [dy], [tmp], (b) => ropeBackward(gpu, label, d, { dy: b(dy), dx: b(tmp) }));
    tape.op(`${label}.backward_acc`, [tmp], [slot.grad], (b) => accumulate(gpu, `${label}.backward_acc`, x.numel, b(slot.grad), b(tmp)));
  }
}

/**
 * Tape rule: [rope(q), rope(k)] in one dispatch, q (N, H·D) with H = d.heads, k (N, KV·D); the backward is one
 * dispatch too when both need a gradient that nothing else has written yet (else one rule each, as `rope`).
 */
export function ropeQK(tape: Tape, label: string, q: Tensor, k: Tensor, d: RopeDims, kvHeads: number): [Tensor, Tensor] {
  const gpu = tape.gpu;
  const yq = tape.propagate(tape.tensor(`${label}.q`, q.shape), [q]);
  const yk = tape.propagate(tape.tensor(`${label}.k`, k.shape), [k]);
  tape.op(`${label}.forward`, [q, k], [yq, yk], (b) => ropeQKDispatch(gpu, label, 'forward', d, kvHeads, { xq: b(q), yq: b(yq), xk: b(k), yk: b(yk) }));
  const dk = { ...d, heads: kvHeads };
  tape.onBackward(() => {
    const need = [q.requiresGrad && tape.hasGrad(yq), k.requiresGrad && tape.hasGrad(yk)];
    if (need[0] && need[1] && !tape.hasGrad(q) && !tape.hasGrad(k)) {
      const dyq = tape.grad(yq), dyk = tape.grad(yk);
      const gq = tape.gradSlot(q).grad, gk = tape.gradSlot(k).grad;
      tape.op(`${label}.backward`, [dyq, dyk], [gq, gk], (b) =>
        ropeQKDispatch(gpu, label, 'backward', d, kvHeads, { xq: b(dyq), yq: b(gq), xk: b(dyk), yk: b(gk) }));
      return;
    }
    if (need[1]) ropeGrad(tape, `${label}.k`, k, tape.grad(yk), dk);
    if (need[0]) ropeGrad(tape, `${label}.q`, q, tape.grad(yq), d);
  });
  return [yq, yk];
}
