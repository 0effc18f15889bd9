// Which base model an adapter belongs to, decided in one place for both ways an adapter meets a model:
// Import (the page, through io/peft_files.ts readPeftFiles into the library) and Load (the worker,
// worker/adapter_entries.ts). A model's identity is its architecture, its shapes (layer count and every
// projection's in/out features) and its name and revision where known; an adapter belongs to a model when
// its tensors fit those shapes. A PEFT adapter names its base with base_model_name_or_path, which is whatever
// folder or id it was trained from ("./models/x", "org/x", a copy's name), so a differing name is a note and
// never a refusal: the shapes decide.
//
// This file is not the shape check itself (peft.ts checkAdapterFitsModel lists every misfit) and reads no
// files; callers hand it parsed configs and tensor shapes. No model imports: the page uses it without the engine.

import type { LoraStudioError } from './errors.ts';
import { LORA_TARGETS, type AdapterConfig, type AdapterExpectation, type AdapterFileNames } from './peft.ts';
import { checkAdapterFitsModel, sameBaseModel } from './peft_fit.ts';

/** A decoder's dimensions, as both ModelConfig (the engine) and ModelFacts (the page) carry them. */
export interface BaseDims {
  architecture: string;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  /** Per attention head; q is heads·headDim wide, k and v kvHeads·headDim. */
  headDim: number;
  intermediate: number;
}

/** The identity of a loaded base model: what an adapter must fit, and the name and revision it is known by. */
export interface BaseIdentity extends AdapterExpectation {
  /** The Hub id, folder name or "moby-llama": what a new adapter's base_model_name_or_path says. */
  baseModel: string;
  /** config.json's architectures[0]; absent where the caller knows only shapes (a test's expectation). */
  architecture?: string;
  revision?: string;
}

/** The identity of a model of these dimensions, named `name` (and `revision`, for a Hub checkpoint). */
export function baseIdentity(d: BaseDims, name: string, revision?: string): BaseIdentity {
  const q = d.heads * d.headDim, kv = d.kvHeads * d.headDim;
  const shapes = {
    q_proj: { inFeatures: d.hidden, outFeatures: q },
    k_proj: { inFeatures: d.hidden, outFeatures: kv },
    v_proj: { inFeatures: d.hidden, outFeatures: kv },
    o_proj: { inFeatures: q, outFeatures: d.hidden },
    gate_proj: { inFeatures: d.hidden, outFeatures: d.intermediate },
    up_proj: { inFeatures: d.hidden, outFeatures: d.intermediate },
    down_proj: { inFeatures: d.intermediate, outFeatures: d.hidden },
  };
  return { baseModel: name, architecture: d.architecture, numLayers: d.layers, shapes: (t) => shapes[t], ...(revision ? { revision } : {}) };
}

/** Layers and every projection's in×out, as one string: two models with the same fingerprint take the same adapters. */
export function shapesFingerprint(e: AdapterExpectation): string {
  return [`layers ${e.numLayers}`, ...LORA_TARGETS.map((t) => `${t} ${e.shapes(t).inFeatures}×${e.shapes(t).outFeatures}`)].join(', ');
}

/** Whether two models are the same base for adapters: the same architecture (where both know it) and shapes. Names do not count. */
export function sameBase(a: BaseIdentity, b: BaseIdentity): boolean {
  const arch = a.architecture === undefined || b.architecture === undefined || a.architecture === b.architecture;
  return arch && shapesFingerprint(a) === shapesFingerprint(b);
}

/** The decision about one adapter on one model: `reason` (every misfit, in one text) when it does not fit; `note` when it fits under another name. */
export interface BaseVerdict {
  fits: boolean;
  reason: string | null;
  refusals: LoraStudioError[];
  note: string | null;
}

/**
 * Whether an adapter (its config and its tensors' shapes) belongs on `model`. Import and Load both ask this,
 * so an adapter is accepted or refused by both, for the same reason.
 */
export function judgeAdapterBase(
  config: AdapterConfig,
  tensors: ReadonlyMap<string, { readonly shape: readonly number[] }>,
  model: BaseIdentity,
  files?: AdapterFileNames,
): BaseVerdict {
  const fit = checkAdapterFitsModel(config, tensors, model, { modelName: model.baseModel, files });
  if (!fit.fits) return { fits: false, reason: fit.refusals.map((e) => e.message).join(' '), refusals: fit.refusals, note: null };
  return { fits: true, reason: null, refusals: [], note: baseNameNote(config.baseModel, model) };
}

/** What to say when an adapter that fits was trained under another name (or revision); null when the names agree or one is unknown. */
export function baseNameNote(adapterBase: string, model: BaseIdentity): string | null {
  if (adapterBase === '' || model.baseModel === '' || sameBaseModel(adapterBase, model.baseModel)) return null;
  const loaded = `“${model.baseModel}”${model.revision && !model.baseModel.includes('@') ? ` (revision ${model.revision})` : ''}`;
  return `It was trained on “${adapterBase}”; the loaded model is ${loaded}. Its shapes fit (same layers and projections), ` +
    'so it is accepted, but it only does what it learned on the weights it was trained with.';
}
