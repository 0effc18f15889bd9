// The register-blocked, vectorised GEMM of shaders/matmul_fast.wgsl, behind the same GemmSpec as `gemm`
// (src/autograd/matmul.ts, "version 1", which it is tested against), and `matmul`, the builder the model's
// ops call: it runs the device's chosen kernel family, the fast one by default (a tile chosen per shape by
// gemmChoice, below) or version 1 (setGemmKernel), so a test or the bench (src/cli/bench.ts) can run one model
// on each and compare; nothing else changes.
//
// Measured so far only on SwiftShader (CPU), where this kernel gives about 2x version 1's FLOP/s
// (`npm run bench -- --quick`, matmul vs matmul_fast); GPU figures: README, Performance.
//
// Shapes: C (M, N) = [C +] alpha1·P1·Q1 + alpha2·P2·Q2 [+ bias], P1 (M, K1), Q1 (K1, N), P2 (M, K2), Q2 (K2, N).

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import { gemm, gemmCost, gemmParams, GEMM_PARAMS, type GemmSpec } from './matmul';
import { gemmSplitK, splitKRowsFor } from './matmul_splitk';

// matmul_fast.wgsl's Params is gemm's struct, so the two kernels are interchangeable.
export { GEMM_PARAMS as MATMUL_FAST_PARAMS } from './matmul';

export type FastTile = 64 | 128;

/**
 * 128-wide tiles do 4× the work per workgroup of 64-wide ones but leave SMs idle when there are few of them:
 * below about one wave of an H100 (132 SMs) the 64-wide tile is used.
 */
const MIN_WORKGROUPS_FOR_128 = 128;

export function fastTileFor(M: number, N: number, batch = 1): FastTile {
  return Math.ceil(M / 128) * Math.ceil(N / 128) * batch >= MIN_WORKGROUPS_FOR_128 ? 128 : 64;
}

/**
 * The kernel binds every operand as array<vec4<f32>>, so a binding must span a multiple of 16 bytes. Whole
 * buffers from Gpu.buffer already do; a range is widened to the next 16 bytes when its buffer has them.
 * null: it cannot be (the caller falls back to version 1).
 */
function vec4Binding(b: Binding): Binding | null {
  if (!('buffer' in b)) return b.size % 16 === 0 ? b : null;
  const offset = b.offset ?? 0;
  const size = b.size ?? b.buffer.size - offset;
  const widened = Math.ceil(size / 16) * 16;
  if (offset % 16 !== 0 || offset + widened > b.buffer.size) return null;
  return { buffer: b.buffer, offset, size: widened };
}

/**
 * One dispatch of the fast GEMM for `s`, or of version 1's `gemm` when a binding cannot be viewed as vec4s.
 * `tile` forces the tile width (the bench compares both); by default fastTileFor picks it.
 */
export function gemmFast(gpu: Gpu, label: string, s: GemmSpec, tile?: FastTile): Dispatch {
  const operands = [s.p1, s.q1, s.p2 ?? s.p1, s.q2 ?? s.q1, s.bias ?? s.q1, s.c].map(vec4Binding);
  if (operands.some((b) => b === null)) return gemm(gpu, label, s);
  const v = gemmParams(s);
  // Whole-vec4 loads and stores need every row, leading dimension and batch offset to start on a vec4, and
  // every extent to be a multiple of 4 so that no vec4 straddles a matrix edge.
  const aligned = [v.M, v.N, v.K1, v.K2, v.ld_p1, v.ld_q1, v.ld_p2, v.ld_q2, v.ld_c, v.batch_p1, v.batch_q1, v.batch_p2, v.batch_q2, v.batch_c]
    .every((x) => x % 4 === 0);
  const width = tile ?? fastTileFor(s.M, s.N, s.batch ?? 1);
  const params = gpu.uniform(`${label}.params`, GEMM_PARAMS, v);
  const pipeline = gpu.pipeline('matmul_fast', 'matmul_fast', {
    TRANS_P: s.transP ? 1 : 0, TRANS_Q: s.transQ ? 1 : 0, ALIGNED: aligned ? 1 : 0, WG: width / 8,
  });
  return gpu.dispatch(label, pipeline, [...(operands as Binding[]), params], [Math.ceil(s.N / width), Math.ceil(s.M / width), s.batch ?? 1], gemmCost(s));
}

// ---- the device's choice ------------------------------------------------------------------------------

export type GemmKernel = 'v1' | 'fast';

const chosen = new WeakMap<Gpu, GemmKernel>();

/** Sets the GEMM kernel for every model recorded on `gpu` from now on. */
export function setGemmKernel(gpu: Gpu, kernel: GemmKernel): void {
  chosen.set(gpu, kernel);
}

export function gemmKernel(gpu: Gpu): GemmKernel {
  return chosen.get(gpu) ?? 'fast';
}

// ---- the tile for a shape ------------------------------------------------------------------------------

/** A LoRA rank or less: the narrow side of the adapters' own GEMMs (r = 8 in the bench, up to 16 in practice). */
const SKINNY_MAX = 16;
/** Below this, each of the 16 K slices would sum fewer than 16 terms: the split does not pay for its reduction. */
const SPLITK_MIN_K = 256;

export type GemmChoice = { kernel: 'splitk'; rows: 8 | 32 } | { kernel: 'fast'; tile: FastTile };

/**
 * The fast family's kernel for a shape. The rule:
 * - skinny, split-K (matmul_splitk.wgsl, 8×32 or 32×8 tiles, K split 16 ways inside a workgroup): one side of
 *   C is at most SKINNY_MAX and K is at least the other side and SPLITK_MIN_K — the adapters' dA = duᵀ·x (r, C) and
 *   dB = dyᵀ·u (O, r) with K = B·T, where a 64-wide tile would be 7/8 empty and loop over all of K alone;
 * - otherwise the register-blocked tile (matmul_fast.wgsl): 128×128 when that still gives about one wave of
 *   workgroups (fastTileFor), else 64×64.
 * The LoRA down projection u = x·Aᵀ (B·T, r) and du = dy·B are narrow too; while their K (the layer's width)
 * is shorter than their B·T rows, enough 64-row tiles exist and they stay on the fast kernel (SmolLM2-135M at
 * 8 × 256); where K reaches B·T (TinyLlama's 2048 at 8 × 256) they split K too.
 */
export function gemmChoice(s: Pick<GemmSpec, 'M' | 'N' | 'K1' | 'K2' | 'batch'>): GemmChoice {
  const K = s.K1 + (s.K2 ?? 0);
  if (Math.min(s.M, s.N) <= SKINNY_MAX && K >= Math.max(s.M, s.N, SPLITK_MIN_K)) return { kernel: 'splitk', rows: splitKRowsFor(s.M, s.N) };
  return { kernel: 'fast', tile: fastTileFor(s.M, s.N, s.batch ?? 1) };
}

/** One GEMM dispatch on the device's chosen kernel: version 1, or the fast family's kernel for this shape (gemmChoice). */
export function matmul(gpu: Gpu, label: string, s: GemmSpec): Dispatch {
  if (gemmKernel(gpu) === 'v1') return gemm(gpu, label, s);
  const choice = gemmChoice(s);
  return choice.kernel === 'splitk' ? gemmSplitK(gpu, label, s, choice.rows) : gemmFast(gpu, label, s, choice.tile);
}
