// Optimizer updates and global gradient-norm clipping over caller-owned buffers, binding
// shaders/optimizer.wgsl: SGD, AdamW exactly as torch.optim.AdamW (bias corrections computed here in f64),
// and clip_grad_norm_ as three GPU steps (partial Σg² per buffer → one norm → scale every grad) with no
// read-back. These functions build Dispatch records; they encode nothing themselves.
//
// Shapes: n elements per parameter tensor (flattened); P partial-sum slots shared by all gradient buffers.

import type { Binding, Dispatch, DispatchCost, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { grid, WG } from './elementwise';

export const OPTIMIZER_PARAMS: UniformLayout = [
  ['n', 'u32'], ['base', 'u32'], ['count', 'u32'], ['lr', 'f32'],
  ['decay', 'f32'], ['beta1', 'f32'], ['beta2', 'f32'], ['one_minus_beta1', 'f32'],
  ['one_minus_beta2', 'f32'], ['eps', 'f32'], ['step_size', 'f32'], ['bc2_sqrt', 'f32'],
  ['max_norm', 'f32'],
];

/** Most workgroups (= partial-sum slots) grad_norm_sq uses for one buffer; bigger buffers grid-stride. */
export const MAX_NORM_PARTIALS = 64;

/** Every field of OPTIMIZER_PARAMS at a harmless value; each entry overrides the ones it reads. */
const ZERO = {
  n: 0, base: 0, count: 0, lr: 0, decay: 1, beta1: 0, beta2: 0, one_minus_beta1: 1, one_minus_beta2: 1,
  eps: 0, step_size: 0, bc2_sqrt: 1, max_norm: 0,
};

function checkCount(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`parameter element count must be a u32 (got ${n})`);
}

/** perElement: flops, and f32 values read or written per parameter (an operand updated in place counts twice). */
function flat(gpu: Gpu, label: string, entry: string, n: number, values: Partial<typeof ZERO>, buffers: Binding[], perElement: DispatchCost): Dispatch {
  checkCount(n);
  const params = gpu.uniform(`${label}.${entry}.params`, OPTIMIZER_PARAMS, { ...ZERO, ...values, n });
  return gpu.dispatch(`${label}.${entry}`, gpu.pipeline('optimizer', entry), [params, ...buffers], grid(gpu, Math.ceil(n / WG)),
    { flops: perElement.flops * n, bytes: 4 * perElement.bytes * n });
}

/** p −= lr·g.  p, g (n). */
export function sgdStep(gpu: Gpu, label: string, n: number, p: Binding, g: Binding, lr: number): Dispatch {
  return flat(gpu, label, 'sgd_step', n, { lr }, [p, g], { flops: 2, bytes: 3 });
}

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export interface AdamWBuffers {
  p: Binding; // (n) updated in place
  g: Binding; // (n)
  m: Binding; // (n) first moment, zero before step 1
  v: Binding; // (n) second moment, zero before step 1
}

/**
 * The adamw_step uniform values for step `step` (1-based). Exported so a recorded step can rewrite its uniform
 * buffer each step (the bias corrections change with t) instead of rebuilding the dispatch.
 */
export function adamwParams(n: number, hp: AdamWHyper, step: number): Record<string, number> {
  if (!Number.isInteger(step) || step < 1) throw new RangeError(`AdamW step must be an integer ≥ 1 (got ${step}): count from 1`);
  for (const [k, v] of [['beta1', hp.beta1], ['beta2', hp.beta2]] as const) {
    if (!(v >= 0 && v < 1)) throw new RangeError(`AdamW ${k} must be in [0, 1) (got ${v})`);
  }
  // f64 here, like torch's Python-float scalars; the kernel sees them rounded once to f32 (1 − β2 in f32
  // would be 1 − f32(0.999), off by 1.3e-5 relative).
  const bc1 = 1 - Math.pow(hp.beta1, step);
  const bc2 = 1 - Math.pow(hp.beta2, step);
  return {
    ...ZERO, n, lr: hp.lr, decay: 1 - hp.lr * hp.weightDecay, beta1: hp.beta1, beta2: hp.beta2,
    one_minus_beta1: 1 - hp.beta1, one_minus_beta2: 1 - hp.beta2, eps: hp.eps,
    step_size: hp.lr / bc1, bc2_sqrt: Math.sqrt(bc2),
  };
}

