// The Teach panel's worked examples: inputs only. Their outputs are computed by the engine on the GPU,
// never written here, so the panel shows what the kernel really produces.

import type { Matrix } from '../worker/protocol';

export type TeachExampleId = 1 | 2;

export interface TeachExample {
  id: TeachExampleId;
  title: string;
  /** One line under the button; also the button's accessible description. */
  blurb: string;
  /** What to notice in the result. */
  note: string;
  W: Matrix; // (OUT, IN) frozen
  A: Matrix; // (R, IN)
  B: Matrix; // (OUT, R)
  x: Matrix; // (N, IN)
  alpha: number;
}

const eye = (n: number): Matrix => Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));

export const TEACH_EXAMPLES: Record<TeachExampleId, TeachExample> = {
  1: {
    id: 1,
    title: 'Example 1: rank 2 on top of the identity',
    blurb: 'W = I₄, r = 2, α = 4, one input row',
    note: 'W = I passes x through unchanged, so y − x is the LoRA branch alone: (α/r)·(x·Aᵀ)·Bᵀ = 2·[4, 6, 4, 6].',
    W: eye(4),
    A: [[1, 0, 1, 0], [0, 1, 0, 1]],
    B: [[1, 0], [0, 1], [1, 0], [0, 1]],
    x: [[1, 2, 3, 4]],
    alpha: 4,
  },
  2: {
    id: 2,
    title: 'Example 2: a rank-1 update, merged',
    blurb: '4×3 W, r = 1, α = 1, x = I₃',
    note: 'With x = I₃ the layer outputs y = I·(W + ΔW)ᵀ = (W + ΔW)ᵀ: row j of y is column j of the merged weight. Merging W + ΔW once after training gives a plain linear layer with no extra cost at inference.',
    W: [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]],
    A: [[2, -1, 3]],
    B: [[1], [0], [-1], [2]],
    x: eye(3),
    alpha: 1,
  },
};
