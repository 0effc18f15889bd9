// Qwen3 configs through src/model/config.ts: the q_norm/k_norm weights and projection shapes a config
// implies when head_dim is not hidden / heads, and the refusals that name the field. (The whole model is
// checked against PyTorch in parity.test.ts on tests/fixtures/qwen3.)

import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UnsupportedError } from '../../src/io/errors';
import { parseModelConfig, projectionDims, weightShapes } from '../../src/model/config';

const fixtureConfig = (name: string) => readFileSync(fileURLToPath(new URL(`../fixtures/${name}/model/config.json`, import.meta.url)), 'utf8');
const qwen3 = JSON.parse(fixtureConfig('qwen3')) as Record<string, unknown>;
const withQwen3 = (change: Record<string, unknown>) => JSON.stringify({ ...qwen3, ...change });

describe('Qwen3 config', () => {
  it('reads head_dim apart from hidden / heads, with q/k norms and no attention bias', () => {
    const c = parseModelConfig(fixtureConfig('qwen3'));
    expect(c).toMatchObject({ architecture: 'Qwen3ForCausalLM', hidden: 32, heads: 4, kvHeads: 2, headDim: 16, qkNorm: true, attnBias: false, tied: true });
    const shapes = weightShapes(c);
    expect(shapes.get('model.layers.1.self_attn.q_norm.weight')).toEqual([16]);
    expect(shapes.get('model.layers.1.self_attn.k_norm.weight')).toEqual([16]);
    expect(shapes.get('model.layers.0.self_attn.q_proj.weight')).toEqual([64, 32]);
    expect(shapes.get('model.layers.0.self_attn.k_proj.weight')).toEqual([32, 32]);
    expect(shapes.get('model.layers.0.self_attn.o_proj.weight')).toEqual([32, 64]);
    expect(shapes.has('model.layers.0.self_attn.q_proj.bias')).toBe(false);
    expect(shapes.has('lm_head.weight')).toBe(false);
    expect(projectionDims(c, 'q_proj')).toEqual({ inFeatures: 32, outFeatures: 64 });
    expect(projectionDims(c, 'o_proj')).toEqual({ inFeatures: 64, outFeatures: 32 });
  });

  it('gives Qwen3-0.6B its 2048 × 1024 q_proj and 1024 × 2048 o_proj', () => {
    const c = parseModelConfig(withQwen3({ hidden_size: 1024, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128, intermediate_size: 3072, num_hidden_layers: 28, vocab_size: 151936 }));
    expect(weightShapes(c).get('model.layers.27.self_attn.q_proj.weight')).toEqual([2048, 1024]);
    expect(weightShapes(c).get('model.layers.27.self_attn.o_proj.weight')).toEqual([1024, 2048]);
    expect(weightShapes(c).get('model.layers.27.self_attn.q_norm.weight')).toEqual([128]);
    expect(projectionDims(c, 'k_proj')).toEqual({ inFeatures: 1024, outFeatures: 1024 });
  });

  it('has no q/k norms for the other architectures', () => {
    for (const name of ['llama_gqa', 'qwen2_tied']) {
      const c = parseModelConfig(fixtureConfig(name));
      expect(c.qkNorm, name).toBe(false);
      expect([...weightShapes(c).keys()].filter((k) => k.includes('_norm.weight') && !k.includes('layernorm')), name).toEqual([]);
    }
  });

  it.each([
    ['attention_bias: true (Qwen3 would add an o_proj bias)', { attention_bias: true }, /"attention_bias": true is not supported for Qwen3ForCausalLM/],
    ['sliding-window layers', { layer_types: ['full_attention', 'sliding_attention'] }, /"layer_types" other than "full_attention" .* are not supported/],
  ])('refuses %s, naming the field', (_what, change, message) => {
    expect(() => parseModelConfig(withQwen3(change))).toThrow(UnsupportedError);
    expect(() => parseModelConfig(withQwen3(change))).toThrow(message);
  });
});
