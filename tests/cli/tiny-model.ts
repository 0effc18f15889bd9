// A tiny random Llama written as a Hugging Face folder (config.json + model.safetensors), for tests that
// need a model on disk without shipping one.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors } from '../../src/io/safetensors';
import { parseModelConfig, weightShapes } from '../../src/model/config';
import { mulberry32, randn } from '../reference/rng';

export const TINY_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 32, hidden_size: 32, intermediate_size: 64,
  num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, num_hidden_layers: 1, rms_norm_eps: 1e-5,
  rope_theta: 10000, tie_word_embeddings: false, max_position_embeddings: 64, hidden_act: 'silu', torch_dtype: 'float32',
};

export function writeTinyModel(seed = 1, overrides: Record<string, unknown> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'lora-tiny-'));
  const cfgJson = JSON.stringify({ ...TINY_CONFIG, ...overrides });
  const config = parseModelConfig(cfgJson);
  const rng = mulberry32(seed);
  const tensors = [...weightShapes(config)].map(([name, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = name.endsWith('norm.weight') ? new Float32Array(n).fill(1) : Float32Array.from(randn(rng, n, name.includes('embed') ? 0.5 : 0.15));
    return { name, shape, data };
  });
  writeFileSync(join(dir, 'config.json'), cfgJson);
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors, { format: 'pt' }));
  return dir;
}
