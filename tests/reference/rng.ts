// Tiny seeded PRNG helpers for deterministic tests.
//
// mulberry32: a 32-bit-state generator, good enough for test data and fully reproducible across
// platforms (only 32-bit integer arithmetic via Math.imul and >>> 0).

/** Returns a function yielding uniform floats in [0, 1), deterministic for a given 32-bit seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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
