// Recognising quantized checkpoints (src/io/quantized_checkpoint.ts) from config.json and from tensor names, as
// transformers, AutoGPTQ, AutoAWQ, bitsandbytes and mlx-lm save them; and the safetensors reader naming the
// format, not only the dtype, when a file of packed integer weights reaches it. Whole model folders with these
// are refused through loadModel in malformed.test.ts.

import { describe, expect, it } from 'vitest';
import { UnsupportedError } from '../../src/io/errors';
import { quantizationOfConfig, quantizationOfTensors } from '../../src/io/quantized_checkpoint';
import { parseSafetensors } from '../../src/io/safetensors';

describe('quantization declared in config.json', () => {
  it.each([
    [{ quantization_config: { quant_method: 'gptq', bits: 4, group_size: 128 } }, 'GPTQ ("quant_method": "gptq")'],
    [{ quantization_config: { quant_method: 'awq', bits: 4 } }, 'AWQ ("quant_method": "awq")'],
    [{ quantization_config: { quant_method: 'bitsandbytes', load_in_4bit: true, bnb_4bit_quant_type: 'fp4' } }, 'bitsandbytes 4-bit (fp4) ("quant_method": "bitsandbytes")'],
    [{ quantization_config: { quant_method: 'bitsandbytes', load_in_8bit: true } }, 'bitsandbytes 8-bit (LLM.int8) ("quant_method": "bitsandbytes")'],
    [{ quantization_config: { load_in_4bit: true } }, 'bitsandbytes 4-bit (nf4 or fp4) ("quant_method": "bitsandbytes")'],
    [{ quantization_config: { quant_method: 'compressed-tensors' } }, 'compressed-tensors ("quant_method": "compressed-tensors")'],
    [{ quantization_config: { quant_method: 'hqq' } }, 'HQQ ("quant_method": "hqq")'],
    [{ quantization_config: { bits: 4 } }, '"quantization_config" (no "quant_method")'],
    [{ quantization_config: 'int4' }, '"quantization_config"'],
    [{ compression_config: { format: 'int-quantized' } }, 'compressed-tensors ("compression_config")'],
    [{ quantization: { group_size: 64, bits: 8 } }, 'MLX 8-bit ("quantization")'],
  ])('names %j', (config, name) => {
    expect(quantizationOfConfig(config)).toBe(name);
  });

  it('finds nothing in an unquantized config', () => {
    for (const config of [{}, { quantization_config: null }, { torch_dtype: 'bfloat16' }]) expect(quantizationOfConfig(config)).toBeUndefined();
  });
});

describe('quantization betrayed by tensor names', () => {
  const q = 'model.layers.0.self_attn.q_proj';
  it.each([
    [[`${q}.qweight`, `${q}.qzeros`, `${q}.scales`, `${q}.g_idx`], /^GPTQ/],
    [[`${q}.qweight`, `${q}.qzeros`, `${q}.scales`], /^AWQ or GPTQ/],
    [[`${q}.weight`, `${q}.weight.absmax`, `${q}.weight.quant_map`, `${q}.weight.quant_state.bitsandbytes__nf4`], /^bitsandbytes 4-bit/],
    [[`${q}.weight`, `${q}.SCB`, `${q}.weight_format`], /^bitsandbytes 8-bit/],
    [[`${q}.weight`, `${q}.weight_scale_inv`], /^FP8/],
    [[`${q}.weight`, `${q}.scales`, `${q}.biases`], /^MLX/],
  ])('names %j', (names, format) => {
    expect(quantizationOfTensors(names)).toMatch(format);
  });

  it('finds nothing in an unquantized checkpoint (biases, norms, rotary caches)', () => {
    expect(quantizationOfTensors([`${q}.weight`, `${q}.bias`, 'model.norm.weight', 'model.rotary_emb.inv_freq', 'lm_head.weight'])).toBeUndefined();
  });
});

describe('the safetensors reader', () => {
  /** A file of the given [name, dtype, shape] tensors, zero-filled. */
  function file(tensors: [string, string, number[]][]): Uint8Array {
    const bytes: Record<string, number> = { U8: 1, I8: 1, F32: 4, F16: 2, I32: 4 };
    const header: Record<string, unknown> = {};
    let at = 0;
    for (const [name, dtype, shape] of tensors) {
      const size = shape.reduce((a, d) => a * d, 1) * bytes[dtype];
      header[name] = { dtype, shape, data_offsets: [at, at + size] };
      at += size;
    }
    const h = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(8 + h.length + at);
    new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
    out.set(h, 8);
    return out;
  }

  it('names bitsandbytes rather than the U8 dtype of its packed weights', () => {
    const bnb = file([['w.weight', 'U8', [8, 1]], ['w.weight.absmax', 'F32', [1]], ['w.weight.quant_map', 'F32', [16]]]);
    expect(() => parseSafetensors(bnb, 'shard.safetensors')).toThrow(UnsupportedError);
    expect(() => parseSafetensors(bnb, 'shard.safetensors')).toThrow(/^shard\.safetensors: this checkpoint is quantized with bitsandbytes 4-bit .*unquantized checkpoint/);
  });

  it('still names the dtype of an integer tensor that is no known format', () => {
    expect(() => parseSafetensors(file([['w.weight', 'I8', [4]]]), 'x.safetensors')).toThrow(/tensor "w\.weight" has dtype I8, which LoRA Studio does not load/);
  });
});
