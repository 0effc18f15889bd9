// The session's generators, cached: a Generator records its forward program for one length and one blend
// (which adapters at which weights: the held adapter at Try it's α multiplier, attached library adapters at
// their sliders' weights; their scales are baked into the program), so each (length, blend) gets one, kept
// for reuse up to a few, least recently used first out, never while in use. Switching between adapters is
// choosing another program over the same base weights and adapter buffers: nothing is uploaded again. Their
// buffers come from Gpu.track and go back to the pool when they are evicted or cleared.
// Not the generation itself (src/train/generate.ts) and not the request checks (session.ts, try_adapters.ts).

import type { Gpu, Tracked } from '../gpu/gpu';
import { Generator } from '../train/generate';
import type { BlendTerm, CausalLM } from '../model/causal_lm';

interface CachedGenerator extends Tracked<Generator> {
  uses: number;
}

/** The terms that act (weight ≠ 0): a blend with only zero weights is the base model, and shares its program. */
export function actingTerms(blend: readonly BlendTerm[]): BlendTerm[] {
  return blend.filter((t) => t.weight !== 0);
}

export class GeneratorCache {
  private cache = new Map<string, CachedGenerator>();
  /** Generations in flight. */
  busy = 0;
  /** Generators recorded so far (a test's proof that a cached one was reused). */
  built = 0;

  constructor(private readonly max = 4) {}

  /** Runs `use` on the generator of `maxLen` positions with `blend` ([]: the base model), made on `model` if none is cached. */
  async use<T>(model: CausalLM, blend: readonly BlendTerm[], maxLen: number, use: (g: Generator) => Promise<T>): Promise<T> {
    const g = this.get(model, actingTerms(blend), maxLen);
    this.busy++;
    g.uses++;
    try {
      return await use(g.value);
    } finally {
      g.uses--;
      this.busy--;
    }
  }

  private get(model: CausalLM, blend: BlendTerm[], maxLen: number): CachedGenerator {
    const gpu = model.gpu;
    const key = `${maxLen}/${JSON.stringify(blend.map((t) => [t.id, t.weight]))}`;
    let g = this.cache.get(key);
    if (g) {
      this.cache.delete(key); // re-inserted below: the Map's order is the eviction order
    } else {
      g = { ...gpu.track(() => new Generator(model, maxLen, blend)), uses: 0 };
      this.built++;
    }
    this.cache.set(key, g);
    for (const [k, old] of this.cache) {
      if (this.cache.size <= this.max) break;
      if (old.uses > 0 || old === g) continue;
      gpu.releaseAll(old.buffers);
      this.cache.delete(k);
    }
    return g;
  }

  /** Give every generator's buffers back to `gpu`'s pool (their programs were recorded against adapters that changed). */
  clear(gpu: Gpu | null): void {
    if (gpu) for (const g of this.cache.values()) gpu.releaseAll(g.buffers);
    this.cache.clear();
  }
}
