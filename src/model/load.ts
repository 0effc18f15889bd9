// Loading a model out of its files: config.json into a ModelConfig, the weights (one file, or the shards
// model.safetensors.index.json lists) checked against the shapes the config implies, and the tokenizer
// checked against the config's vocabulary. The small files go first, so a bad index, tokenizer or a quantized
// checkpoint fails before gigabytes of weights are read; the weights are then read shard by shard, each
// converted and let go before the next, and with a sink each converted tensor goes on (to the GPU) as soon as
// its shard is parsed, so the loader never holds more than about one shard (its own count comes back as
// `weightStats`: peakHeldBytes). Without a sink every weight comes back in `weights`, the whole model in
// float32 at once: for tests and small models. The source's cache is committed only once everything has parsed.
//
// This file does not read files itself: where they come from, and each kind's reader, are src/io's
// (model_source.ts, hub.ts). No GPU here: the sink is the caller's.

import { FormatError, ShapeError } from '../io/errors';
import { findWeightFiles, forEachWeightFile, readConfigText, readTokenizer, type ModelFiles, type HeldBytes, type OnProgress, type WeightReadStats } from '../io/model_source';
import type { SafetensorsFile } from '../io/safetensors';
import type { LoraTokenizer } from '../io/tokenizer';
import { parseModelConfig, weightShapes, type ModelConfig } from './config';
import { weightCollector, weightStream, type TensorSink, type WeightStream, type Weights } from './weights';

/** A model read with a sink: its weights went to the sink, one tensor at a time. */
export interface StreamedModel {
  config: ModelConfig;
  tokenizer?: LoraTokenizer;
  files: string[];
  /** The weight files read, their bytes together, and the most bytes the loader held at once (about one shard). */
  weightStats: WeightReadStats;
}

/** A model read without a sink: every weight, in float32, at once. */
export interface LoadedModel extends StreamedModel {
  weights: Weights;
}

export interface LoadOptions {
  onProgress?: OnProgress;
  /**
   * Refuse a model without tokenizer.json before its weights are read (the studio reads text and prompts; the
   * CLI, with token-id data, can do without one).
   */
  requireTokenizer?: boolean;
  /**
   * Where the weights go: called once config.json, the shard index and the tokenizer have been checked and the
   * first weight file has been parsed, before any tensor is handed on, with the config (an uploader needs its
   * shapes) and the stored dtypes of the config's tensors in that first file (how the checkpoint is stored,
   * which decides how the base is held by default); it returns the sink that gets each checked tensor as soon
   * as its shard is parsed. A load that fails after this leaves the sink's target half filled: the caller
   * discards it.
   */
  sink?: (config: ModelConfig, stored: ReadonlySet<string>) => TensorSink | Promise<TensorSink>;
}

/** Loads config, tokenizer (when tokenizer.json is present) and weights; F16/BF16 become F32 on the way. */
export function loadModel(source: ModelFiles, options: LoadOptions & { sink: NonNullable<LoadOptions['sink']> }): Promise<StreamedModel>;
export function loadModel(source: ModelFiles, options?: Omit<LoadOptions, 'sink'>): Promise<LoadedModel>;
export async function loadModel(source: ModelFiles, options: LoadOptions = {}): Promise<StreamedModel | LoadedModel> {
  try {
    return await readModel(source, options);
  } catch (e) {
    await source.discard?.();
    throw e;
  }
}

async function readModel(source: ModelFiles, options: LoadOptions): Promise<StreamedModel | LoadedModel> {
  const { onProgress } = options;
  const config = parseModelConfig(await readConfigText(source, onProgress), source.path('config.json'));
  const weightFiles = await findWeightFiles(source, onProgress);
  const tokenizer = await readTokenizer(source, onProgress);
  if (tokenizer === undefined && options.requireTokenizer) {
    const file = source.path('tokenizer.json');
    throw new FormatError(file, `${file}: missing. The studio needs the model's tokenizer.json to turn training text and prompts into tokens; ` +
      `add it to ${source.label} (it comes with the model on the Hub, beside config.json).`);
  }
  if (tokenizer !== undefined && tokenizer.vocabSize > config.vocab) {
    const file = source.path('tokenizer.json');
    throw new ShapeError(
      file,
      `${file}: produces ids up to ${tokenizer.vocabSize - 1}, but ${source.path('config.json')} has vocab_size ${config.vocab}: ` +
        'the tokenizer belongs to another model.',
    );
  }
  const fileNames = weightFiles.shards.map((s) => source.path(s)).join(', ');
  const read = (take: (file: SafetensorsFile, held: HeldBytes) => void | Promise<void>) => forEachWeightFile(source, weightFiles, (file, _bytes, held) => take(file, held), onProgress);
  let model: StreamedModel | LoadedModel;
  if (options.sink) {
    const open = options.sink;
    let stream: WeightStream | undefined;
    const weightStats = await read(async (file, held) => {
      const want = weightShapes(config);
      stream ??= weightStream(config, await open(config, new Set([...file.tensors].filter(([n]) => want.has(n)).map(([, t]) => t.dtype))));
      stream.take(file, held);
    });
    if (stream === undefined) throw new Error(`loadModel: ${fileNames} gave no weight file`);
    stream.done(fileNames);
    model = { config, tokenizer, files: source.list(), weightStats };
  } else {
    const collector = weightCollector(config);
    const weightStats = await read(collector.take);
    model = { config, weights: collector.done(fileNames), tokenizer, files: source.list(), weightStats };
  }
  await source.commit?.();
  return model;
}
