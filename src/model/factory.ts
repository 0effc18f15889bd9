// createModel: the one place that says which implementation of CausalLM serves a config. Every supported
// architecture (config.ts SUPPORTED_ARCHITECTURES) is a configuration of the one decoder today; an
// architecture that is not a decoder variant gets its own class and a case here.

import type { Gpu } from '../gpu/gpu';
import type { CausalLM, ModelOptions } from './causal_lm';
import type { ModelConfig } from './config';
import { Decoder } from './decoder';
import type { GpuWeights } from './gpu_weights';
import type { Weights } from './weights';

/**
 * A decoder-only model for `config` over `weights` (uploaded to `gpu` here, or already uploaded by a
 * weightUploader (gpu_weights.ts) as a streaming load does; null: zeros of the config's shapes, for the memory
 * plan); no adapter until setAdapter. `options`: how the base is stored, whether layers
 * are recomputed (causal_lm.ts ModelOptions).
 */
export function createModel(gpu: Gpu, config: ModelConfig, weights: Weights | GpuWeights | null, options: ModelOptions = {}): CausalLM {
  return new Decoder(gpu, config, weights, options);
}
