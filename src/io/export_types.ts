// What every adapter export takes (export.ts picks the writer: gguf.ts, mlx.ts or PEFT's own): the adapter
// in PEFT's layout, and the few facts of its base model a format records. Types only, so the writers and
// export.ts share them without importing each other.

import type { AdapterConfig, AdapterExpectation } from './peft.ts';

export interface ExportableAdapter {
  /** useDora: an adapter with DoRA's magnitude vectors, which only the PEFT writer holds (gguf.ts and mlx.ts refuse it). */
  config: AdapterConfig;
  /** PEFT keys (loraKey) → lora_A (r, in) and lora_B (out, r), row-major; with DoRA also loraMagnitudeKey → m (out). */
  weights: Map<string, Float32Array>;
}

/** What the formats need to know about the base model: plain numbers, so src/io stays below src/model. */
export interface ExportBase {
  /** The base's Hugging Face architecture (config.json architectures[0]). */
  architecture: string;
  /** H and KV: llama.cpp's Llama layout permutes q_proj rows by query head and k_proj rows by key/value head. */
  heads: number;
  kvHeads: number;
  /** The base model's name (Hub id or folder), for the formats that record it. */
  baseModel: string;
  /** A label for the adapter (GGUF's general.name). */
  name?: string;
  /** Layer count and projection sizes the adapter must fit. */
  expectation: AdapterExpectation;
}
