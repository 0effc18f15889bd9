// The projections of one input as one tape rule: a decoder's q, k and v of the normed stream, or its gate and
// up. Each projection computes what `linear` (lora_linear.ts) does, y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ, on the
// same matmul stem, but what the projections share is done once (issue 14: fewer dispatches per step):
//   forward   u = x·[A₁ … A_G]ᵀ                one batched GEMM over every adapter of the group
//             y_i = x·W_iᵀ + s·u_i·B_iᵀ        one GEMM per projection, as in linear
//   backward  du_i = s·dy_i·B_i; dB_i += s·dy_iᵀ·u_i   per adapted projection
//             dA_i += du_iᵀ·x                  one batched GEMM over the group
//             dx = Σ_i dy_i·W_i + du_i·A_i     the terms two at a time: one two-segment GEMM per pair
// The batched GEMMs need the adapters' A (R, IN) at one stride in one buffer, which the packed adapter
// (src/model/gpu_weights.ts: per layer, every A before every B) gives; otherwise each A gets its own GEMM.
// A group with LoRA dropout, or with an adapter kind this rule does not know, is recorded by `linear`.
//
// Shapes: N rows, IN input features, OUT_i output features of projection i, R rank, G adapted projections,
// S = N·R rounded up to 64 floats (each adapter's u and du start on a 256-byte binding offset).

import type { Binding } from '../gpu/gpu';
import { matmul } from './matmul_fast';
import type { GemmSpec } from './matmul';
import { linear, type DropoutState, type LoraOperand } from './lora_linear';
import { range, type Tape, type Tensor } from './tape';

export interface Projection {
  label: string;
  W: Tensor; //     (OUT, IN) frozen
  bias?: Tensor; // (OUT) frozen
  lora?: LoraOperand;
}

/** The operand fields this rule computes with; an adapter that carries more (a new kind) goes through linear. */
const KNOWN = new Set(['A', 'B', 'scale', 'dropout']);

/** Buffer and byte offset of a binding. */
function start(b: Binding): [GPUBuffer, number] {
  return 'buffer' in b ? [b.buffer, b.offset ?? 0] : [b, 0];
}

/** The stride in bytes at which the A's of `loras` sit in one buffer, or 0 when they do not (or G < 2). */
function uniformStride(loras: readonly LoraOperand[]): number {
  if (loras.length < 2) return 0;
  const [a0, a1] = [loras[0].A, loras[1].A];
  const stride = a1.offset - a0.offset;
  const same = loras.every((l, i) =>
    l.A.buffer === a0.buffer && l.A.offset === a0.offset + i * stride && l.A.shape.join() === a0.shape.join());
  return same && stride >= a0.bytes && a0.gradAt !== undefined ? stride : 0;
}

/**
 * Tape rule: y_i (N, OUT_i) = x·W_iᵀ + bias_i (+ s_i·(x·A_iᵀ)·B_iᵀ) for every projection of `projs`, x (N, IN).
 * `label` names what the group shares (its batched GEMMs).
 */
