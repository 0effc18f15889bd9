// The projections of one input as one tape rule: a decoder's q, k and v of the normed stream, or its gate and
// up. Each projection computes what `linear` (lora_linear.ts) does, y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ, on the
// same matmul stem, but the projections' GEMMs are grouped into few dispatches (matmul_grouped.ts; issue 14):
//   forward   u_i = x·A_iᵀ, and y_j = x·W_jᵀ + bias_j of every projection without LoRA     one dispatch
//             y_i = x·W_iᵀ + bias_i + s·u_i·B_iᵀ of every adapted projection               one dispatch
//   backward  du_i = s·dy_i·B_i and dB_i += s·dy_iᵀ·u_i of every adapted projection         one split-K dispatch
//             dA_i += du_iᵀ·x, and dx = Σ_i du_i·A_i                                      one split-K dispatch
//             dx += Σ_j dy_j·W_j, one job of one K-segment per projection                  one dispatch
// ("one dispatch" as long as the operands fit the eight storage bindings of a shader stage: x, the W's, the
// adapters' packed slab, u and the outputs; matmulGrouped cuts a group that does not, Qwen2's biased q/k/v,
// into more). A group with LoRA dropout, or with an adapter kind this rule does not know, is recorded by `linear`.
//
// Shapes: N rows, IN input features, OUT_i output features of projection i, R rank, G adapted projections,
// S = N·R rounded up to 64 floats (each adapter's u and du start on a 256-byte binding offset).

import type { Binding } from '../gpu/gpu';
import { matmulGrouped, type GroupedJob } from './matmul_grouped';
import { linear, type DropoutState, type LoraOperand } from './lora_linear';
import { range, type Resolve, type Tape, type Tensor } from './tape';

export interface Projection {
  label: string;
  W: Tensor; //     (OUT, IN) frozen
  bias?: Tensor; // (OUT) frozen
  lora?: LoraOperand;
}

/** The operand fields this rule computes with; an adapter that carries more (a new kind) goes through linear. */
const KNOWN = new Set(['A', 'B', 'scale', 'dropout']);

