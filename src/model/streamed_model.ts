// A model built as its checkpoint is read: loadModel's sink (load.ts) hands each checked base weight to the
// device as soon as its shard is parsed, so a caller that loads a real checkpoint (the worker, the CLI) never
// has the whole model in the JavaScript heap, only about one shard. loadStreamed opens the device once the
// config is known and destroys it when the load fails at any point, so a failed load leaves nothing behind.
//
// modelBuilder puts each tensor through gpu_weights.ts's weightUploader (converted to the base dtype, or
// quantized, and uploaded as it comes; without a base dtype, kept as the checkpoint stored it) and builds the
// model over the uploaded weights. This file checks no tensor (weights.ts does) and owns no buffer
// (gpu_weights.ts does).

import type { Gpu } from '../gpu/gpu';
import type { BaseDtype, CausalLM, ModelOptions } from './causal_lm';
import type { ModelConfig } from './config';
import { createModel } from './factory';
import { weightUploader } from './gpu_weights';
import type { TensorSink } from './weights';

export interface ModelBuilder {
  /** One checked base weight (loadModel's sink): on the device once this returns; `data` may then be dropped. */
  put: TensorSink;
  /** The model, once every weight has been put. */
  done(): CausalLM;
}

/** A model of `config` on `gpu` whose weights come through `put` (options.baseDtype unset: each as stored). */
export function modelBuilder(gpu: Gpu, config: ModelConfig, options: ModelOptions = {}): ModelBuilder {
  const up = weightUploader(gpu, config, options.baseDtype);
  return { put: (name, data, dtype) => up.put(name, data, dtype), done: () => createModel(gpu, config, up.done(), options) };
}

/**
 * Opens loadModel's sink: called with the config, the stored dtypes of the first weight file's tensors (load.ts)
 * and the source's label (for messages), before the first weight is handed on.
 */
export type SinkOpener = (config: ModelConfig, stored: ReadonlySet<string>, label?: string) => Promise<TensorSink>;

/**
 * How a checkpoint stored as `stored` (its tensors' safetensors dtypes) holds its base by default: BF16 → bf16,
 * F16 → f16, as they come; F32, a mix, or anything else → f32, which every dtype converts to without loss.
 */
export function storedBaseDtype(stored: ReadonlySet<string>): BaseDtype {
  if (stored.size === 1 && stored.has('BF16')) return 'bf16';
  if (stored.size === 1 && stored.has('F16')) return 'f16';
  return 'f32';
}

export interface StreamedOptions {
  /** How the model is built (createModel's options). */
  model?: ModelOptions;
  /** What a failed load does with the device: destroy it (default), or leave a device the caller keeps (a test's). */
  discard?: (gpu: Gpu) => void;
}

/**
 * Runs `load` (loadModel, or a caller's wrapper of it, with `open` as its sink) onto a device that `openDevice`
 * opens once the config is known, and returns what `load` returned with the device and the model built there.
 * An out-of-memory or validation error while the model is built is refused with its message.
 */
export async function loadStreamed<T>(
  load: (open: SinkOpener) => Promise<T>, openDevice: () => Promise<Gpu>, options: StreamedOptions = {},
): Promise<T & { gpu: Gpu; model: CausalLM }> {
  let gpu: Gpu | undefined;
  let builder: ModelBuilder | undefined;
  let what = 'Loading the model';
  try {
    const loaded = await load(async (config, stored, label) => {
      if (label !== undefined) what = `Loading ${label}`;
      const device = (gpu = await openDevice());
      const model = { ...options.model, baseDtype: options.model?.baseDtype ?? storedBaseDtype(stored) };
      builder = await device.checked(what, () => modelBuilder(device, config, model));
      return builder.put;
    });
    const [device, built] = [gpu, builder];
    if (device === undefined || built === undefined) throw new Error('loadStreamed: the load finished without opening its sink');
    return { ...loaded, gpu: device, model: await device.checked(what, () => built.done()) };
  } catch (e) {
    if (gpu !== undefined) (options.discard ?? ((g) => g.destroy()))(gpu);
    throw e;
  }
}
