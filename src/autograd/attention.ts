// Causal grouped-query self-attention (scale 1/√D) and its backward, flash-attention style: dispatch
// builders on shaders/attention.wgsl over buffers the caller owns (they encode nothing themselves), and
// `attention`, the tape rule that records both. No (T, T) matrix is ever allocated: the forward saves one
// logsumexp per query row and the backward recomputes the probabilities from it.
//
// Shapes: B batch, T sequence length, N = B·T rows (row n = b·T + t), H query heads, KV key/value heads
// (query head h reads kv head h / (H/KV)), D head dimension (≤ ATTENTION_MAX_D).

import type { Binding, Dispatch, DispatchCost, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import type { Tape, Tensor } from './tape';

/** Mirrors `struct Params` in shaders/attention.wgsl. */
export const ATTENTION_PARAMS: UniformLayout = [
  ['B', 'u32'], ['T', 'u32'], ['H', 'u32'], ['KV', 'u32'], ['D', 'u32'], ['scale', 'f32'],
];

/** MAX_D and BQ in attention.wgsl: the largest head dimension, and rows (threads) per workgroup. */
export const ATTENTION_MAX_D = 128;
const BQ = 64;
/** BQ in attention_subgroups.wgsl: query rows per workgroup of its forward, shared by its subgroups. */
const BQ_SUBGROUPS = 16;

export interface AttentionDims {
  B: number;
  T: number;
  H: number;
  KV: number;
  D: number;
}

export function checkAttentionDims(d: AttentionDims): void {
  const named = [['batch size B', d.B], ['sequence length T', d.T], ['query heads H', d.H], ['kv heads KV', d.KV], ['head dim D', d.D]] as const;
  for (const [k, v] of named) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`attention: ${k} must be a positive integer (got ${v})`);
  }
  if (d.H % d.KV !== 0) throw new RangeError(`attention: query heads (${d.H}) must be a multiple of kv heads (${d.KV}) for grouped-query attention`);
  if (d.D > ATTENTION_MAX_D) throw new RangeError(`attention: head dim ${d.D} is above the supported maximum of ${ATTENTION_MAX_D}`);
}

export interface AttentionBuffers {
  q: Binding; //   (N, H·D), rotated
  k: Binding; //   (N, KV·D), rotated
  v: Binding; //   (N, KV·D)
  out: Binding; // (N, H·D) written by the forward
  lse: Binding; // (B, H, T) logsumexp of each query row's scaled scores, written by the forward, read by the backward
}

export interface AttentionGradBuffers {
  dout: Binding; //  (N, H·D)
  delta: Binding; // (B, H, T) scratch: rowsum(dout ∘ out), written by the dq dispatch for the dk/dv one
  dq: Binding; //    (N, H·D) overwritten
  dk: Binding; //    (N, KV·D) overwritten
  dv: Binding; //    (N, KV·D) overwritten
}

/**
 * Costs, causal: P = B·H·T(T+1)/2 (query, key) pairs, each a D-long dot product for the score (2D flops) and
 * one more D-long product per further matrix: the forward's p·v (4D in all), dq's dP and dS·k (6D), dk/dv's
 * p·dout, dP and dS·q (8D). Bytes: q, out, dout, dq (N, H·D); k, v, dk, dv (N, KV·D); lse, delta (B, H, T).
 */
function attentionCost(d: AttentionDims, flopsPerPairPerD: number, tensors: { hd: number; kvd: number; rows: number }): DispatchCost {
  const N = d.B * d.T;
  const pairs = (d.B * d.H * d.T * (d.T + 1)) / 2;
  return { flops: flopsPerPairPerD * d.D * pairs, bytes: 4 * (N * (tensors.hd * d.H + tensors.kvd * d.KV) * d.D + tensors.rows * d.B * d.H * d.T) };
}

/** A cost plus delta = rowsum(dout ∘ out): 2·D flops per (b, h, t) row. */
function withDelta(d: AttentionDims, c: DispatchCost): DispatchCost {
  return { flops: c.flops + 2 * d.B * d.T * d.H * d.D, bytes: c.bytes };
}

