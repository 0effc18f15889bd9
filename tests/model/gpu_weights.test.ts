// How the base weights are stored on the GPU for each base dtype (src/model/gpu_weights.ts): which format
// each weight gets, that the memory plan's zero weights (no data) take exactly the buffers the real upload
// takes, that the per-tensor uploader refuses what does not belong, and that a fresh DoRA adapter over a
// quantized base starts from the norms of the weights the model computes with (the dequantized ones); and
// generation over a bf16 checkpoint held as bf16 gives the logits of the same values held as float32.

import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadModelDir } from '../../src/cli/files';
import { BASE_DTYPES } from '../../src/model/causal_lm';
import { createModel } from '../../src/model/factory';
import { storedFormat, uploadWeights, weightBuffers, weightUploader } from '../../src/model/gpu_weights';
import { initLora } from '../../src/model/lora';
import { dequantizeNf4, quantizeNf4 } from '../../src/model/quant';
import { loraMagnitudeKey, type AdapterConfig } from '../../src/io/peft';
import { Generator } from '../../src/train/generate';
import { relMaxDiff, testGpu } from '../gpu/test-gpu';

const dir = fileURLToPath(new URL('../fixtures/llama_nf4/', import.meta.url));

describe('base weights on the GPU', () => {
  it('stores the projections in the base dtype, the tables in 16 bits (bf16 under nf4/int8), norms and biases in float32', () => {
    const q = 'model.layers.0.self_attn.q_proj.weight', down = 'model.layers.3.mlp.down_proj.weight';
    const embed = 'model.embed_tokens.weight', head = 'lm_head.weight';
    const norm = 'model.layers.0.input_layernorm.weight', bias = 'model.layers.0.self_attn.k_proj.bias', qNorm = 'model.layers.0.self_attn.q_norm.weight';
    const table = { f32: 'f32', bf16: 'bf16', f16: 'f16', nf4: 'bf16', int8: 'bf16' } as const;
    for (const d of BASE_DTYPES) {
      expect([q, down].map((n) => storedFormat(n, d)), d).toEqual([d, d]);
      expect([embed, head].map((n) => storedFormat(n, d)), d).toEqual([table[d], table[d]]);
      expect([norm, bias, qNorm, 'model.norm.weight'].map((n) => storedFormat(n, d)), d).toEqual(['f32', 'f32', 'f32', 'f32']);
    }
  });

  it('the memory plan\'s zero weights take exactly the buffers the real upload takes, in every dtype', async () => {
    const gpu = await testGpu();
    const { config, weights } = await loadModelDir(`${dir}model`);
    for (const d of BASE_DTYPES) {
      const real = uploadWeights(gpu, config, weights, d), zeros = uploadWeights(gpu, config, null, d);
      const sizes = (w: typeof real) => [...w].map(([name, s]) => `${name} ${s.format} ${[s.data, s.scales, s.scaleCodes].map((b) => b?.size)}`);
      expect(sizes(zeros), d).toEqual(sizes(real));
      gpu.releaseAll([...weightBuffers(real), ...weightBuffers(zeros)]);
    }
  });

  it('the uploader refuses a name the config lacks, a wrong length, a weight put twice, and a missing one', async () => {
    const gpu = await testGpu();
    const { config, weights } = await loadModelDir(`${dir}model`);
    const up = weightUploader(gpu, config, 'nf4');
    const q = 'model.layers.0.self_attn.q_proj.weight';
    expect(() => up.put('model.layers.9.self_attn.q_proj.weight', new Float32Array(4))).toThrow(/not a weight of this config/);
    expect(() => up.put(q, new Float32Array(4))).toThrow(/has 4 values/);
    up.put(q, weights.get(q)!);
    expect(() => up.put(q, weights.get(q)!)).toThrow(/put twice/);
    expect(() => up.done()).toThrow(/missing/);
  });

  it('a fresh DoRA adapter over an NF4 base starts at the row norms of the dequantized weights', async () => {
    const gpu = await testGpu();
    const { config, weights } = await loadModelDir(`${dir}model`);
    const model = createModel(gpu, config, weights, { baseDtype: 'nf4' });
    const adapter: AdapterConfig = { r: 2, loraAlpha: 4, loraDropout: 0, targetModules: ['q_proj', 'down_proj'], useRslora: false, baseModel: '', useDora: true };
    model.setAdapter(adapter, initLora(config, adapter, 1));
    const got = await model.readAdapter();
    for (const [layer, target, name] of [[0, 'q_proj', 'model.layers.0.self_attn.q_proj.weight'], [1, 'down_proj', 'model.layers.1.mlp.down_proj.weight']] as const) {
      const W = dequantizeNf4(quantizeNf4(weights.get(name)!, { double: true })), out = got.get(loraMagnitudeKey(layer, target))!;
      const inF = W.length / out.length;
      const norms = Array.from(out, (_, o) => Math.hypot(...W.subarray(o * inF, (o + 1) * inF)));
      const plain = Array.from(out, (_, o) => Math.hypot(...weights.get(name)!.subarray(o * inF, (o + 1) * inF)));
      expect(relMaxDiff(out, norms), `${target} magnitude vs ‖dequantized W‖`).toBeLessThan(1e-6);
      expect(relMaxDiff(out, plain), `${target}: NF4 moves the norms, so the check above tells them apart`).toBeGreaterThan(1e-4);
    }
  });

  it('generation over a BF16 checkpoint held as bf16 gives the logits it gives held as float32, bit for bit', async () => {
    const gpu = await testGpu();
    const { config, weights } = await loadModelDir(fileURLToPath(new URL('../fixtures/llama_bf16/model', import.meta.url)));
    const logits = async (baseDtype: 'f32' | 'bf16') => new Generator(createModel(gpu, config, weights, { baseDtype }), 8).nextLogits([1, 5, 9, 2, 7]);
    const [f32, bf16] = [await logits('f32'), await logits('bf16')];
    expect(bf16.length).toBe(config.vocab);
    expect(Array.from(bf16)).toEqual(Array.from(f32));
  });
});
