// The model config: a Hugging Face config.json read into the dimensions the engine needs, with every
// refusal naming the file, the field and what is supported. No weights, no GPU here.
//
// Glossary: C hidden size, H query heads, KV key/value heads, D head dim, I MLP intermediate size,
// L layers, V vocabulary.

import { ConfigError, UnsupportedError } from '../io/errors';
import { quantizationOfConfig, refuseQuantized } from '../io/quantized_checkpoint';

export const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'Qwen2ForCausalLM', 'MistralForCausalLM', 'Qwen3ForCausalLM'] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

export interface ModelConfig {
  architecture: Architecture;
  hidden: number; // C
  heads: number; // H
  kvHeads: number; // KV
  headDim: number; // D
  intermediate: number; // I
  layers: number; // L
  vocab: number; // V
  rmsEps: number;
  ropeTheta: number;
  tied: boolean;
  /** q/k/v projections carry biases (Qwen2; attention_bias elsewhere is refused, see parseModelConfig). */
  attnBias: boolean;
  /** Per-head RMSNorm of q and k (weights (D)) between the projection and RoPE (Qwen3). */
  qkNorm: boolean;
  maxPositions: number;
  bosTokenId?: number;
  eosTokenId?: number | number[];
}

function positiveInt(file: string, cfg: Record<string, unknown>, key: string, fallback?: number): number {
  const v = cfg[key] ?? fallback;
  if (v === undefined) throw new ConfigError(file, `${file}: "${key}" is missing; a ${cfg.architectures ?? 'causal LM'} config needs it.`);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ConfigError(file, `${file}: "${key}" must be a positive integer (got ${JSON.stringify(v)}).`);
  return v;
}

function positiveNumber(file: string, cfg: Record<string, unknown>, key: string, fallback: number): number {
  const v = cfg[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ConfigError(file, `${file}: "${key}" must be a positive number (got ${JSON.stringify(v)}).`);
  return v;
}

export function parseModelConfig(text: string, file = 'config.json'): ModelConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(file, `${file}: not valid JSON (${(e as Error).message}). Download the model's config.json again.`, e);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(file, `${file}: expected a JSON object.`);
  const cfg = raw as Record<string, unknown>;
  const archs = cfg.architectures;
  if (!Array.isArray(archs) || archs.length === 0 || typeof archs[0] !== 'string') {
    throw new ConfigError(file, `${file}: "architectures" is missing; expected one of ${SUPPORTED_ARCHITECTURES.join(', ')}.`);
  }
  const architecture = archs[0] as string;
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(architecture)) {
    throw new UnsupportedError(file, `${file}: architecture ${architecture} is not supported; LoRA Studio trains ${SUPPORTED_ARCHITECTURES.join(', ')}.`);
  }
  // Before any weight is read: a quantized checkpoint's weights are packed integers no shape check would explain.
  const quantized = quantizationOfConfig(cfg);
  if (quantized !== undefined) refuseQuantized(file, quantized);
  if (cfg.rope_scaling != null) {
    throw new UnsupportedError(file, `${file}: "rope_scaling" (${JSON.stringify(cfg.rope_scaling)}) is not supported yet; use a model without rope scaling.`);
  }
  if (cfg.hidden_act !== undefined && cfg.hidden_act !== 'silu') {
    throw new UnsupportedError(file, `${file}: hidden_act "${cfg.hidden_act}" is not supported; only "silu" (SwiGLU) is.`);
  }
  const hidden = positiveInt(file, cfg, 'hidden_size');
  const heads = positiveInt(file, cfg, 'num_attention_heads');
  const kvHeads = positiveInt(file, cfg, 'num_key_value_heads', heads);
  if (heads % kvHeads !== 0) throw new ConfigError(file, `${file}: num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads}).`);
  const headDim = positiveInt(file, cfg, 'head_dim', hidden % heads === 0 ? hidden / heads : undefined);
  if (headDim % 2 !== 0) throw new ConfigError(file, `${file}: head_dim (${headDim}) must be even for rotary embeddings.`);
  const tiedRaw = cfg.tie_word_embeddings ?? false;
  if (typeof tiedRaw !== 'boolean') throw new ConfigError(file, `${file}: "tie_word_embeddings" must be true or false.`);
  const isQwen2 = architecture === 'Qwen2ForCausalLM';
  const qkNorm = architecture === 'Qwen3ForCausalLM';
  // attention_bias in transformers' Llama, Mistral and Qwen3 also puts a bias on o_proj, which the engine does
  // not load (Qwen2's q/k/v biases come without one): refuse rather than silently drop it.
  if (!isQwen2 && cfg.attention_bias === true) {
    throw new UnsupportedError(file, `${file}: "attention_bias": true is not supported for ${architecture} (it adds an o_proj bias the engine does not apply); only false (the default) is.`);
  }
  const attnBias = isQwen2;
  if (cfg.mlp_bias === true) throw new UnsupportedError(file, `${file}: "mlp_bias": true is not supported.`);
  if (cfg.use_sliding_window === true) throw new UnsupportedError(file, `${file}: sliding-window attention is not supported.`);
  if (Array.isArray(cfg.layer_types) && cfg.layer_types.some((t) => t !== 'full_attention')) {
    throw new UnsupportedError(file, `${file}: "layer_types" other than "full_attention" (sliding-window layers) are not supported.`);
  }
  return {
    architecture: architecture as Architecture,
    hidden,
    heads,
    kvHeads,
    headDim,
    intermediate: positiveInt(file, cfg, 'intermediate_size'),
    layers: positiveInt(file, cfg, 'num_hidden_layers'),
    vocab: positiveInt(file, cfg, 'vocab_size'),
    rmsEps: positiveNumber(file, cfg, 'rms_norm_eps', 1e-6),
    ropeTheta: positiveNumber(file, cfg, 'rope_theta', 10000),
    tied: tiedRaw,
    attnBias,
    qkNorm,
    maxPositions: positiveInt(file, cfg, 'max_position_embeddings', 2048),
    bosTokenId: typeof cfg.bos_token_id === 'number' ? cfg.bos_token_id : undefined,
    eosTokenId: typeof cfg.eos_token_id === 'number' || Array.isArray(cfg.eos_token_id) ? (cfg.eos_token_id as number | number[]) : undefined,
  };
}

