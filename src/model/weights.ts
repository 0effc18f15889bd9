// Model weights: Hugging Face safetensors → validated Float32Arrays by tensor name (F16/BF16 converted on
// load by src/io/safetensors.ts), checked against the shapes the config implies. No GPU here.

import { ShapeError } from '../io/errors';
import { parseSafetensors } from '../io/safetensors';
import { weightShapes, type ModelConfig } from './config';

export type Weights = Map<string, Float32Array>;

/**
 * Read the tensors this config needs from one or more safetensors files (a sharded checkpoint passes its
 * shards). Missing tensors and wrong shapes are refused with the name, the expected and the actual shape.
 * Tensors the engine does not use (e.g. rotary caches some exporters add) are ignored.
 */
export function loadWeights(config: ModelConfig, files: { name: string; bytes: Uint8Array | ArrayBuffer }[]): Weights {
  const want = weightShapes(config);
  const out: Weights = new Map();
  for (const f of files) {
    const st = parseSafetensors(f.bytes, f.name);
    for (const [name, info] of st.tensors) {
      const shape = want.get(name);
      if (!shape) continue;
      if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
        throw new ShapeError(f.name, `${f.name}: ${name} has shape [${info.shape}] but config.json implies [${shape}]: the weights and the config belong to different models.`);
      }
      out.set(name, st.readF32(name));
    }
  }
  const missing = [...want.keys()].filter((k) => !out.has(k));
  if (missing.length) {
    const names = files.map((f) => f.name).join(', ');
    throw new ShapeError(names, `${names}: ${missing.length} tensor(s) the config needs are missing, e.g. ${missing.slice(0, 3).join(', ')}. Is the checkpoint complete (all shards)?`);
  }
  return out;
}
