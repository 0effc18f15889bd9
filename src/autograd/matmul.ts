// The matmul stem: the general two-segment GEMM contract (GemmSpec, GEMM_PARAMS) and its version-1 kernel
// `gemm` on shaders/matmul.wgsl, the plain tiled reference that the register-blocked matmul_fast.ts is
// tested against (and falls back to). `matmul`, the builder every op of the model calls, picks the device's
// kernel and lives in matmul_fast.ts, the one file that knows both. These functions build Dispatch records
// over caller-owned buffers; they encode nothing. The linear tape rules that use them live in lora_linear.ts
// and lm_head.ts.
//
// Shapes: C (M, N) = [C +] alpha1·P1·Q1 + alpha2·P2·Q2 [+ bias], P1 (M, K1), Q1 (K1, N), P2 (M, K2), Q2 (K2, N).

import type { Binding, Dispatch, DispatchCost, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';

/** Mirrors `struct Params` in shaders/matmul.wgsl (and in matmul_fast.wgsl, which shares the contract). */
export const GEMM_PARAMS: UniformLayout = [
  ['M', 'u32'], ['N', 'u32'], ['K1', 'u32'], ['K2', 'u32'],
  ['ld_p1', 'u32'], ['ld_q1', 'u32'], ['ld_p2', 'u32'], ['ld_q2', 'u32'],
  ['ld_c', 'u32'], ['batch_p1', 'u32'], ['batch_q1', 'u32'], ['batch_p2', 'u32'],
  ['batch_q2', 'u32'], ['batch_c', 'u32'], ['alpha1', 'f32'], ['alpha2', 'f32'],
  ['accumulate', 'u32'], ['has_bias', 'u32'],
];

const TILE = 64;

export interface GemmSpec {
  /** C (M, N) = [C +] alpha1·P1·Q1 + alpha2·P2·Q2 [+ bias] */
  M: number;
  N: number;
  K1: number;
  p1: Binding;
  q1: Binding;
  alpha1?: number;
  K2?: number;
  p2?: Binding;
  q2?: Binding;
  alpha2?: number;
  bias?: Binding;
  c: Binding;
  /** P stored (K, M) instead of (M, K); Q stored (N, K) instead of (K, N). Both segments share the layout. */
  transP?: boolean;
  transQ?: boolean;
  accumulate?: boolean;
  /** Row strides; default to the packed layout. */
  ldP1?: number; ldQ1?: number; ldP2?: number; ldQ2?: number; ldC?: number;
  batch?: number;
  batchStrides?: { p1?: number; q1?: number; p2?: number; q2?: number; c?: number };
}

/** A GEMM builder: `gemm` below (version 1), or matmul_fast.ts's `gemmFast` or `matmul` (the device's choice). */
export type GemmFn = (gpu: Gpu, label: string, s: GemmSpec) => Dispatch;

/** The GEMM_PARAMS values of `s`, with unset row strides filled in from the packed layout. */
export function gemmParams(s: GemmSpec): Record<string, number> {
  const K2 = s.K2 ?? 0;
  // Packed row strides: P (M,K) → K, or (K,M) → M; Q (K,N) → N, or (N,K) → K.
  const ldP = (K: number) => (s.transP ? s.M : K);
  const ldQ = (K: number) => (s.transQ ? K : s.N);
  const bs = s.batchStrides ?? {};
  return {
    M: s.M, N: s.N, K1: s.K1, K2,
    ld_p1: s.ldP1 ?? ldP(s.K1), ld_q1: s.ldQ1 ?? ldQ(s.K1), ld_p2: s.ldP2 ?? ldP(K2), ld_q2: s.ldQ2 ?? ldQ(K2),
    ld_c: s.ldC ?? s.N,
    batch_p1: bs.p1 ?? 0, batch_q1: bs.q1 ?? 0, batch_p2: bs.p2 ?? 0, batch_q2: bs.q2 ?? 0, batch_c: bs.c ?? 0,
    alpha1: s.alpha1 ?? 1, alpha2: s.alpha2 ?? 1,
    accumulate: s.accumulate ? 1 : 0, has_bias: s.bias ? 1 : 0,
  };
}

/** 2·M·N·(K1 + K2) per batch entry; P, Q and bias read once, C written once (and read when accumulating). */
export function gemmCost(s: GemmSpec): DispatchCost {
  const K2 = s.K2 ?? 0, batch = s.batch ?? 1;
  const elements = s.M * s.K1 + s.K1 * s.N + s.M * K2 + K2 * s.N + s.M * s.N * (s.accumulate ? 2 : 1) + (s.bias ? s.N : 0);
  return { flops: 2 * s.M * s.N * (s.K1 + K2) * batch, bytes: 4 * elements * batch };
}

/** One dispatch of the tiled two-segment GEMM, version 1. */
export function gemm(gpu: Gpu, label: string, s: GemmSpec): Dispatch {
  const params = gpu.uniform(`${label}.params`, GEMM_PARAMS, gemmParams(s));
  const pipeline = gpu.pipeline('matmul', 'gemm', { TRANS_P: s.transP ? 1 : 0, TRANS_Q: s.transQ ? 1 : 0 });
  // Unused bindings still need a buffer; p1/q1 stand in (never read when K2 = 0 or has_bias = 0).
  const buffers = [s.p1, s.q1, s.p2 ?? s.p1, s.q2 ?? s.q1, s.bias ?? s.q1, s.c, params];
  return gpu.dispatch(label, pipeline, buffers, [Math.ceil(s.N / TILE), Math.ceil(s.M / TILE), s.batch ?? 1], gemmCost(s));
}