/** The Hugging Face tensor names and shapes a config implies, in load order. */
export function weightShapes(c: ModelConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const q = c.heads * c.headDim, kv = c.kvHeads * c.headDim;
  m.set('model.embed_tokens.weight', [c.vocab, c.hidden]);
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}`;
    m.set(`${p}.input_layernorm.weight`, [c.hidden]);
    m.set(`${p}.self_attn.q_proj.weight`, [q, c.hidden]);
    m.set(`${p}.self_attn.k_proj.weight`, [kv, c.hidden]);
    m.set(`${p}.self_attn.v_proj.weight`, [kv, c.hidden]);
    if (c.attnBias) {
      m.set(`${p}.self_attn.q_proj.bias`, [q]);
      m.set(`${p}.self_attn.k_proj.bias`, [kv]);
      m.set(`${p}.self_attn.v_proj.bias`, [kv]);
    }
    if (c.qkNorm) {
      m.set(`${p}.self_attn.q_norm.weight`, [c.headDim]);
      m.set(`${p}.self_attn.k_norm.weight`, [c.headDim]);
    }
    m.set(`${p}.self_attn.o_proj.weight`, [c.hidden, q]);
    m.set(`${p}.post_attention_layernorm.weight`, [c.hidden]);
    m.set(`${p}.mlp.gate_proj.weight`, [c.intermediate, c.hidden]);
    m.set(`${p}.mlp.up_proj.weight`, [c.intermediate, c.hidden]);
    m.set(`${p}.mlp.down_proj.weight`, [c.hidden, c.intermediate]);
  }
  m.set('model.norm.weight', [c.hidden]);
  if (!c.tied) m.set('lm_head.weight', [c.vocab, c.hidden]);
  return m;
}

/** (in, out) features of each LoRA-able projection. */
export function projectionDims(c: ModelConfig, target: string): { inFeatures: number; outFeatures: number } {
  const q = c.heads * c.headDim, kv = c.kvHeads * c.headDim;
  switch (target) {
    case 'q_proj': return { inFeatures: c.hidden, outFeatures: q };
    case 'k_proj': case 'v_proj': return { inFeatures: c.hidden, outFeatures: kv };
    case 'o_proj': return { inFeatures: q, outFeatures: c.hidden };
    case 'gate_proj': case 'up_proj': return { inFeatures: c.hidden, outFeatures: c.intermediate };
    case 'down_proj': return { inFeatures: c.intermediate, outFeatures: c.hidden };
    default: throw new Error(`unknown projection ${target}`);
  }
}
