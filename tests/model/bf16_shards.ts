// A tiny four-layer Llama in bf16, split into four shards with model.safetensors.index.json, built in memory:
// the multi-shard fixture for streaming a checkpoint (tests/model/load.test.ts, streamed_model.test.ts,
// tests/worker/load_model.test.ts). `values` holds what each tensor must arrive as: its bf16 value in float32.

import { toBfloat16Bits } from '../../src/io/float_encode';
import { bfloat16ToFloat32, writeSafetensorsRaw } from '../../src/io/safetensors';
import { parseModelConfig, weightShapes } from '../../src/model/config';
import { TINY_CONFIG } from '../cli/tiny-model';
import { mulberry32, randn } from '../reference/rng';

export const BF16_CONFIG = { ...TINY_CONFIG, num_hidden_layers: 4, torch_dtype: 'bfloat16' };
export const BF16_SHARDS = [1, 2, 3, 4].map((i) => `model-0000${i}-of-00004.safetensors`);

/** Layer l in shard l, the embedding with layer 0, the final norm and lm_head with layer 3. */
export const shardOf = (name: string) => (name.startsWith('model.embed') ? 0 : name.startsWith('model.layers.') ? Number(name.split('.')[2]) : 3);

export interface Bf16Checkpoint {
  /** config.json, the index and the shards, by file name. */
  files: Map<string, Uint8Array>;
  /** Every tensor the config needs, as loading must deliver it (bf16 widened to float32). */
  values: Map<string, Float32Array>;
  /** Each shard's tensor names. */
  shards: string[][];
}

/** The checkpoint; `without` leaves a tensor out of its shard and of the index (an incomplete checkpoint). */
export function bf16Checkpoint(seed = 15, without?: string): Bf16Checkpoint {
  const rng = mulberry32(seed);
  const values = new Map<string, Float32Array>();
  const shards: { name: string; dtype: 'BF16'; shape: number[]; bytes: Uint8Array }[][] = BF16_SHARDS.map(() => []);
  for (const [name, shape] of weightShapes(parseModelConfig(JSON.stringify(BF16_CONFIG)))) {
    const bits = Uint16Array.from(randn(rng, shape.reduce((a, b) => a * b, 1), 0.1), (v) => toBfloat16Bits(v));
    values.set(name, Float32Array.from(bits, (b) => bfloat16ToFloat32(b)));
    if (name !== without) shards[shardOf(name)].push({ name, dtype: 'BF16', shape, bytes: new Uint8Array(bits.buffer) });
  }
  const enc = (s: string) => new TextEncoder().encode(s);
  const files = new Map<string, Uint8Array>([['config.json', enc(JSON.stringify(BF16_CONFIG))]]);
  const weight_map: Record<string, string> = {};
  BF16_SHARDS.forEach((shard, i) => {
    for (const t of shards[i]) weight_map[t.name] = shard;
    files.set(shard, writeSafetensorsRaw(shards[i], { format: 'pt' }));
  });
  files.set('model.safetensors.index.json', enc(JSON.stringify({ metadata: { total_size: 0 }, weight_map })));
  return { files, values, shards: shards.map((s) => s.map((t) => t.name)) };
}