/**
 * Tape rule: y_i (N, OUT_i) = x·W_iᵀ + bias_i (+ s_i·(x·A_iᵀ)·B_iᵀ) for every projection of `projs`, x (N, IN).
 * `label` names what the group shares: its grouped dispatches (`${label}.forward0`, `.backward_du`, …).
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
  const G = adapted.length;
  const r = G > 0 ? adapted[0].lora!.A.shape[0] : 0;
  const S = Math.ceil((n * r) / 64) * 64;
  const u = G > 0 ? tape.tensor(`${label}.u`, [G, S]) : undefined;
  const slice = (b: Binding, i: number): Binding => range(b, i * S * 4, n * r * 4);
  const frozen = projs.filter((p) => !p.lora);
  const weights = (ps: readonly Projection[]) => ps.flatMap((p) => [p.W, ...(p.bias ? [p.bias] : [])]);

  /** y = x·Wᵀ + bias (+ s·u_i·Bᵀ): the forward job of `p`, writing `y`. */
  const forwardJob = (p: Projection, xt: Tensor, y: Tensor, b: Resolve): GroupedJob => ({
    M: n, N: p.W.shape[0], c: b(y), bias: p.bias && b(p.bias),
    segs: [
      { p: b(xt), q: b(p.W), K: inF, transQ: true },
      ...(p.lora ? [{ p: slice(b(u!), adapted.indexOf(p)), q: b(p.lora.B), K: r, alpha: p.lora.scale, transQ: true }] : []),
    ],
  });
  const ys = projs.map((p) => tape.propagate(tape.tensor(p.label, [n, p.W.shape[0]]), p.lora ? [x, p.lora.A, p.lora.B] : [x]));
  const yOf = (p: Projection) => ys[projs.indexOf(p)];

  if (u || frozen.length > 0) {
    const l = frozen.length > 0 ? `${label}.forward0` : `${label}.down`;
    tape.op(l, [x, ...weights(frozen), ...adapted.map((p) => p.lora!.A)], [...(u ? [u] : []), ...frozen.map(yOf)], (b) => matmulGrouped(gpu, l, [
      ...adapted.map((p, i): GroupedJob => ({ M: n, N: r, c: slice(b(u!), i), segs: [{ p: b(x), q: b(p.lora!.A), K: inF, transQ: true }] })),
      ...frozen.map((p) => forwardJob(p, x, yOf(p), b)),
    ], 'tiled'));
  }
  if (u) {
    const l = `${label}.forward1`;
    tape.op(l, [x, u, ...weights(adapted), ...adapted.map((p) => p.lora!.B)], adapted.map(yOf), (b) =>
      matmulGrouped(gpu, l, adapted.map((p) => forwardJob(p, x, yOf(p), b)), 'tiled'));
  }
  // Recomputing the frozen projections from x (itself read through tape.saved) costs their dispatch again;
  // the first backward that asks for one recomputes them all, in one dispatch.
  if (options.recompute && frozen.length > 0) {
    let copies: Tensor[] | undefined;
    const make = () => {
      if (!copies) {
        const xs = tape.saved(x);
        const made = frozen.map((p) => tape.tensor(`${p.label}.recomputed`, [n, p.W.shape[0]]));
        const l = `${label}.recompute`;
        tape.op(l, [xs, ...weights(frozen)], made, (b) => matmulGrouped(gpu, l, frozen.map((p, i) => forwardJob(p, xs, made[i], b)), 'tiled'));
        copies = made;
      }
      return copies;
    };
    frozen.forEach((p, i) => tape.recomputable(yOf(p), () => make()[i]));
  }

  const xIn = x;
  tape.onBackward(() => {
    const live = projs.filter((p) => tape.hasGrad(yOf(p)));
    if (live.length === 0) return;
    const dy = (p: Projection) => tape.grad(yOf(p));
    const withDu = adapted.filter((p) => live.includes(p));
    const at = (p: Projection) => adapted.indexOf(p);
    const slot = xIn.requiresGrad ? tape.gradSlot(xIn) : undefined;
    if (withDu.length > 0) {
      const du = tape.tensor(`${label}.du`, [G, S]);
      const dBs = withDu.map((p) => tape.gradSlot(p.lora!.B).grad);
      const lb = `${label}.backward_du`;
      tape.op(lb, [...withDu.map(dy), ...withDu.map((p) => p.lora!.B), u!], [du, ...dBs], (b) => matmulGrouped(gpu, lb, [
        ...withDu.map((p): GroupedJob => ({ M: n, N: r, c: slice(b(du), at(p)), segs: [{ p: b(dy(p)), q: b(p.lora!.B), K: p.W.shape[0], alpha: p.lora!.scale }] })),
        ...withDu.map((p, k): GroupedJob => ({
          M: p.W.shape[0], N: r, c: b(dBs[k]), accumulate: true, segs: [{ p: b(dy(p)), q: slice(b(u!), at(p)), K: n, alpha: p.lora!.scale, transP: true }],
        })),
      ], 'splitk'));
      const dAs = withDu.map((p) => tape.gradSlot(p.lora!.A).grad);
      const xs = tape.saved(xIn);
      const la = `${label}.backward_dA`;
      tape.op(la, [du, xs, ...(slot ? withDu.map((p) => p.lora!.A) : [])], [...dAs, ...(slot ? [slot.grad] : [])], (b) => matmulGrouped(gpu, la, [
        ...withDu.map((p, k): GroupedJob => ({ M: r, N: inF, c: b(dAs[k]), accumulate: true, segs: [{ p: slice(b(du), at(p)), q: b(xs), K: n, transP: true }] })),
        // dx's LoRA terms, the first to reach dx in this rule: du_i·A_i, each K = R.
        ...(slot ? [{ M: n, N: inF, c: b(slot.grad), accumulate: slot.accumulate, segs: withDu.map((p) => ({ p: slice(b(du), at(p)), q: b(p.lora!.A), K: r })) }] : []),
      ], 'splitk'));
    }
    if (!slot) return;
    // dx += Σ dy_j·W_j, every term a (N, OUT_j)·(OUT_j, IN) product: one job, one K-segment each.
    const Ws = live.map((p) => tape.saved(p.W));
    const lx = `${label}.backward_dx`;
    tape.op(lx, [...live.map(dy), ...Ws], [slot.grad], (b) => matmulGrouped(gpu, lx, [{
      M: n, N: inF, c: b(slot.grad), accumulate: withDu.length > 0 || slot.accumulate, segs: live.map((p, i) => ({ p: b(dy(p)), q: b(Ws[i]), K: p.W.shape[0] })),
    }], 'tiled'));
  });
  return ys;
}
