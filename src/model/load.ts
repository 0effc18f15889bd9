// Loading a model out of its files: config.json into a ModelConfig, the weights (one file, or the shards
// model.safetensors.index.json lists) checked against the shapes the config implies, and the tokenizer
// checked against the config's vocabulary. The small files go first, so a bad index, tokenizer or a quantized
// checkpoint fails before gigabytes of weights are read; the weights are then read shard by shard, each
// converted and let go before the next (the loader's own count of what it held comes back as `weightStats`);
// the source's cache is committed only once everything has parsed.
//
// This file does not read files itself: where they come from, and each kind's reader, are src/io's
// (model_source.ts, hub.ts). No GPU here.

import { FormatError, ShapeError } from '../io/errors';
import { findWeightFiles, forEachWeightFile, readConfigText, readTokenizer, type ModelFiles, type OnProgress, type WeightReadStats } from '../io/model_source';
import type { LoraTokenizer } from '../io/tokenizer';
import { parseModelConfig, type ModelConfig } from './config';
import { weightCollector, type Weights } from './weights';

export interface LoadedModel {
  config: ModelConfig;
  weights: Weights;
  tokenizer?: LoraTokenizer;
  files: string[];
  /** The weight files read, their bytes together, and the most raw file bytes the loader held at once (about one shard). */
  weightStats: WeightReadStats;
  /** The dtype each weight was stored in (F32, F16, BF16), by tensor name. */
  dtypes: Map<string, string>;
}

/**
 * Loads config, tokenizer (when tokenizer.json is present) and weights; F16/BF16 become F32 on the way.
 * `requireTokenizer`: refuse a model without tokenizer.json before its weights are read (the studio reads
 * text and prompts; the CLI, with token-id data, can do without one).
 */
export async function loadModel(source: ModelFiles, options: { onProgress?: OnProgress; requireTokenizer?: boolean } = {}): Promise<LoadedModel> {
  try {
    return await readModel(source, options);
  } catch (e) {
    await source.discard?.();
    throw e;
  }
}

async function readModel(source: ModelFiles, options: { onProgress?: OnProgress; requireTokenizer?: boolean }): Promise<LoadedModel> {
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
  const collector = weightCollector(config);
  const weightStats = await forEachWeightFile(source, weightFiles, (file) => collector.take(file), onProgress);
  const weights = collector.done(weightFiles.shards.map((s) => source.path(s)).join(', '));
  await source.commit?.();
  return { config, weights, tokenizer, files: source.list(), weightStats, dtypes: collector.dtypes };
}