export function linearGroup(
  tape: Tape, label: string, x: Tensor, projs: readonly Projection[], dropout?: DropoutState, options: { recompute?: boolean } = {},
): Tensor[] {
  const fallback = projs.some((p) => p.lora && ((dropout && p.lora.dropout > 0) || Object.keys(p.lora).some((k) => !KNOWN.has(k))));
  const rs = new Set(projs.flatMap((p) => (p.lora ? [p.lora.A.shape[0]] : [])));
  if (fallback || rs.size > 1) return projs.map((p) => linear(tape, p.label, x, p.W, p.bias, p.lora, dropout));

  const gpu = tape.gpu;
  const [n, inF] = x.shape;
  const adapted = projs.filter((p) => p.lora);
  const loras = adapted.map((p) => p.lora!);
  const G = loras.length;
  const r = G > 0 ? loras[0].A.shape[0] : 0;
  const S = Math.ceil((n * r) / 64) * 64;
  const stride = uniformStride(loras);
  const u = G > 0 ? tape.tensor(`${label}.u`, [G, S]) : undefined;
  const slice = (b: Binding, i: number): Binding => range(b, i * S * 4, n * r * 4);

  if (u) {
    tape.op(`${label}.down`, [x, ...loras.map((l) => l.A)], [u], (b) => {
      if (stride > 0) {
        const [buf, off] = start(b(loras[0].A));
        const A = { buffer: buf, offset: off, size: (G - 1) * stride + loras[0].A.bytes };
        return matmul(gpu, `${label}.down`, { M: n, N: r, K1: inF, p1: b(x), q1: A, transQ: true, c: b(u), batch: G, batchStrides: { p1: 0, q1: stride / 4, c: S } });
      }
      return loras.map((l, i) => matmul(gpu, `${adapted[i].label}.down`, { M: n, N: r, K1: inF, p1: b(x), q1: b(l.A), transQ: true, c: slice(b(u), i) }));
    });
  }
  const ys = projs.map((p) => {
    const outF = p.W.shape[0];
    const y = tape.propagate(tape.tensor(p.label, [n, outF]), p.lora ? [x, p.lora.A, p.lora.B] : [x]);
    const i = adapted.indexOf(p);
    const reads = [x, p.W, ...(p.bias ? [p.bias] : []), ...(p.lora ? [u!, p.lora.B] : [])];
    const forward = (xi: Tensor, yi: Tensor, l: string) => tape.op(l, reads.map((t) => (t === x ? xi : t)), [yi], (b) => matmul(gpu, l, {
      M: n, N: outF, K1: inF, p1: b(xi), q1: b(p.W), transQ: true, bias: p.bias && b(p.bias), c: b(yi),
      ...(p.lora && { K2: r, p2: slice(b(u!), i), q2: b(p.lora.B), alpha2: p.lora.scale }),
    }));
    forward(x, y, `${p.label}.forward`);
    // Recomputing a frozen projection from x (itself read through tape.saved) costs its GEMM again.
    if (options.recompute && !p.lora) {
      tape.recomputable(y, () => {
        const y2 = tape.tensor(`${p.label}.recomputed`, [n, outF]);
        forward(tape.saved(x), y2, `${p.label}.recompute`);
        return y2;
      });
    }
    return y;
  });

  const xIn = x;
  tape.onBackward(() => {
    const live = projs.map((p, i) => ({ p, y: ys[i] })).filter(({ y }) => tape.hasGrad(y));
    if (live.length === 0) return;
    const dys = new Map(live.map(({ p, y }) => [p, tape.grad(y)]));
    const du = G > 0 ? tape.tensor(`${label}.du`, [G, S]) : undefined;
    // du_i and dB_i per adapted projection with a gradient.
    adapted.forEach((p, i) => {
      const dy = dys.get(p);
      if (!dy) return;
      const l = p.lora!;
      const dB = tape.gradSlot(l.B).grad;
      const outF = p.W.shape[0];
      tape.op(`${p.label}.backward`, [dy, l.B, u!], [du!, dB], (b) => [
        matmul(gpu, `${p.label}.backward_du`, { M: n, N: r, K1: outF, p1: b(dy), q1: b(l.B), alpha1: l.scale, c: slice(b(du!), i) }),
        matmul(gpu, `${p.label}.backward_dB`, { M: outF, N: r, K1: n, p1: b(dy), q1: slice(b(u!), i), alpha1: l.scale, transP: true, c: b(dB), accumulate: true }),
      ]);
    });
    const withDu = adapted.filter((p) => dys.has(p));
    if (withDu.length > 0) {
      const dAs = withDu.map((p) => tape.gradSlot(p.lora!.A).grad);
      const all = withDu.length === G && stride > 0;
      const x = tape.saved(xIn);
      tape.op(`${label}.backward_dA`, [du!, x], dAs, (b) => {
        if (all) {
          const [buf, off] = start(b(dAs[0]));
          const c = { buffer: buf, offset: off, size: (G - 1) * stride + dAs[0].bytes };
          return matmul(gpu, `${label}.backward_dA`, { M: r, N: inF, K1: n, p1: b(du!), q1: b(x), transP: true, c, accumulate: true, batch: G, batchStrides: { p1: S, q1: 0, c: stride / 4 } });
        }
        return withDu.map((p, k) => matmul(gpu, `${p.label}.backward_dA`, {
          M: r, N: inF, K1: n, p1: slice(b(du!), adapted.indexOf(p)), q1: b(x), transP: true, c: b(dAs[k]), accumulate: true,
        }));
      });
    }
    if (!x.requiresGrad) return;
    // dx = Σ dy_i·W_i + du_i·A_i, every term a (N, K)·(K, IN) product: two per GEMM.
    type Term = { p: (b: (t: Tensor) => Binding) => Binding; q: Tensor; K: number; alpha: number; reads: Tensor[] };
    const terms: Term[] = [];
    for (const { p } of live) {
      const dy = dys.get(p)!;
      terms.push({ p: (b) => b(dy), q: p.W, K: p.W.shape[0], alpha: 1, reads: [dy, p.W] });
      if (p.lora) {
        const i = adapted.indexOf(p);
        terms.push({ p: (b) => slice(b(du!), i), q: p.lora.A, K: r, alpha: 1, reads: [du!, p.lora.A] });
      }
    }
    const slot = tape.gradSlot(x);
    tape.op(`${label}.backward_dx`, terms.flatMap((t) => t.reads), [slot.grad], (b) => {
      const out = [];
      for (let k = 0; k < terms.length; k += 2) {
        const [t1, t2] = [terms[k], terms[k + 1]];
        const spec: GemmSpec = {
          M: n, N: inF, K1: t1.K, p1: t1.p(b), q1: b(t1.q), alpha1: t1.alpha, c: b(slot.grad), accumulate: k > 0 || slot.accumulate,
          ...(t2 && { K2: t2.K, p2: t2.p(b), q2: b(t2.q), alpha2: t2.alpha }),
        };
        out.push(matmul(gpu, `${label}.backward_dx${k / 2}`, spec));
      }
      return out;
    });
  });
  return ys;
}
