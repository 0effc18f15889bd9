// LoRA adapter state on the CPU: checking the settings and PEFT's initialisation, with parameters keyed by
// PEFT's own tensor names (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight). The settings
// are PEFT's AdapterConfig (src/io/peft.ts), so what trains is what gets saved.

import { loraKey, type AdapterConfig, type AdapterExpectation } from '../io/peft';
import { LoraStudioError } from '../io/errors';
import { projectionDims, type ModelConfig } from './config';
import { mulberry32 } from '../util/random';

// Re-exported: a seed gives the same adapter everywhere (generation and the bench draw from it too).
export { mulberry32 };

export function checkAdapterSettings(s: AdapterConfig): void {
  if (!Number.isInteger(s.r) || s.r < 1) throw new LoraStudioError('bad-input', `LoRA rank r must be a positive integer (got ${s.r}): use r ≥ 1, typically 4–64.`);
  if (!Number.isFinite(s.loraAlpha)) throw new LoraStudioError('bad-input', `LoRA alpha must be a finite number (got ${s.loraAlpha}).`);
  if (!(s.loraDropout >= 0 && s.loraDropout < 1)) throw new LoraStudioError('bad-input', `LoRA dropout must be in [0, 1) (got ${s.loraDropout}).`);
  if (s.targetModules.length === 0) throw new LoraStudioError('bad-input', 'Choose at least one target module (q_proj and v_proj are the usual start).');
}

/**
 * PEFT's default init: A ~ kaiming_uniform(a = √5), i.e. U(−1/√in, 1/√in); B = 0, so the adapted model
 * starts exactly at the base model. Drawn in layer order, then target order. DoRA's magnitudes are not
 * here: PEFT starts them at the row norms of the base weights, which live on the GPU, so setAdapter
 * computes them there (gpu_weights.ts uploadAdapter) for every magnitude the map lacks.
 */
export function initLora(config: ModelConfig, s: AdapterConfig, seed: number): Map<string, Float32Array> {
  checkAdapterSettings(s);
  const rand = mulberry32(seed);
  const out = new Map<string, Float32Array>();
  for (let l = 0; l < config.layers; l++) {
    for (const t of s.targetModules) {
      const { inFeatures, outFeatures } = projectionDims(config, t);
      const bound = 1 / Math.sqrt(inFeatures);
      const A = new Float32Array(s.r * inFeatures);
      for (let i = 0; i < A.length; i++) A[i] = (2 * rand() - 1) * bound;
      out.set(loraKey(l, t, 'A'), A);
      out.set(loraKey(l, t, 'B'), new Float32Array(outFeatures * s.r));
    }
  }
  return out;
}

/** What this model dictates about an adapter's tensors (io/peft.ts checks adapters against it): its layer count and projection sizes. */
export function adapterExpectation(config: ModelConfig): AdapterExpectation {
  return { numLayers: config.layers, shapes: (t) => projectionDims(config, t) };
}