function params(gpu: Gpu, label: string, d: AttentionDims): GPUBuffer {
  return gpu.uniform(`${label}.params`, ATTENTION_PARAMS, { B: d.B, T: d.T, H: d.H, KV: d.KV, D: d.D, scale: 1 / Math.sqrt(d.D) });
}

/** out = softmax(causal(q·kᵀ/√D))·v per head; lse (B, H, T) saved for the backward. */
export function attentionForward(gpu: Gpu, label: string, d: AttentionDims, b: AttentionBuffers): Dispatch[] {
  checkAttentionDims(d);
  const l = `${label}.attention_forward`;
  const pipeline = gpu.pipeline(gpu.subgroups ? 'attention_subgroups' : 'attention', 'attention_forward');
  const rows = gpu.subgroups ? BQ_SUBGROUPS : BQ;
  return [gpu.dispatch(l, pipeline, [params(gpu, l, d), b.q, b.k, b.v, b.out, b.lse], [Math.ceil(d.T / rows), d.H, d.B],
    attentionCost(d, 4, { hd: 2, kvd: 2, rows: 1 }))];
}

/**
 * dq, dk, dv overwritten (dk, dv summed over the H/KV query heads of each kv head), in two dispatches: dq's
 * also computes delta = rowsum(dout ∘ out), which dk/dv's reads. Deterministic: every output element is one
 * thread's sum in a fixed order.
 */
export function attentionBackward(gpu: Gpu, label: string, d: AttentionDims, b: AttentionBuffers, g: AttentionGradBuffers): Dispatch[] {
  checkAttentionDims(d);
  const lq = `${label}.attention_backward_dq`;
  const lkv = `${label}.attention_backward_dkdv`;
  const p = params(gpu, `${label}.attention_backward`, d); // shared by the two dispatches
  const grid = (heads: number) => [Math.ceil(d.T / BQ), heads, d.B] as const;
  return [
    // delta's row dot adds 2·D flops per row and one read of out.
    gpu.dispatch(lq, gpu.pipeline('attention', 'attention_backward_dq'), [p, b.q, b.k, b.v, g.dout, b.lse, g.delta, g.dq, b.out], grid(d.H),
      withDelta(d, attentionCost(d, 6, { hd: 4, kvd: 2, rows: 2 }))),
    gpu.dispatch(lkv, gpu.pipeline('attention', 'attention_backward_dkdv'), [p, b.q, b.k, b.v, g.dout, b.lse, g.delta, g.dk, g.dv], grid(d.KV),
      attentionCost(d, 8, { hd: 2, kvd: 4, rows: 2 })),
  ];
}

/** Tape rule: out (N, H·D) = attention(q, k, v), q (N, H·D), k and v (N, KV·D). */
export function attention(tape: Tape, label: string, q: Tensor, k: Tensor, v: Tensor, d: AttentionDims): Tensor {
  const gpu = tape.gpu;
  const out = tape.propagate(tape.tensor(`${label}.out`, q.shape), [q, k, v]);
  const lse = tape.tensor(`${label}.lse`, [d.B, d.H, d.T]);
  tape.op(`${label}.forward`, [q, k, v], [out, lse], (b) => attentionForward(gpu, label, d, { q: b(q), k: b(k), v: b(v), out: b(out), lse: b(lse) }));
  tape.onGradient(out, [q, k, v], (dout) => {
    const delta = tape.tensor(`${label}.delta`, [d.B, d.H, d.T]);
    // The attention kernels overwrite dq/dk/dv; q, k, v each have this op as their only consumer.
    const grads = [q, k, v].map((t) => (t.requiresGrad ? tape.gradSlot(t).grad : tape.tensor(`${t.label}.unused_grad`, t.shape)));
    tape.op(`${label}.backward`, [q, k, v, out, lse, dout], [delta, ...grads], (b) =>
      attentionBackward(gpu, label, d, { q: b(q), k: b(k), v: b(v), out: b(out), lse: b(lse) },
        { dout: b(dout), delta: b(delta), dq: b(grads[0]), dk: b(grads[1]), dv: b(grads[2]) }));
  });
  return out;
}
