// The LM head: logits = x·Eᵀ against a (V, C) table (lm_head.weight, or the embedding when tied), computed in
// vocabulary chunks so that neither a (N, V) logits block nor a (V, C) table range has to fit one binding.
// Two tape rules: `lmHeadLoss` fuses the head with the mean cross-entropy (training and evaluation), and
// `lmHeadLogits` writes the logits for generation; plus the chunk sizes both use. It has no kernel of its
// own: the GEMMs are the matmul stem's, the loss is cross_entropy's, and a table stored in fewer bits than
// float32 is dequantized chunk by chunk right before the GEMM that reads the chunk (dequant.ts).
//
// Shapes: N rows, C hidden size, V vocabulary, Vc columns of one chunk.

import { matmul } from './matmul_fast';
import { crossEntropyBackward, crossEntropyForward, crossEntropyReduce, vocabChunks } from './cross_entropy';
import { tableRows, type Table } from './dequant';
import { range, type Resolve, type Tape, type Tensor } from './tape';
import type { Binding } from '../gpu/gpu';

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** Rows of a (V, C) table per binding: at most `maxBytes`, a multiple of 256 / gcd(256, 4C) so offsets align. */
export function tableChunkRows(c: number, maxBytes: number): number {
  const align = 256 / gcd(256, 4 * c);
  const rows = Math.floor(maxBytes / (4 * c));
  return Math.max(align, rows - (rows % align));
}

/**
 * Logit columns per chunk so that one (N, Vc) chunk stays within `maxBytes`. Each chunk binds rows
 * [v0, v0 + Vc) of the (V, C) head matrix at byte offset 4·v0·C, which must be a multiple of 256, so the
 * width is a multiple of 256 / gcd(256, 4C) rows.
 */
export function logitsChunkWidth(n: number, v: number, c: number, maxBytes: number): number {
  const cols = Math.floor(maxBytes / (4 * n));
  if (cols >= v) return v;
  const align = 256 / gcd(256, 4 * c);
  return Math.max(align, cols - (cols % align));
}

/**
 * Tape rule: logits = xf·Eᵀ in vocabulary chunks of `chunk` columns, the mean cross-entropy into io.result,
 * and in the backward dxf = Σ_chunks dlogits_c·E_c. With one chunk the logits stay alive for the backward;
 * with several, each chunk's logits are recomputed in the backward so only one (N, Vc) block exists at a
 * time. xf (N, C), E (V, C) frozen (float32, or stored and dequantized per chunk), io.targets (N) i32, io.result (2): mean loss, count.
 */
export function lmHeadLoss(tape: Tape, xf: Tensor, E: Table, io: { targets: Tensor; result: Tensor }, chunk: number): void {
  const gpu = tape.gpu;
  const [n, c] = xf.shape;
  const chunks = vocabChunks(E.shape[0], chunk);
  const stats = tape.tensor('lm_head.ce_stats', [n, 3]);
  const losses = tape.tensor('lm_head.ce_losses', [n]);
  const ce = { n, v: E.shape[0] };
  const logitsOf = (i: number, v0: number, vc: number, phase: string) => {
    const t = tape.tensor(`lm_head.logits${i}.${phase}`, [n, vc]);
    const Ec = tableRows(tape, `lm_head.table${i}.${phase}`, E, v0, vc);
    tape.op(`lm_head.chunk${i}.${phase}`, [xf, ...Ec.reads], [t], (b) =>
      matmul(gpu, `lm_head.chunk${i}.${phase}`, { M: n, N: vc, K1: c, p1: b(xf), q1: Ec.bind(b), transQ: true, c: b(t) }));
    return t;
  };
  const kept: Tensor[] = [];
  chunks.forEach(({ v0, vc }, i) => {
    const logits = logitsOf(i, v0, vc, 'forward');
    if (chunks.length === 1) kept.push(logits);
    tape.op(`lm_head.ce_forward${i}`, [logits, io.targets], [stats, losses], (b) =>
      crossEntropyForward(gpu, `lm_head.ce${i}`, ce, { targets: b(io.targets), stats: b(stats), losses: b(losses), result: b(io.result) },
        { logits: b(logits), v0, vc }, i === 0, i === chunks.length - 1));
  });
  tape.op('lm_head.ce_reduce', [io.targets, losses], [io.result], (b) =>
    crossEntropyReduce(gpu, 'lm_head.ce', ce, { targets: b(io.targets), stats: b(stats), losses: b(losses), result: b(io.result) }));
  // The loss is where the backward starts: no gradient flows into it, so this is the one rule without onGradient.
  tape.onBackward(() => {
    if (!xf.requiresGrad) return;
    chunks.forEach(({ v0, vc }, i) => {
      const logits = kept[i] ?? logitsOf(i, v0, vc, 'recompute');
      const dlogits = tape.tensor(`lm_head.dlogits${i}`, [n, vc]);
      tape.op(`lm_head.ce_backward${i}`, [logits, io.targets, stats, io.result], [dlogits], (b) =>
        crossEntropyBackward(gpu, `lm_head.ce${i}`, ce, { targets: b(io.targets), stats: b(stats), losses: b(losses), result: b(io.result) },
          { logits: b(logits), v0, vc }, b(dlogits)));
      const slot = tape.gradSlot(xf);
      const Ec = tableRows(tape, `lm_head.table${i}.backward`, E, v0, vc);
      tape.op(`lm_head.backward${i}`, [dlogits, ...Ec.reads], [slot.grad], (b) =>
        matmul(gpu, `lm_head.backward${i}`, { M: n, N: c, K1: vc, p1: b(dlogits), q1: Ec.bind(b), c: b(slot.grad), accumulate: slot.accumulate }));
    });
  });
}

/**
 * Tape rule, forward only: logits (T, V) = xf·Eᵀ into the caller's tensor, xf (T, C), E (V, C) bound
 * `chunkRows` rows at a time (tableChunkRows). Each chunk writes its columns [v0, v0 + Vc) of the logits
 * (row stride V, column offset by binding), so chunks start at multiples of 64 columns (256 bytes).
 */
export function lmHeadLogits(tape: Tape, label: string, xf: Tensor, E: Table, logits: Tensor, chunkRows: number): void {
  const gpu = tape.gpu;
  const [T, c] = xf.shape;
  const v = E.shape[0];
  const chunks = vocabChunks(v, chunkRows >= v ? v : Math.max(64, chunkRows - (chunkRows % 64)));
  const chunkGemm = (b: Resolve, v0: number, vc: number, i: number, q1: Binding) => matmul(gpu, `${label}.chunk${i}`, {
    M: T, N: vc, K1: c, p1: b(xf), q1, transQ: true, c: range(b(logits), v0 * 4, ((T - 1) * v + vc) * 4), ldC: v,
  });
  if (!('format' in E)) {
    tape.op(label, [xf, E], [logits], (b) => chunks.map(({ v0, vc }, i) => chunkGemm(b, v0, vc, i, E.rows(v0, vc))));
    return;
  }
  chunks.forEach(({ v0, vc }, i) => {
    const Ec = tableRows(tape, `${label}.table${i}`, E, v0, vc);
    tape.op(`${label}.chunk${i}`, [xf, ...Ec.reads], [logits], (b) => chunkGemm(b, v0, vc, i, Ec.bind(b)));
  });
}
