// The session's generators, cached: a Generator records its forward program for one length and one adapter
// scale (the scale s = α/r that Try it's α slider multiplies is baked into the program), so each (length,
// scale) gets one, kept for reuse up to a few, least recently used first out, never while in use. Their
// buffers come from Gpu.track and go back to the pool when they are evicted or cleared.
// Not the generation itself (src/model/generate.ts) and not the request checks (session.ts).

import type { Gpu, Tracked } from '../gpu/gpu';
import type { AdapterConfig } from '../io/peft';
import { Generator } from '../train/generate';
import type { CausalLM } from '../model/causal_lm';

interface CachedGenerator extends Tracked<Generator> {
  uses: number;
}

export class GeneratorCache {
  private cache = new Map<string, CachedGenerator>();
  /** Generations in flight. */
  busy = 0;

  constructor(private readonly max = 4) {}

  /**
   * Runs `use` on the generator of `maxLen` positions with `adapter` at `scale` × its α (0: the base model),
   * made on `model` if none is cached.
   */
  async use<T>(model: CausalLM, adapter: AdapterConfig | null, maxLen: number, scale: number, use: (g: Generator) => Promise<T>): Promise<T> {
    const g = this.get(model, adapter ?? undefined, maxLen, scale);
    this.busy++;
    g.uses++;
    try {
      return await use(g.value);
    } finally {
      g.uses--;
      this.busy--;
    }
  }

  private get(model: CausalLM, adapter: AdapterConfig | undefined, maxLen: number, scale: number): CachedGenerator {
    const gpu = model.gpu;
    const key = `${maxLen}/${scale}`;
    let g = this.cache.get(key);
    if (g) {
      this.cache.delete(key); // re-inserted below: the Map's order is the eviction order
    } else {
      // The scale is baked into the recorded program, so the adapter is swapped only while recording.
      model.adapter = adapter && scale !== 0 ? { ...adapter, loraAlpha: adapter.loraAlpha * scale } : undefined;
      try {
        g = { ...gpu.track(() => new Generator(model, maxLen)), uses: 0 };
      } finally {
        model.adapter = adapter;
      }
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

  /** Give every generator's buffers back to `gpu`'s pool (their programs were recorded against the old adapter). */
  clear(gpu: Gpu | null): void {
    if (gpu) for (const g of this.cache.values()) gpu.releaseAll(g.buffers);
    this.cache.clear();
  }
}
