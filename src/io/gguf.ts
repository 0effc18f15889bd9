// A LoRA adapter as a GGUF file for llama.cpp (`llama-cli --lora adapter.gguf`), with the keys, tensor names,
// layouts and dtype that its own converter, convert_lora_to_gguf.py (default --outtype f32), writes for a PEFT
// adapter; and the small GGUF writer that lays the bytes out. Pure bytes: no files, no GPU, no model code.
//
// GGUF v3 (little-endian), as gguf-py's GGUFWriter writes it:
//   "GGUF"  u32 version = 3  u64 n_tensors  u64 n_kv
//   n_kv      × (string key, u32 value type, value)          string: u64 byte length, UTF-8, no NUL
//   n_tensors × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset into the data)
//   zeros up to a multiple of 32 (general.alignment, left at its default and so not written),
//   then each tensor's data, each padded with zeros to a multiple of 32.
// ne is ggml's shape, fastest-varying dimension first: a row-major (rows, cols) matrix has ne = [cols, rows].
//
// What the converter writes for an adapter, and llama.cpp (src/llama-adapter.cpp) checks on load:
//   general.architecture   the base's llama.cpp name ("llama" for Llama and Mistral, "qwen2", "qwen3"); must match
//   general.type           "adapter"
//   adapter.type           "lora"
//   general.name           a label (the converter derives it from folder names)
//   adapter.lora.alpha     float32; llama.cpp scales B·A by alpha / r, r read from lora_b's ne[0]
//   general.quantization_version  u32 2
//   blk.{L}.{attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down}.weight.lora_a   F32, ne [in, r]  (PEFT's A, r × in)
//   blk.{L}.….weight.lora_b                                                            F32, ne [r, out] (PEFT's B, out × r)
// For the "llama" architecture the converter also permutes the rows of q_proj and k_proj (and so of their
// lora_b): HF stores each head's rotary pairs as (i, i + D/2), ggml's RoPE wants them adjacent (2i, 2i + 1).
// Qwen2 and Qwen3 use the NEOX RoPE layout and are not permuted.
//
// rsLoRA (scale α/√r) has no flag in GGUF, but alpha / r is the whole scale, so alpha = α·√r gives exactly
// PEFT's scale (up to the float32 rounding of the stored alpha); the returned note says so. DoRA's per-row
// magnitude cannot be expressed as lora_a / lora_b at all, so a DoRA adapter is refused.

import { UnsupportedError } from './errors.ts';
import type { ExportableAdapter, ExportBase } from './export_types.ts';
import { LORA_TARGETS, loraKey, type LoraTarget } from './peft.ts';

export const GGUF_ALIGNMENT = 32;
const GGUF_VERSION = 3;
/** GGML_QNT_VERSION in ggml.h, which the converter writes as general.quantization_version. */
const GGML_QUANT_VERSION = 2;
/** ggml_type of float32 tensors. */
export const GGML_TYPE_F32 = 0;

/** gguf-py's GGUFValueType, for the value types an adapter uses. */
const VALUE_TYPE = { u32: 4, f32: 6, string: 8 } as const;

export type GgufValue = { type: 'string'; value: string } | { type: 'u32'; value: number } | { type: 'f32'; value: number };

export interface GgufTensor {
  name: string;
  /** Row-major (PyTorch) shape, slowest dimension first; written reversed as ggml's ne. */
  shape: number[];
  data: Float32Array;
}

/** llama.cpp's architecture name (gguf-py MODEL_ARCH_NAMES) for each Hugging Face architecture we train. */
export const LLAMA_CPP_ARCH: Readonly<Record<string, string>> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'llama', // convert_hf_to_gguf registers it on LlamaModel
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
};

/** gguf-py's tensor names (MODEL_TENSOR → TENSOR_NAMES) for each projection we adapt. */
export const GGUF_TENSOR: Readonly<Record<LoraTarget, string>> = {
  q_proj: 'attn_q',
  k_proj: 'attn_k',
  v_proj: 'attn_v',
  o_proj: 'attn_output',
  gate_proj: 'ffn_gate',
  up_proj: 'ffn_up',
  down_proj: 'ffn_down',
};

export function ggufLoraName(layer: number, target: LoraTarget, which: 'a' | 'b'): string {
  return `blk.${layer}.${GGUF_TENSOR[target]}.weight.lora_${which}`;
}

const padTo = (n: number, align: number) => Math.ceil(n / align) * align;

