// Token embedding lookup and its scatter-add gradient over caller-owned buffers, binding
// shaders/embedding.wgsl, and `embedding`, the tape rule of the lookup (over a float32 table, or one stored in
// fewer bits, dequantized chunk by chunk). The table is frozen in LoRA training,
// so only the forward runs there and the rule records no backward; the backward builder (dtable +=,
// deterministic, O(V·C·N)) is for completeness. Dispatch records only; nothing is encoded.
//
// Shapes: N rows, V vocabulary, C hidden size.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { grid, WG } from './elementwise';
import { vocabChunks } from './cross_entropy';
import { tableRows, type Table } from './dequant';
import type { Tape, Tensor } from './tape';

export const EMBEDDING_PARAMS: UniformLayout = [['N', 'u32'], ['C', 'u32'], ['V', 'u32'], ['v0', 'u32']];

export interface EmbeddingDims {
  n: number; // N rows
  c: number; // C
  v: number; // V: rows of the table bound here
  /** The table binding holds vocabulary rows [v0, v0 + V) (a chunk of a table too big for one binding). */
  v0?: number;
}

function checkDims(d: EmbeddingDims): void {
  for (const [k, v] of [['rows', d.n], ['hidden size', d.c], ['vocabulary size', d.v]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`embedding ${k} must be a positive integer (got ${v})`);
  }
  if (d.v * d.c > 0xffffffff || d.n * d.c > 0xffffffff) throw new RangeError(`embedding of ${d.v}×${d.c} over ${d.n} rows exceeds 2³² elements`);
}

/**
 * out[n] = table[ids[n] − v0] for ids in [v0, v0 + V). With v0 = 0 every other row is zeroed, so run the
 * chunk at v0 = 0 first and the others after it.  ids (N) i32/u32, table (V, C), out (N, C).
 */
export function embeddingForward(gpu: Gpu, label: string, d: EmbeddingDims, ids: Binding, table: Binding, out: Binding): Dispatch {
  checkDims(d);
  const params = gpu.uniform(`${label}.embedding_forward.params`, EMBEDDING_PARAMS, { N: d.n, C: d.c, V: d.v, v0: d.v0 ?? 0 });
  const pipeline = gpu.pipeline('embedding', 'embedding_forward');
  // A gather: N ids and N rows of C read, N rows written.
  return gpu.dispatch(`${label}.embedding_forward`, pipeline, [params, ids, table, out], grid(gpu, Math.ceil((d.n * d.c) / WG)),
    { flops: 0, bytes: 4 * d.n * (2 * d.c + 1) });
}

/** dtable[v] += Σ_{n: ids[n]=v} dout[n]; zero dtable first for a fresh gradient.  dout (N, C), dtable (V, C). */
export function embeddingBackward(gpu: Gpu, label: string, d: EmbeddingDims, ids: Binding, dout: Binding, dtable: Binding): Dispatch {
  checkDims(d);
  const params = gpu.uniform(`${label}.embedding_backward.params`, EMBEDDING_PARAMS, { N: d.n, C: d.c, V: d.v, v0: d.v0 ?? 0 });
  const pipeline = gpu.pipeline('embedding', 'embedding_backward');
  // N·C adds into dtable (V, C), read and written; the kernel's V·C·N id reads (see the shader) are not the op's.
  return gpu.dispatch(`${label}.embedding_backward`, pipeline, [params, ids, dout, dtable], grid(gpu, Math.ceil((d.v * d.c) / WG)),
    { flops: d.n * d.c, bytes: 4 * (d.n * (d.c + 1) + 2 * d.v * d.c) });
}

/**
 * Tape rule: out (N, C) = table[ids], ids (N), table (V, C) frozen: persistent float32, or stored in fewer
 * bits and dequantized a chunk at a time (dequant.ts). The table is bound `chunkRows` rows at a time (see
 * lm_head.ts's tableChunkRows), for a table larger than one binding.
 */
export function embedding(tape: Tape, label: string, ids: Tensor, table: Table, chunkRows: number): Tensor {
  const gpu = tape.gpu;
  const [v, c] = table.shape;
  const n = ids.numel;
  const out = tape.tensor(label, [n, c]);
  const chunks = vocabChunks(v, chunkRows);
  if (!('format' in table)) {
    tape.op(label, [ids, table], [out], (b) => chunks.map(({ v0, vc }, i) =>
      embeddingForward(gpu, `${label}.chunk${i}`, { n, c, v: vc, v0 }, b(ids), table.rows(v0, vc), b(out))));
    return out;
  }
  // Chunk v0 = 0 runs first (it zeroes the rows of ids outside it), each right after its rows are dequantized.
  chunks.forEach(({ v0, vc }, i) => {
    const rows = tableRows(tape, `${label}.table${i}`, table, v0, vc);
    tape.op(`${label}.chunk${i}`, [ids, ...rows.reads], [out], (b) =>
      embeddingForward(gpu, `${label}.chunk${i}`, { n, c, v: vc, v0 }, b(ids), rows.bind(b), b(out)));
  });
  return out;
}
