// The skinny GEMM of shaders/matmul_splitk.wgsl, behind the same GemmSpec as `gemm` (src/autograd/matmul.ts,
// "version 1", which it is tested against): K split over the threads of a workgroup for shapes where one side
// of C is a LoRA rank and K is long (dA, dB with K = B·T). matmul_fast.ts's gemmChoice decides when it runs.
//
// Shapes: C (M, N) = [C +] alpha1·P1·Q1 + alpha2·P2·Q2 [+ bias], P1 (M, K1), Q1 (K1, N), P2 (M, K2), Q2 (K2, N).

import type { Dispatch, Gpu } from '../gpu/gpu';
import { gemmCost, gemmParams, GEMM_PARAMS, type GemmSpec } from './matmul';

// matmul_splitk.wgsl's Params is gemm's struct.
export { GEMM_PARAMS as MATMUL_SPLITK_PARAMS } from './matmul';

/** The tile's rows: 8 (× 32 columns) when M is the narrow side, 32 (× 8) when N is. TM · TN = 256. */
export type SplitKRows = 8 | 32;

export function splitKRowsFor(M: number, N: number): SplitKRows {
  return M <= N ? 8 : 32;
}

/** One dispatch of the split-K GEMM for `s`; `rows` forces the tile orientation (tests cover both). */
export function gemmSplitK(gpu: Gpu, label: string, s: GemmSpec, rows: SplitKRows = splitKRowsFor(s.M, s.N)): Dispatch {
  const params = gpu.uniform(`${label}.params`, GEMM_PARAMS, gemmParams(s));
  const pipeline = gpu.pipeline('matmul_splitk', 'matmul_splitk', { TRANS_P: s.transP ? 1 : 0, TRANS_Q: s.transQ ? 1 : 0, TM: rows });
  // Unused bindings still need a buffer; p1/q1 stand in (never read when K2 = 0 or has_bias = 0).
  const buffers = [s.p1, s.q1, s.p2 ?? s.p1, s.q2 ?? s.q1, s.bias ?? s.q1, s.c, params];
  const cols = 256 / rows;
  return gpu.dispatch(label, pipeline, buffers, [Math.ceil(s.N / cols), Math.ceil(s.M / rows), s.batch ?? 1], gemmCost(s));
}