/** A GGUF file of float32 tensors, keys and tensors in the order given. */
export function writeGguf(kv: [string, GgufValue][], tensors: GgufTensor[]): Uint8Array {
  const utf8 = new TextEncoder();
  const parts: Uint8Array[] = [];
  let length = 0;
  const push = (bytes: Uint8Array) => {
    parts.push(bytes);
    length += bytes.length;
  };
  const scalar = (bytes: number, set: (view: DataView) => void) => {
    const b = new Uint8Array(bytes);
    set(new DataView(b.buffer));
    push(b);
  };
  const u32 = (v: number) => scalar(4, (d) => d.setUint32(0, v, true));
  const u64 = (v: number) => scalar(8, (d) => d.setBigUint64(0, BigInt(v), true));
  const str = (s: string) => {
    const b = utf8.encode(s);
    u64(b.length);
    push(b);
  };

  push(utf8.encode('GGUF'));
  u32(GGUF_VERSION);
  u64(tensors.length);
  u64(kv.length);
  for (const [key, v] of kv) {
    str(key);
    u32(VALUE_TYPE[v.type]);
    if (v.type === 'string') str(v.value);
    else if (v.type === 'u32') u32(v.value);
    else scalar(4, (d) => d.setFloat32(0, v.value, true));
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    if (t.shape.reduce((a, d) => a * d, 1) !== t.data.length) {
      throw new Error(`GGUF tensor ${t.name}: shape [${t.shape.join(', ')}] does not hold ${t.data.length} values`);
    }
    str(t.name);
    u32(t.shape.length);
    for (const d of [...t.shape].reverse()) u64(d);
    u32(GGML_TYPE_F32);
    u64(offset);
    offsets.push(offset);
    offset += padTo(t.data.byteLength, GGUF_ALIGNMENT);
  }
  const dataStart = padTo(length, GGUF_ALIGNMENT);
  const out = new Uint8Array(dataStart + offset); // zero-filled, so every pad is zeros
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  const view = new DataView(out.buffer);
  tensors.forEach((t, i) => {
    const base = dataStart + offsets[i];
    for (let j = 0; j < t.data.length; j++) view.setFloat32(base + 4 * j, t.data[j], true);
  });
  return out;
}

/**
 * The rows of a (heads·D, cols) projection reordered as convert_hf_to_gguf's LlamaModel.permute does:
 * reshape (heads, 2, D/2, cols), swap the middle axes, so row h·D + 2i + s comes from row h·D + s·D/2 + i.
 */
export function permuteRopeRows(m: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const D = rows / heads;
  if (!Number.isInteger(D) || D % 2 !== 0) throw new Error(`cannot split ${rows} rows into ${heads} heads of even size`);
  const out = new Float32Array(m.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < D / 2; i++) {
      for (let s = 0; s < 2; s++) {
        const to = (h * D + 2 * i + s) * cols;
        const from = (h * D + s * (D / 2) + i) * cols;
        out.set(m.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

/** The llama.cpp architecture name for the base, or a refusal naming the supported ones. */
export function llamaCppArchitecture(hfArchitecture: string): string {
  const arch = LLAMA_CPP_ARCH[hfArchitecture];
  if (arch === undefined) {
    throw new UnsupportedError(
      undefined,
      `GGUF export: llama.cpp's name for the architecture ${hfArchitecture} is not known here (supported: ${Object.keys(LLAMA_CPP_ARCH).join(', ')}).`,
    );
  }
  return arch;
}

/**
 * adapter.gguf for llama.cpp. `adapter` must already fit `base` (export.ts checks it). Tensors are written
 * layer by layer, lora_a before lora_b, as the converter yields them.
 */
export function writeGgufAdapter(adapter: ExportableAdapter, base: ExportBase): { bytes: Uint8Array; notes: string[] } {
  const { config, weights } = adapter;
  if (config.useDora === true) {
    throw new UnsupportedError(
      undefined,
      'GGUF export: this is a DoRA adapter. llama.cpp adds only alpha/r · B·A to each weight, while DoRA also rescales every ' +
        'output row of W + ΔW by a learned magnitude, which no lora_a / lora_b pair can express. Export PEFT files, or merge the adapter into the base.',
    );
  }
  const arch = llamaCppArchitecture(base.architecture);
  const { r, loraAlpha } = config;
  const notes: string[] = [];
  let alpha = loraAlpha;
  if (config.useRslora) {
    alpha = loraAlpha * Math.sqrt(r);
    notes.push(
      `rsLoRA: llama.cpp scales by adapter.lora.alpha / r, so adapter.lora.alpha is written as α·√r = ${alpha} ` +
        `(α = ${loraAlpha}, r = ${r}): alpha / r = α/√r = ${loraAlpha / Math.sqrt(r)}, PEFT's rsLoRA scale, up to float32 rounding.`,
    );
  }

  const tensors: GgufTensor[] = [];
  for (let layer = 0; layer < base.expectation.numLayers; layer++) {
    for (const target of LORA_TARGETS.filter((t) => config.targetModules.includes(t))) {
      const { inFeatures, outFeatures } = base.expectation.shapes(target);
      const A = weights.get(loraKey(layer, target, 'A'))!; // (r, in)
      let B = weights.get(loraKey(layer, target, 'B'))!; // (out, r)
      if (arch === 'llama' && target === 'q_proj') B = permuteRopeRows(B, outFeatures, r, base.heads);
      if (arch === 'llama' && target === 'k_proj') B = permuteRopeRows(B, outFeatures, r, base.kvHeads);
      tensors.push({ name: ggufLoraName(layer, target, 'a'), shape: [r, inFeatures], data: A });
      tensors.push({ name: ggufLoraName(layer, target, 'b'), shape: [outFeatures, r], data: B });
    }
  }
  const kv: [string, GgufValue][] = [
    ['general.architecture', { type: 'string', value: arch }],
    ['general.type', { type: 'string', value: 'adapter' }],
    ['adapter.type', { type: 'string', value: 'lora' }],
  ];
  if (base.name) kv.push(['general.name', { type: 'string', value: base.name }]);
  kv.push(['adapter.lora.alpha', { type: 'f32', value: alpha }]);
  kv.push(['general.quantization_version', { type: 'u32', value: GGML_QUANT_VERSION }]);
  return { bytes: writeGguf(kv, tensors), notes };
}
