// The DoRA stem (shaders/dora.wgsl): what DoRA (arXiv:2402.09353) adds to a LoRA linear, as PEFT's
// DoraLinearLayer computes it. With g = m / ‖W + s·B·A‖ (one value per output row, the norm detached):
//   forward   y = g ⊙ (x·Wᵀ + s·(x·Aᵀ)·Bᵀ) + bias                         PEFT: result + (g − 1)·(x·Wᵀ) + g·s·B(A(x))
//   backward  dz = g ⊙ dy  (what the LoRA backward then takes as its dy),  dm += Σ_rows dy ⊙ z / ‖W + s·B·A‖
// The GEMMs around these (z and the LoRA backward) are the matmul stem's; lora_linear.ts composes the two
// into the tape rule. These builders make Dispatch records over caller-owned buffers; they encode nothing.
//
// Shapes: N rows, IN input features, OUT output features, R rank.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { grid, WG } from './elementwise';

export const DORA_PARAMS: UniformLayout = [
  ['rows', 'u32'], ['in_f', 'u32'], ['out_f', 'u32'], ['rank', 'u32'], ['scale', 'f32'], ['has_bias', 'u32'], ['has_base', 'u32'],
];

/** Output columns per workgroup of dora_backward (the WGSL `const COLS`). */
const COLS = 32;

export interface DoraDims {
  n: number; // N rows (unused by dora_norm)
  inF: number; // IN
  outF: number; // OUT
  r: number; // R
  scale: number; // s
}

function uniform(gpu: Gpu, label: string, d: DoraDims, flags: { bias?: boolean; base?: boolean } = {}): GPUBuffer {
  for (const [k, v] of [['rows', d.n], ['in_features', d.inF], ['out_features', d.outF], ['rank', d.r]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`DoRA ${k} must be a u32 (got ${v})`);
  }
  return gpu.uniform(`${label}.params`, DORA_PARAMS, {
    rows: d.n, in_f: d.inF, out_f: d.outF, rank: d.r, scale: d.scale, has_bias: flags.bias ? 1 : 0, has_base: flags.base ? 1 : 0,
  });
}

/**
 * norm (OUT) = ‖W + s·B·A‖ per output row.  W (OUT, IN), A (R, IN), B (OUT, R). Written into the magnitude
 * itself, it is PEFT's initialisation of m (the norm of W when B = 0).
 */
export function doraNorm(gpu: Gpu, label: string, d: DoraDims, W: Binding, A: Binding, B: Binding, norm: Binding): Dispatch {
  const params = uniform(gpu, `${label}.dora_norm`, d);
  return gpu.dispatch(`${label}.dora_norm`, gpu.pipeline('dora', 'dora_norm'), [params, W, A, B, norm], grid(gpu, d.outF),
    { flops: d.outF * d.inF * (2 * d.r + 3), bytes: 4 * (d.outF * d.inF * (1 + d.r) + d.outF * d.r + d.outF) });
}

/** y = (m/norm) ⊙ z [+ bias] [+ base].  z, y, base (N, OUT); m, norm, bias (OUT). y must not alias z. */
export function doraForward(
  gpu: Gpu, label: string, d: DoraDims, b: { z: Binding; m: Binding; norm: Binding; bias?: Binding; base?: Binding; y: Binding },
): Dispatch {
  const params = uniform(gpu, `${label}.dora_forward`, d, { bias: !!b.bias, base: !!b.base });
  const n = d.n * d.outF;
  // Unused bindings still need a buffer; z stands in (never read when the flag is 0).
  return gpu.dispatch(`${label}.dora_forward`, gpu.pipeline('dora', 'dora_forward'), [params, b.z, b.m, b.norm, b.bias ?? b.z, b.base ?? b.z, b.y],
    grid(gpu, Math.ceil(n / WG)), { flops: 3 * n, bytes: 4 * n * (b.base ? 3 : 2) });
}

/** dz = (m/norm) ⊙ dy (written); dm += Σ_rows dy ⊙ z / norm.  dy, z, dz (N, OUT); m, norm, dm (OUT). */
export function doraBackward(
  gpu: Gpu, label: string, d: DoraDims, b: { dy: Binding; z: Binding; m: Binding; norm: Binding; dz: Binding; dm: Binding },
): Dispatch {
  const params = uniform(gpu, `${label}.dora_backward`, d);
  const n = d.n * d.outF;
  return gpu.dispatch(`${label}.dora_backward`, gpu.pipeline('dora', 'dora_backward'), [params, b.dy, b.z, b.m, b.norm, b.dz, b.dm],
    grid(gpu, Math.ceil(d.outF / COLS)), { flops: 3 * n, bytes: 4 * (3 * n + 4 * d.outF) });
}
