// The studio's model sources (protocol.ts ModelSourceSpec) read onto a GPU device of their own: the embedded
// model from the studio's server, a Hub repository or a picked folder, every file checked by loadModel, with
// progress at most every PROGRESS_MS per file and the weights' stored dtype noted as the files go by; and the
// facts the studio shows about a model. The weights stream to the device one tensor at a time as each shard is
// parsed (load.ts, streamed_model.ts), so the worker's heap holds about one shard, never the model. The session
// keeps the model; this file only reads and builds it, and destroys its device when it fails to load.

import { hubSource } from '../io/hub';
import { badInput } from '../io/errors';
import { folderSource, type ModelFiles, type ReadProgress } from '../io/model_source';
import { parseSafetensors } from '../io/safetensors';
import { urlSource } from '../io/url_source';
import type { Gpu } from '../gpu/gpu';
import type { ModelOptions } from '../model/causal_lm';
import type { ModelConfig } from '../model/config';
import { loadModel, type StreamedModel } from '../model/load';
import { loadStreamed } from '../model/streamed_model';
import type { TensorSink } from '../model/weights';
import { modelParams } from '../model/params';
import { DEFAULT_MODEL } from './identity';
import type { BaseDtype, ModelFacts, ModelSourceSpec } from './protocol';

/** Progress events per file at most this often (plus each file's last one). */
const PROGRESS_MS = 100;

export function modelSource(spec: ModelSourceSpec): Promise<ModelFiles> | ModelFiles {
  switch (spec.kind) {
    case 'default':
      return urlSource(new URL(DEFAULT_MODEL.dir, spec.baseUrl).href, DEFAULT_MODEL.files, DEFAULT_MODEL.name);
    case 'hub':
      return hubSource(spec.id.trim(), { revision: spec.revision?.trim() || undefined, token: spec.token || undefined });
    case 'files':
      if (spec.files.length === 0) return badInput('The folder is empty: pick the folder that holds config.json and the model.safetensors weights.');
      return folderSource(new Map(spec.files.map((f) => [f.path, f.blob])), spec.label || 'folder');
    default:
      return badInput(`Unknown model source ${JSON.stringify((spec as { kind: unknown }).kind)}.`);
  }
}

/**
 * The model of `spec`, read and checked, its weights handed to the sink `open` returns (called with the config
 * and the source's label once the small files are checked, before the first weight file is read); `dtype`: how
 * its weights were stored ("BF16", "F32, F16"); `source`: where its files are, to read them again (a merged
 * export) without keeping a copy in memory.
 */
export async function readModel(
  spec: ModelSourceSpec, onProgress: (p: ReadProgress) => void, open: (config: ModelConfig, stored: ReadonlySet<string>, label: string) => Promise<TensorSink>,
): Promise<StreamedModel & { label: string; dtype: string; source: ModelFiles }> {
  const source = await modelSource(spec);
  const dtypes = new Set<string>();
  const read = source.read;
  const watched: ModelFiles = {
    ...source,
    read: async (name, progress) => {
      const bytes = await read(name, progress);
      if (name.endsWith('.safetensors')) for (const t of parseSafetensors(bytes, source.path(name)).tensors.values()) dtypes.add(t.dtype);
      return bytes;
    },
  };
  let last = 0;
  const throttled = (p: ReadProgress) => {
    const now = performance.now();
    if (p.percent !== 100 && now - last < PROGRESS_MS) return;
    last = now;
    onProgress(p);
  };
  // The studio tokenizes text and prompts, so unlike the CLI (token-id data) it needs tokenizer.json.
  const loaded = await loadModel(watched, { onProgress: throttled, requireTokenizer: true, sink: (config, stored) => open(config, stored, source.label) });
  return { ...loaded, label: source.label, dtype: [...dtypes].sort().join(', ') || 'unknown', source };
}

/**
 * readModel onto a device `openDevice` opens once config.json is known: the weights go to the model's buffers
 * as they are read, and a model that fails to load, at any point, has its device destroyed (streamed_model.ts).
 */
export function openModel(spec: ModelSourceSpec, onProgress: (p: ReadProgress) => void, openDevice: () => Promise<Gpu>, options: ModelOptions = {}) {
  return loadStreamed((open) => readModel(spec, onProgress, open), openDevice, { model: options });
}

export function modelFacts(name: string, config: ModelConfig, dtype: string, hasTokenizer: boolean, baseDtype: BaseDtype): ModelFacts {
  return {
    name,
    architecture: config.architecture,
    params: modelParams(config),
    layers: config.layers,
    vocab: config.vocab,
    hidden: config.hidden,
    heads: config.heads,
    kvHeads: config.kvHeads,
    headDim: config.headDim,
    intermediate: config.intermediate,
    contextLength: config.maxPositions,
    dtype,
    baseDtype,
    tiedEmbeddings: config.tied,
    hasTokenizer,
  };
}
