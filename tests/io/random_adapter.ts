// A seeded random LoRA adapter on a tiny base, for the export tests: every factor nonzero (unlike a fresh
// adapter's B = 0), so a transpose, a permutation or a swapped factor shows up in the values.
// With useDora it carries a magnitude vector per projection near 1, as a trained DoRA adapter would.

import type { ExportBase, ExportableAdapter } from '../../src/io/export.ts';
import { LORA_TARGETS, loraKey, loraMagnitudeKey, type AdapterConfig, type LoraTarget } from '../../src/io/peft.ts';
import { mulberry32, randn } from '../reference/rng';

/** Per-target (in, out) of a tiny GQA Llama: hidden 32, 4 query heads and 2 key/value heads of 8, MLP 48. */
export const TINY_DIMS: Record<LoraTarget, { inFeatures: number; outFeatures: number }> = {
  q_proj: { inFeatures: 32, outFeatures: 32 },
  k_proj: { inFeatures: 32, outFeatures: 16 },
  v_proj: { inFeatures: 32, outFeatures: 16 },
  o_proj: { inFeatures: 32, outFeatures: 32 },
  gate_proj: { inFeatures: 32, outFeatures: 48 },
  up_proj: { inFeatures: 32, outFeatures: 48 },
  down_proj: { inFeatures: 48, outFeatures: 32 },
};

export function tinyBase(architecture = 'LlamaForCausalLM', numLayers = 2): ExportBase {
  return {
    architecture,
    heads: 4,
    kvHeads: 2,
    baseModel: 'tiny/llama',
    name: 'tiny-adapter',
    expectation: { numLayers, shapes: (t) => TINY_DIMS[t] },
  };
}

export function randomAdapter(
  overrides: Partial<AdapterConfig> = {},
  numLayers = 2,
  seed = 7,
  dims: Record<LoraTarget, { inFeatures: number; outFeatures: number }> = TINY_DIMS,
): ExportableAdapter {
  const config = { r: 4, loraAlpha: 8, loraDropout: 0.05, targetModules: [...LORA_TARGETS], useRslora: false, baseModel: 'tiny/llama', ...overrides };
  const rng = mulberry32(seed);
  const weights = new Map<string, Float32Array>();
  for (let layer = 0; layer < numLayers; layer++) {
    for (const t of config.targetModules) {
      const { inFeatures, outFeatures } = dims[t];
      weights.set(loraKey(layer, t, 'A'), Float32Array.from(randn(rng, config.r * inFeatures, 0.3)));
      weights.set(loraKey(layer, t, 'B'), Float32Array.from(randn(rng, outFeatures * config.r, 0.3)));
      if (config.useDora) weights.set(loraMagnitudeKey(layer, t), Float32Array.from(randn(rng, outFeatures, 0.1), (v) => 1 + v));
    }
  }
  return { config, weights };
}
