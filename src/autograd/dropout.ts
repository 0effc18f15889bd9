// LoRA dropout on the GPU (shaders/dropout.wgsl): the mask is recomputed from (seed, step, index) in the
// backward, and the step counter is advanced on the GPU, so a recorded training step replays unchanged.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { grid, WG } from './elementwise';

export const DROPOUT_PARAMS: UniformLayout = [['n', 'u32'], ['p', 'f32'], ['seed', 'u32']];

function checkP(p: number): void {
  if (!(p >= 0 && p < 1)) throw new RangeError(`dropout probability must be in [0, 1) (got ${p})`);
}

/** out = x·keep/(1 − p).  x, out (n); counter (1) u32. */
export function dropoutForward(gpu: Gpu, label: string, n: number, p: number, seed: number, counter: Binding, x: Binding, out: Binding): Dispatch {
  checkP(p);
  const params = gpu.uniform(`${label}.dropout_forward.params`, DROPOUT_PARAMS, { n, p, seed: seed >>> 0 });
  // The mask is an integer hash (no flops); one multiply an element; x read, out written.
  return gpu.dispatch(`${label}.dropout_forward`, gpu.pipeline('dropout', 'dropout_forward'), [params, counter, x, out], grid(gpu, Math.ceil(n / WG)),
    { flops: n, bytes: 8 * n });
}

/** dx += g·keep/(1 − p), with the forward's mask.  g, dx (n). */
export function dropoutBackward(gpu: Gpu, label: string, n: number, p: number, seed: number, counter: Binding, g: Binding, dx: Binding): Dispatch {
  checkP(p);
  const params = gpu.uniform(`${label}.dropout_backward.params`, DROPOUT_PARAMS, { n, p, seed: seed >>> 0 });
  // A multiply-add an element; g read, dx read and written.
  return gpu.dispatch(`${label}.dropout_backward`, gpu.pipeline('dropout', 'dropout_backward'), [params, counter, g, dx], grid(gpu, Math.ceil(n / WG)),
    { flops: 2 * n, bytes: 12 * n });
}

/** counter += 1: a new mask for every step. */
export function rngAdvance(gpu: Gpu, label: string, counter: Binding): Dispatch {
  const params = gpu.uniform(`${label}.rng_advance.params`, DROPOUT_PARAMS, { n: 1, p: 0, seed: 0 });
  return gpu.dispatch(`${label}.rng_advance`, gpu.pipeline('dropout', 'rng_advance'), [params, counter], [1, 1, 1], { flops: 0, bytes: 8 });
}

/** The kernel's keep/(1 − p) factor for element i, for tests and CPU references. */
export function dropoutScale(i: number, p: number, seed: number, counter: number): number {
  const hash = (x: number) => {
    let v = x >>> 0;
    v ^= v >>> 16;
    v = Math.imul(v, 0x7feb352d) >>> 0;
    v ^= v >>> 15;
    v = Math.imul(v, 0x846ca68b) >>> 0;
    v ^= v >>> 16;
    return v >>> 0;
  };
  const h = hash((i ^ hash((seed ^ hash(counter)) >>> 0)) >>> 0);
  const u = (h >>> 8) / 16777216;
  const p32 = Math.fround(p);
  return u >= p32 ? Math.fround(1 / Math.fround(1 - p32)) : 0;
}
