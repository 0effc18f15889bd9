// Seeded randomness shared by the engine, the studio and the tests: one definition, so a seed means the
// same numbers everywhere (an adapter's init, a dataset shuffle, a teaching picture, a test's inputs).
// Pure TypeScript with 32-bit integer arithmetic only (Math.imul, >>> 0): identical in every JS engine.

/** mulberry32: a generator with 32 bits of state, yielding uniform floats in [0, 1) for a 32-bit seed. */
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
