// The Teach playground's layer: a seeded frozen W (D, K), one input x, and rank-16 factors A16 (16, K) and
// B16 (D, 16). The rank-r adapter is the first r rows of A16 and the first r columns of B16, so moving the r
// slider adds or drops one rank-1 term B[:, i]·A[i, :] and leaves the others alone instead of drawing new
// matrices. Pure data and arithmetic on settings: no React, no GPU (the engine computes y and ΔW), and the
// browser test imports it to recompute y on the CPU.
//
// Dimensions, as in the LoRA paper: D = out features (rows of W), K = in features, r = rank.

import type { Matrix } from '../../worker/protocol';
import { mulberry32 } from '../../util/random';

export const D = 16;
export const K = 16;
export const MAX_RANK = 16;
export const MAX_ALPHA = 64;
export const MAX_SEED = 99_999;

export interface PlaygroundSettings {
  /** rank, 1..MAX_RANK */
  r: number;
  /** α, an integer 0..MAX_ALPHA; the update is scaled by α/r */
  alpha: number;
  /** draws W, x, A16 and B16; 0..MAX_SEED */
  seed: number;
}

export const DEFAULT_PLAYGROUND: PlaygroundSettings = { r: 4, alpha: 8, seed: 1 };

export interface PlaygroundLayer {
  W: Matrix; // (D, K) frozen
  A: Matrix; // (r, K)
  B: Matrix; // (D, r)
  x: Matrix; // (1, K)
}

/**
 * The seed's layer cut to rank r. Entries are uniform in ±amplitude and rounded to two decimals, so the
 * numbers read well on hover. With A and B uniform in ±0.5 (std ≈ 0.29), an entry of ΔW = (α/r)·B·A has
 * std ≈ (α/r)·√r·0.083: the default r = 4, α = 8 gives an update about as large as W itself.
 */
export function playgroundLayer(seed: number, r: number): PlaygroundLayer {
  const rand = mulberry32(seed);
  const draw = (rows: number, cols: number, amplitude: number): Matrix =>
    Array.from({ length: rows }, () => Array.from({ length: cols }, () => Math.round((2 * rand() - 1) * amplitude * 100) / 100 || 0));
  // One fixed order of draws, so a seed always gives the same four matrices whatever r is.
  const W = draw(D, K, 0.5);
  const x = draw(1, K, 1);
  const A16 = draw(MAX_RANK, K, 0.5);
  const B16 = draw(D, MAX_RANK, 0.5);
  return { W, x, A: A16.slice(0, r), B: B16.map((row) => row.slice(0, r)) };
}

function clampInt(v: unknown, min: number, max: number, fallback: number): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? Math.min(max, Math.max(min, Math.round(n))) : fallback;
}

/** Settings from anything (a URL, a text field): out-of-range values are clamped, unreadable ones take the default. */
export function clampSettings(s: { r?: unknown; alpha?: unknown; seed?: unknown }): PlaygroundSettings {
  return {
    r: clampInt(s.r, 1, MAX_RANK, DEFAULT_PLAYGROUND.r),
    alpha: clampInt(s.alpha, 0, MAX_ALPHA, DEFAULT_PLAYGROUND.alpha),
    seed: clampInt(s.seed, 0, MAX_SEED, DEFAULT_PLAYGROUND.seed),
  };
}

export function sameSettings(a: PlaygroundSettings | undefined, b: PlaygroundSettings): boolean {
  return !!a && a.r === b.r && a.alpha === b.alpha && a.seed === b.seed;
}

/** Trainable numbers of a (d, k) layer: LoRA's r·(d + k) against full fine-tuning's d·k. */
export function loraParams(r: number, d: number, k: number): { lora: number; full: number } {
  return { lora: r * (d + k), full: d * k };
}

/**
 * What DoRA (use_dora, arXiv:2402.09353) makes of the same layer: each output row of W + ΔW split into its
 * length and its direction, W' = m ⊙ (W + ΔW)/‖W + ΔW‖ with one magnitude m per row. PEFT starts m at ‖W‖,
 * so at that point W' keeps W's row lengths and takes only the direction of LoRA's update.
 * W and ΔW (D, K); returns row lengths (D, 1) and W' (D, K).
 */
export function doraSplit(W: Matrix, deltaW: Matrix): { lengthW: Matrix; lengthUpdated: Matrix; weight: Matrix } {
  const norm = (row: number[]) => Math.hypot(...row);
  const updated = W.map((row, o) => row.map((w, i) => w + deltaW[o][i]));
  const m = W.map(norm);
  return {
    lengthW: m.map((v) => [v]),
    lengthUpdated: updated.map((row) => [norm(row)]),
    weight: updated.map((row, o) => { const n = norm(row); return row.map((v) => (n > 0 ? (m[o] * v) / n : 0)); }),
  };
}
