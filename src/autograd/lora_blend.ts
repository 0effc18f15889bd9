// The live blend of several LoRA adapters on one projection, for generation:
//   y = x·Wᵀ + bias + Σᵢ sᵢ·(x·Aᵢᵀ)·Bᵢᵀ,   sᵢ = the adapter's own scale with its blend weight wᵢ folded in
// which is PEFT's add_weighted_adapter(combination_type="cat") applied term by term instead of materialised:
// the cat blend's ΔW = Σ wᵢ·sᵢ·Bᵢ·Aᵢ (src/model/blend.ts builds it as one adapter of rank Σ rᵢ) without
// building it, so moving a weight re-records a program and touches neither the base weights nor the
// adapters' buffers. Every pass is a GEMM of the matmul stem:
//   uᵢ = x·Aᵢᵀ                                   P1 = x, Q1 = Aᵢ (TRANS_Q), one per adapter
//   y  = x·Wᵀ + s₀·u₀·B₀ᵀ + bias                 the fused LoRA linear's forward GEMM (lora_linear.ts)
//   y += sᵢ·uᵢ·Bᵢᵀ + sⱼ·uⱼ·Bⱼᵀ                    two more adapters per accumulating two-segment GEMM
// Forward only, and deliberately so: a blend is for trying adapters, training trains one (lora_linear.ts),
// so no gradient flows through here (y does not require one). One adapter is exactly lora_linear's `linear`,
// none the plain projection, so a blend of one at weight 1 is bit for bit the adapter alone.
//
// Shapes: N rows, IN input features, OUT output features, Rᵢ each adapter's rank.

import { linear, type LoraOperand } from './lora_linear';
import { matmul } from './matmul_fast';
import type { Tape, Tensor } from './tape';

/** One adapter of a blend on this projection: A (R, IN), B (OUT, R), and its scale with the blend weight in it. */
export type BlendOperand = Pick<LoraOperand, 'A' | 'B' | 'scale'>;

/** Tape rule (forward only): y (N, OUT) = x·Wᵀ + bias + Σ sᵢ·(x·Aᵢᵀ)·Bᵢᵀ, x (N, IN), W (OUT, IN), bias (OUT). */
export function linearBlend(tape: Tape, label: string, x: Tensor, W: Tensor, bias: Tensor | undefined, terms: readonly BlendOperand[]): Tensor {
  if (terms.length <= 1) return linear(tape, label, x, W, bias, terms[0] && { ...terms[0], dropout: 0 });
  const gpu = tape.gpu;
  const [n, inF] = x.shape;
  const outF = W.shape[0];
  const y = tape.tensor(label, [n, outF]);
  const us = terms.map((t, i) => tape.tensor(`${label}.blend${i}.u`, [n, t.A.shape[0]])); // (N, Rᵢ)
  const reads = [x, W, ...(bias ? [bias] : []), ...terms.flatMap((t) => [t.A, t.B])];
  tape.op(`${label}.blend`, reads, [...us, y], (b) => {
    const r = (i: number) => terms[i].A.shape[0];
    const out = terms.map((t, i) => matmul(gpu, `${label}.blend${i}.down`, { M: n, N: r(i), K1: inF, p1: b(x), q1: b(t.A), transQ: true, c: b(us[i]) }));
    out.push(matmul(gpu, `${label}.blend.forward`, {
      M: n, N: outF, K1: inF, p1: b(x), q1: b(W), K2: r(0), p2: b(us[0]), q2: b(terms[0].B), alpha2: terms[0].scale,
      bias: bias && b(bias), transQ: true, c: b(y),
    }));
    for (let i = 1; i < terms.length; i += 2) {
      const j = i + 1 < terms.length ? i + 1 : undefined;
      out.push(matmul(gpu, `${label}.blend${i}.up`, {
        M: n, N: outF, K1: r(i), p1: b(us[i]), q1: b(terms[i].B), alpha1: terms[i].scale,
        ...(j === undefined ? {} : { K2: r(j), p2: b(us[j]), q2: b(terms[j].B), alpha2: terms[j].scale }),
        transQ: true, accumulate: true, c: b(y),
      }));
    }
    return out;
  });
  return y;
}
