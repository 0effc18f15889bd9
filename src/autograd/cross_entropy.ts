// Softmax cross-entropy (ignore_index −100, mean over valid targets) over caller-owned buffers, binding
// shaders/cross_entropy.wgsl. The vocabulary may come in column chunks, so the (N, V) logits never need to
// exist at once: forward each chunk (online softmax into per-row stats), reduce, then backward each chunk.
// These functions build Dispatch records; they encode nothing themselves.
//
// Shapes: N rows, V vocabulary, Vc columns of a chunk starting at column v0.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { grid, WG } from './elementwise';

export const IGNORE_INDEX = -100;

export const CROSS_ENTROPY_PARAMS: UniformLayout = [
  ['N', 'u32'], ['V', 'u32'], ['Vc', 'u32'], ['ld', 'u32'],
  ['v0', 'u32'], ['first', 'u32'], ['last', 'u32'], ['dloss', 'f32'],
];

export interface CrossEntropyDims {
  n: number; // N rows
  v: number; // V, the whole vocabulary
}

export interface CrossEntropyBuffers {
  targets: Binding; // (N) i32: the next token id, or −100 (any id outside [0, V) counts as ignored)
  stats: Binding; //   (N, 3) scratch: running max, running Σexp, target logit
  losses: Binding; //  (N) per-row loss, 0 for ignored rows
  result: Binding; //  (2) mean loss, count of valid rows (f32)
}

/** Columns [v0, v0 + vc) of the logits, stored (N, vc) with row stride ld (default vc). */
export interface LogitsChunk {
  logits: Binding; // (N, Vc)
  v0: number;
  vc: number;
  ld?: number;
}

/** Splits V columns into chunks of at most `maxCols` (e.g. what one binding holds for N rows). */
export function vocabChunks(v: number, maxCols: number): { v0: number; vc: number }[] {
  if (!Number.isInteger(maxCols) || maxCols < 1) throw new RangeError(`chunk width must be a positive integer (got ${maxCols})`);
  const out = [];
  for (let v0 = 0; v0 < v; v0 += maxCols) out.push({ v0, vc: Math.min(maxCols, v - v0) });
  return out;
}

function chunkParams(d: CrossEntropyDims, c: LogitsChunk, first: boolean, last: boolean, dloss: number): Record<string, number> {
  for (const [k, v] of [['rows', d.n], ['vocabulary size', d.v], ['chunk width', c.vc]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`cross-entropy ${k} must be a positive integer (got ${v})`);
  }
  const ld = c.ld ?? c.vc;
  if (!Number.isInteger(c.v0) || c.v0 < 0 || c.v0 + c.vc > d.v) throw new RangeError(`logits chunk [${c.v0}, ${c.v0 + c.vc}) lies outside the vocabulary [0, ${d.v})`);
  if (ld < c.vc || d.n * ld > 0xffffffff) throw new RangeError(`logits chunk row stride ${ld} must be ≥ its width ${c.vc} and N·ld < 2³²`);
  return { N: d.n, V: d.v, Vc: c.vc, ld, v0: c.v0, first: first ? 1 : 0, last: last ? 1 : 0, dloss };
}

/**
 * Folds one chunk into the per-row stats (replacing them when `first`); on the `last` chunk also writes
 * losses[n] = logsumexp − logit[target] (0 for ignored rows).
 */
export function crossEntropyForward(
  gpu: Gpu, label: string, d: CrossEntropyDims, b: CrossEntropyBuffers, chunk: LogitsChunk, first = true, last = true,
): Dispatch {
  const params = gpu.uniform(`${label}.cross_entropy_forward.params`, CROSS_ENTROPY_PARAMS, chunkParams(d, chunk, first, last, 1));
  const pipeline = gpu.pipeline(gpu.subgroups ? 'cross_entropy_subgroups' : 'cross_entropy', 'cross_entropy_forward');
  // Online logsumexp: max, subtract, exp, add per logit; the chunk read once, the (N) stats read and written.
  return gpu.dispatch(`${label}.cross_entropy_forward`, pipeline, [params, chunk.logits, b.targets, b.stats, b.losses], grid(gpu, d.n),
    { flops: 4 * d.n * chunk.vc, bytes: 4 * d.n * (chunk.vc + 6) });
}

/** result = (Σ losses / count, count) with count = number of valid targets; (0, 0) if none is valid. */
export function crossEntropyReduce(gpu: Gpu, label: string, d: CrossEntropyDims, b: CrossEntropyBuffers): Dispatch {
  const params = gpu.uniform(`${label}.cross_entropy_reduce.params`, CROSS_ENTROPY_PARAMS, {
    N: d.n, V: d.v, Vc: 0, ld: 0, v0: 0, first: 0, last: 0, dloss: 1,
  });
  const pipeline = gpu.pipeline(gpu.subgroups ? 'cross_entropy_subgroups' : 'cross_entropy', 'cross_entropy_reduce');
  return gpu.dispatch(`${label}.cross_entropy_reduce`, pipeline, [params, b.targets, b.losses, b.result], [1, 1, 1], { flops: d.n, bytes: 8 * d.n + 8 });
}

/**
 * dlogits = dloss·(softmax − onehot(target))/count for the chunk's columns (0 on ignored rows), written (not
 * accumulated) into `dlogits`, laid out like the chunk (N, Vc) with its row stride. Needs the final stats and
 * the reduce's count. `dlogits` must be a different buffer from the chunk's logits.
 */
export function crossEntropyBackward(
  gpu: Gpu, label: string, d: CrossEntropyDims, b: CrossEntropyBuffers, chunk: LogitsChunk, dlogits: Binding, dloss = 1,
): Dispatch {
  const params = gpu.uniform(`${label}.cross_entropy_backward.params`, CROSS_ENTROPY_PARAMS, chunkParams(d, chunk, false, false, dloss));
  const pipeline = gpu.pipeline('cross_entropy', 'cross_entropy_backward');
  // exp(logit − lse), − onehot, ·dloss/count: 4 flops a logit; the chunk read, dlogits written.
  return gpu.dispatch(`${label}.cross_entropy_backward`, pipeline, [params, chunk.logits, b.targets, b.stats, b.result, dlogits],
    grid(gpu, Math.ceil((d.n * chunk.vc) / WG)), { flops: 4 * d.n * chunk.vc, bytes: 4 * d.n * (2 * chunk.vc + 3) });
}

/** Every chunk's forward (in order, first/last flagged) followed by the reduce: result holds the mean loss. */
export function crossEntropyLoss(gpu: Gpu, label: string, d: CrossEntropyDims, b: CrossEntropyBuffers, chunks: LogitsChunk[]): Dispatch[] {
  const covered = chunks.reduce((s, c) => s + c.vc, 0);
  if (covered !== d.v) throw new RangeError(`logits chunks cover ${covered} columns, the vocabulary has ${d.v}`);
  return [
    ...chunks.map((c, i) => crossEntropyForward(gpu, `${label}.chunk${i}`, d, b, c, i === 0, i === chunks.length - 1)),
    crossEntropyReduce(gpu, label, d, b),
  ];
}
