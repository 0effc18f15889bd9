// Library entries (src/io/library.ts AdapterEntry) and the loaded model, in the session's terms: whether a
// stored adapter fits the model and why not, its weights read back for it, the answer to loadAdapter, and
// the default name of a run's entry. The session does the reading and writing; nothing here touches the
// GPU or the library.

import { LoraStudioError } from '../io/errors';
import type { AdapterEntry, LossPoint } from '../io/library';
import { baseIdentity, baseNameNote, judgeAdapterBase } from '../io/base_identity';
import { adapterConfigToJson, readAdapter, type AdapterConfig } from '../io/peft';
import { sameBaseModel } from '../io/peft_fit';
import { parseSafetensors } from '../io/safetensors';
import type { ModelConfig } from '../model/config';
import { adapterExpectation } from '../model/lora';
import type { ResponseBody } from './protocol';


/**
 * Why a stored adapter cannot go into this model, or null when it fits, said in the terms of the library entry
 * the user picked. judgeAdapterBase (io/base_identity.ts) decides, as it does when the page imports an
 * adapter, so the reason here is the import's: a different base-model name alone is only a note.
 */
export function adapterMisfit(name: string, cfg: AdapterConfig, weights: Uint8Array, c: ModelConfig, modelName: string): string | null {
  const tensors = parseSafetensors(weights, 'adapter_model.safetensors').tensors;
  const verdict = judgeAdapterBase(cfg, tensors, baseIdentity(c, modelName));
  if (verdict.fits) return null;
  const trained = `“${name}” was trained on ${cfg.baseModel || 'an unnamed model'} with r=${cfg.r} on ${cfg.targetModules.join(', ')}`;
  const remedy = cfg.baseModel && !sameBaseModel(cfg.baseModel, modelName) ? ` Load ${cfg.baseModel} to use it.` : ' Load the model it was trained on to use it.';
  return `${trained}, and does not fit the loaded model: ${verdict.reason}${remedy}`;
}

/** The entry's adapter settings (its base model included). */
export function entryConfig(entry: AdapterEntry): AdapterConfig {
  return { ...entry.config, baseModel: entry.baseModel };
}

/** A library entry's weights as F32 tensors, after checking that they fit this model (else a refusal saying how not). */
export function fittingWeights(entry: AdapterEntry, config: ModelConfig, modelName: string): Map<string, Float32Array> {
  const cfg = entryConfig(entry);
  const misfit = adapterMisfit(entry.name, cfg, entry.weights, config, modelName);
  if (misfit) throw new LoraStudioError('bad-shape', misfit);
  return readAdapter(JSON.stringify(adapterConfigToJson(cfg)), entry.weights, adapterExpectation(config)).weights;
}

/** The answer to loadAdapter once `entry` is in the model named `modelName`, with the loss history it now holds. */
export function adapterLoaded(entry: AdapterEntry, config: ModelConfig, modelName: string, lossHistory: LossPoint[]): ResponseBody<'loadAdapter'> {
  const cfg = entryConfig(entry);
  const differs = baseNameNote(entry.baseModel, baseIdentity(config, modelName));
  const note = differs ? `“${entry.name}”: ${differs}` : null;
  const total = entry.checkpoint?.totalSteps;
  return {
    type: 'adapterLoaded',
    adapterId: entry.id,
    name: entry.name,
    baseModel: entry.baseModel,
    lora: { targets: [...cfg.targetModules], r: cfg.r, alpha: cfg.loraAlpha, dropout: cfg.loraDropout, rslora: cfg.useRslora, dora: cfg.useDora === true },
    steps: entry.steps,
    lossHistory,
    checkpoint: entry.checkpoint ? { step: entry.checkpoint.step, totalSteps: typeof total === 'number' ? total : null } : null,
    note,
  };
}

/** A default name for a run's library entry: the model's short name and the local time it started. */
export function runName(model: string): string {
  const d = new Date();
  const two = (n: number) => String(n).padStart(2, '0');
  return `${model.split('/').pop()} run ${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
}
