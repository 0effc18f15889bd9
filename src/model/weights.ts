// Model weights: Hugging Face safetensors → validated Float32Arrays by tensor name (F16/BF16 converted on
// load by src/io/safetensors.ts), checked against the shapes the config implies, one parsed file at a time so
// that a sharded checkpoint can be read shard by shard (src/io/model_source.ts forEachWeightFile), and each
// tensor handed on as soon as its file is parsed (weightStream) or kept until all are read (weightCollector).
// No GPU here: where a handed-on tensor goes (the GPU, quantized or not) is the sink's business.

import { ShapeError, UnsupportedError } from '../io/errors';
import type { HeldBytes } from '../io/model_source';
import { quantizationOfTensors, refuseQuantized } from '../io/quantized_checkpoint';
import { parseSafetensors, type SafetensorsFile } from '../io/safetensors';
import { weightShapes, type ModelConfig } from './config';

export type Weights = Map<string, Float32Array>;

/**
 * Where each checked base weight goes, once, as soon as its file is parsed: `data` is a fresh float32 copy the
 * sink may keep or let go (an uploader writes it to the GPU, converted or quantized, and drops it); `dtype` is
 * how the checkpoint stored it (F32, F16 or BF16), so an uploader can keep it as it came.
 */
export type TensorSink = (name: string, data: Float32Array, dtype?: string) => void;

/** The stored dtypes a base weight may come in: the ones a checkpoint is trained and published in. */
const BASE_DTYPES = new Set(['F32', 'F16', 'BF16']);

export interface WeightStream {
  /**
   * Checks the tensors this config needs in one parsed file and hands each to the sink, converted to float32;
   * `held` counts each converted tensor while it is in the stream's hands (until the sink returns).
   */
  take(file: SafetensorsFile, held?: HeldBytes): void;
  /** Refuses a config's tensor that no file had; `files` names the files read. */
  done(files: string): void;
}

export interface WeightCollector {
  /** Takes the tensors this config needs out of one parsed file, each checked and copied to float32. */
  take(file: SafetensorsFile, held?: HeldBytes): void;
  /** Every weight, once each has been taken; `files` names the files read, for the refusal of a missing one. */
  done(files: string): Weights;
}

/**
 * Checks a config's weights as they come out of its files and hands each on to `sink`, keeping only their names.
 * Missing tensors and wrong shapes are refused with the name, the expected and the actual shape; a weight stored
 * as anything but F32, F16 or BF16 (an F64, an integer) with its name and what to use; a quantized checkpoint
 * (GPTQ, AWQ, bitsandbytes, ... tensors) with its format. Tensors the engine does not use (e.g. rotary caches
 * some exporters add) are ignored. Every tensor of a file is checked before the first is handed on, so a sink
 * never gets part of a file that is then refused.
 */
export function weightStream(config: ModelConfig, sink: TensorSink): WeightStream {
  const want = weightShapes(config);
  const taken = new Set<string>();
  return {
    take(file, held) {
      const quantized = quantizationOfTensors(file.tensors.keys());
      if (quantized !== undefined) refuseQuantized(file.fileName, quantized);
      const mine = [...file.tensors].filter(([name]) => want.has(name));
      for (const [name, info] of mine) {
        const shape = want.get(name)!;
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
      }
      for (const [name] of mine) {
        const data = file.readF32(name);
        held?.hold(data.byteLength);
        sink(name, data, file.tensors.get(name)!.dtype);
        held?.release(data.byteLength);
        taken.add(name);
      }
    },
    done(files) {
      const missing = [...want.keys()].filter((k) => !taken.has(k));
      if (missing.length) {
        throw new ShapeError(files, `${files}: ${missing.length} tensor(s) the config needs are missing, e.g. ${missing.slice(0, 3).join(', ')}. Is the checkpoint complete (all shards)?`);
      }
    },
  };
}

/** weightStream into a map: every weight at once, for a caller that needs them together (and counted as held to the end). */
export function weightCollector(config: ModelConfig): WeightCollector {
  const out: Weights = new Map();
  const stream = weightStream(config, (name, data) => void out.set(name, data));
  return {
    // The map keeps what it is handed, so nothing it holds is released.
    take: (file, held) => stream.take(file, held && { hold: held.hold, release: () => {} }),
    done(files) {
      stream.done(files);
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