/** One torch.optim.AdamW step (amsgrad = False); `step` is 1-based (1 on the first update). */
export function adamwStep(gpu: Gpu, label: string, n: number, b: AdamWBuffers, hp: AdamWHyper, step: number): Dispatch {
  // Decay (1), m (3), v (4), the step with its square root and division (5): 13 flops; p, m, v read and written, g read.
  return flat(gpu, label, 'adamw_step', n, adamwParams(n, hp, step), [b.p, b.g, b.m, b.v], { flops: 13, bytes: 7 });
}

/** Partial-sum slots grad_norm_sq uses for a buffer of n elements. */
export function normPartials(n: number): number {
  return Math.max(1, Math.min(MAX_NORM_PARTIALS, Math.ceil(n / WG)));
}

/** partials[base .. base + normPartials(n)) = per-workgroup Σg² of g (n). */
export function gradNormSq(gpu: Gpu, label: string, n: number, g: Binding, partials: Binding, base: number): Dispatch {
  checkCount(n);
  const params = gpu.uniform(`${label}.grad_norm_sq.params`, OPTIMIZER_PARAMS, { ...ZERO, n, base });
  return gpu.dispatch(`${label}.grad_norm_sq`, gpu.pipeline('optimizer', 'grad_norm_sq'), [params, g, partials], [normPartials(n), 1, 1],
    { flops: 2 * n, bytes: 4 * (n + normPartials(n)) });
}

/** norm = (sqrt(Σ partials[0..count)), min(1, maxNorm/(that + 1e-6))).  partials (P), norm (2). */
export function gradNormFinish(gpu: Gpu, label: string, count: number, partials: Binding, norm: Binding, maxNorm: number): Dispatch {
  if (!(maxNorm > 0)) throw new RangeError(`max gradient norm must be > 0 (got ${maxNorm})`);
  const params = gpu.uniform(`${label}.grad_norm_finish.params`, OPTIMIZER_PARAMS, { ...ZERO, count, max_norm: maxNorm });
  return gpu.dispatch(`${label}.grad_norm_finish`, gpu.pipeline('optimizer', 'grad_norm_finish'), [params, partials, norm], [1, 1, 1],
    { flops: 2 * count + 3, bytes: 4 * (count + 2) });
}

/** g *= norm[1], the clip coefficient gradNormFinish wrote.  g (n). */
export function clipScale(gpu: Gpu, label: string, n: number, g: Binding, norm: Binding): Dispatch {
  return flat(gpu, label, 'clip_scale', n, {}, [g, norm], { flops: 1, bytes: 2 });
}

/** Slots of the partials buffer clipGradNorm needs for these gradient sizes. */
export function clipPartialsSize(sizes: readonly number[]): number {
  return sizes.reduce((s, n) => s + normPartials(n), 0);
}

/** Bytes a binding covers. */
function bindingBytes(b: Binding): number {
  return 'buffer' in b ? (b.size ?? b.buffer.size - (b.offset ?? 0)) : b.size;
}

/**
 * torch.nn.utils.clip_grad_norm_ over several gradient buffers, on the GPU: every grad is scaled by
 * min(1, maxNorm/(norm + 1e-6)) with norm the total L2 norm before clipping, which lands in scratch.norm[0].
 * scratch: partials of clipPartialsSize(sizes) f32 slots and norm of 2 f32; allocated here (and kept for the
 * life of the dispatches) when not given.
 */
export function clipGradNorm(
  gpu: Gpu, label: string, grads: readonly { g: Binding; n: number }[], maxNorm: number,
  scratch?: { partials: Binding; norm: Binding },
): Dispatch[] {
  const slots = clipPartialsSize(grads.map((g) => g.n));
  const partials = scratch?.partials ?? gpu.buffer(`${label}.norm_partials`, slots * 4);
  const norm = scratch?.norm ?? gpu.buffer(`${label}.norm`, 2 * 4);
  if (slots * 4 > bindingBytes(partials)) throw new RangeError(`${label}: the partials buffer holds ${bindingBytes(partials) / 4} slots, clipping needs ${slots}`);
  const out: Dispatch[] = [];
  let base = 0;
  grads.forEach(({ g, n }, i) => {
    out.push(gradNormSq(gpu, `${label}.${i}`, n, g, partials, base));
    base += normPartials(n);
  });
  out.push(gradNormFinish(gpu, label, base, partials, norm, maxNorm));
  grads.forEach(({ g, n }, i) => out.push(clipScale(gpu, `${label}.${i}`, n, g, norm)));
  return out;
}
