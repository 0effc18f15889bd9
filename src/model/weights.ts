// Model weights: Hugging Face safetensors → validated Float32Arrays by tensor name (F16/BF16 converted on
// load by src/io/safetensors.ts), checked against the shapes the config implies, one parsed file at a time so
// that a sharded checkpoint can be read shard by shard (src/io/model_source.ts forEachWeightFile). No GPU here.

import { ShapeError, UnsupportedError } from '../io/errors';
import { quantizationOfTensors, refuseQuantized } from '../io/quantized_checkpoint';
import { parseSafetensors, type SafetensorsFile } from '../io/safetensors';
import { weightShapes, type ModelConfig } from './config';

export type Weights = Map<string, Float32Array>;

/** The stored dtypes a base weight may come in: the ones a checkpoint is trained and published in. */
const BASE_DTYPES = new Set(['F32', 'F16', 'BF16']);

export interface WeightCollector {
  /** Takes the tensors this config needs out of one parsed file, each checked and copied to float32. */
  take(file: SafetensorsFile): void;
  /** Every weight, once each has been taken; `files` names the files read, for the refusal of a missing one. */
  done(files: string): Weights;
  /** The dtype each weight taken was stored in (F32, F16, BF16): what a model held "as the checkpoint" holds. */
  readonly dtypes: Map<string, string>;
}

/**
 * Collects a config's weights from its files. Missing tensors and wrong shapes are refused with the name, the
 * expected and the actual shape; a weight stored as anything but F32, F16 or BF16 (an F64, an integer) with its
 * name and what to use; a quantized checkpoint (GPTQ, AWQ, bitsandbytes, ... tensors) with its format. Tensors
 * the engine does not use (e.g. rotary caches some exporters add) are ignored.
 */
export function weightCollector(config: ModelConfig): WeightCollector {
  const want = weightShapes(config);
  const out: Weights = new Map();
  const dtypes = new Map<string, string>();
  return {
    dtypes,
    take(file) {
      const quantized = quantizationOfTensors(file.tensors.keys());
      if (quantized !== undefined) refuseQuantized(file.fileName, quantized);
      for (const [name, info] of file.tensors) {
        const shape = want.get(name);
        if (!shape) continue;
        if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
          throw new ShapeError(file.fileName, `${file.fileName}: ${name} has shape [${info.shape}] but config.json implies [${shape}]: the weights and the config belong to different models.`);
        }
        if (!BASE_DTYPES.has(info.dtype)) {
          throw new UnsupportedError(
            file.fileName,
            `${file.fileName}: ${name} is stored as ${info.dtype}, and LoRA Studio takes base weights as BF16, F16 or F32. ` +
              "Use the model's bf16, f16 or f32 checkpoint, or convert this one (in PyTorch: load it, .to(torch.bfloat16), save_pretrained).",
          );
        }
        out.set(name, file.readF32(name));
        dtypes.set(name, info.dtype);
      }
    },
    done(files) {
      const missing = [...want.keys()].filter((k) => !out.has(k));
      if (missing.length) {
        throw new ShapeError(files, `${files}: ${missing.length} tensor(s) the config needs are missing, e.g. ${missing.slice(0, 3).join(', ')}. Is the checkpoint complete (all shards)?`);
      }
      return out;
    },
  };
}

/** The weights of files already in memory (one, or a sharded checkpoint's shards), as weightCollector checks them. */
export function loadWeights(config: ModelConfig, files: { name: string; bytes: Uint8Array | ArrayBuffer }[]): Weights {
  const collector = weightCollector(config);
  for (const f of files) collector.take(parseSafetensors(f.bytes, f.name));
  return collector.done(files.map((f) => f.name).join(', '));
}
