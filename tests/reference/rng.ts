// Seeded random test data: normal, uniform and integer samples drawn from the engine's own mulberry32
// (src/util/random.ts), so a test's inputs are the same on every platform.

import { mulberry32 } from '../../src/util/random';

export { mulberry32 };

/** n normal samples with mean 0 and standard deviation `std` (Box–Muller over `rng`). */
export function randn(rng: () => number, n: number, std = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    // 1 - rng() lies in (0, 1], so the log is finite.
    const u1 = 1 - rng();
    const u2 = rng();
    const rad = Math.sqrt(-2 * Math.log(u1));
    out[i] = std * rad * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = std * rad * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** n uniform samples in [lo, hi). */
export function randu(rng: () => number, n: number, lo = 0, hi = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rng();
  return out;
}

/** n uniform integers in [0, max). */
export function randint(rng: () => number, n: number, max: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(max - 1, Math.floor(rng() * max));
  return out;
}
