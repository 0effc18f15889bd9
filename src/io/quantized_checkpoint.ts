// Quantized checkpoints LoRA Studio does not read (GPTQ, AWQ, bitsandbytes-saved, MLX, FP8, ...): how to
// recognise each, from config.json (transformers' "quantization_config", mlx-lm's "quantization") before any
// weight is read, or from its tensor names when a config does not say, and the one message that refuses them.
//
// This file does not quantize anything (LoRA Studio's own NF4 and int8 schemes are src/model/quant.ts's) and does
// not read files: config.ts and the weight readers hand it what they parsed.

import { UnsupportedError } from './errors.ts';

// transformers' QuantizationMethod values, by the names people know them.
const METHOD_NAMES: Record<string, string> = {
  gptq: 'GPTQ', awq: 'AWQ', bitsandbytes: 'bitsandbytes', aqlm: 'AQLM', quanto: 'Quanto', eetq: 'EETQ', hqq: 'HQQ',
  'compressed-tensors': 'compressed-tensors', fbgemm_fp8: 'FBGEMM FP8', fp8: 'FP8', torchao: 'torchao', bitnet: 'BitNet',
  vptq: 'VPTQ', spqr: 'SpQR', higgs: 'HIGGS', quark: 'Quark', 'auto-round': 'AutoRound', mxfp4: 'MXFP4', gptqmodel: 'GPTQ',
};

const USE_INSTEAD =
  "Use the model's unquantized checkpoint instead: its bf16, f16 or f32 safetensors (on the Hub, usually the repository the " +
  'quantized one was made from, without a -GPTQ, -AWQ, -bnb-4bit or -4bit suffix).';

/** The quantization config.json declares, in words ('GPTQ ("quant_method": "gptq")'), or undefined for an unquantized model. */
export function quantizationOfConfig(cfg: Record<string, unknown>): string | undefined {
  const q = cfg.quantization_config;
  if (typeof q === 'object' && q !== null && !Array.isArray(q)) {
    const qc = q as Record<string, unknown>;
    const method = qc.quant_method ?? (qc.load_in_4bit || qc.load_in_8bit ? 'bitsandbytes' : undefined);
    if (typeof method !== 'string') return '"quantization_config" (no "quant_method")';
    let name = METHOD_NAMES[method] ?? `"${method}"`;
    if (method === 'bitsandbytes') name += qc.load_in_8bit ? ' 8-bit (LLM.int8)' : ` 4-bit (${typeof qc.bnb_4bit_quant_type === 'string' ? qc.bnb_4bit_quant_type : 'nf4 or fp4'})`;
    return `${name} ("quant_method": ${JSON.stringify(method)})`;
  }
  if (q !== undefined && q !== null) return '"quantization_config"';
  if (cfg.compression_config != null) return 'compressed-tensors ("compression_config")';
  const mlx = cfg.quantization;
  if (typeof mlx === 'object' && mlx !== null && !Array.isArray(mlx)) {
    const bits = (mlx as Record<string, unknown>).bits;
    return `MLX${typeof bits === 'number' ? ` ${bits}-bit` : ''} ("quantization")`;
  }
  return undefined;
}

/** The quantized format a checkpoint's tensor names betray (a config that did not say), or undefined. */
export function quantizationOfTensors(names: Iterable<string>): string | undefined {
  const has = new Set<string>();
  for (const name of names) {
    const dot = name.lastIndexOf('.');
    has.add(name.slice(dot + 1));
    if (name.includes('.quant_state.')) has.add('quant_state');
  }
  if (has.has('qweight')) return has.has('g_idx') ? 'GPTQ (qweight/qzeros/scales/g_idx tensors)' : 'AWQ or GPTQ (qweight/qzeros/scales tensors)';
  if (has.has('absmax') || has.has('quant_map') || has.has('quant_state')) return 'bitsandbytes 4-bit (absmax/quant_map/quant_state tensors)';
  if (has.has('SCB')) return 'bitsandbytes 8-bit (SCB tensors)';
  if (has.has('weight_scale') || has.has('weight_scale_inv')) return 'FP8 (weight_scale tensors)';
  if (has.has('scales') && has.has('biases')) return 'MLX (scales/biases tensors)';
  return undefined;
}

/** Refuses a quantized checkpoint: `file` is where it showed (config.json, a shard), `format` what it is. */
export function refuseQuantized(file: string, format: string): never {
  throw new UnsupportedError(file, `${file}: this checkpoint is quantized with ${format}, which LoRA Studio does not read. ${USE_INSTEAD}`);
}
