// Whether a PEFT adapter can be applied to a model, every reason at once (checkAdapterFitsModel), and whether
// its base_model_name_or_path names the loaded model (sameBaseModel). Split from peft.ts, which reads and
// writes the files and stops at the first problem; this file only judges shapes and names.

import { FormatError, type LoraStudioError, ShapeError } from './errors.ts';
import {
  DEFAULT_NAMES, loraKey, loraMagnitudeKey, parseLoraKey, parseMagnitudeKey, show,
  type AdapterConfig, type AdapterExpectation, type AdapterFileNames,
} from './peft.ts';

/** Whether an adapter fits a model: the refusals say why it cannot be applied; warnings do not stop it. */
export interface AdapterFit {
  fits: boolean;
  /** Every reason the adapter cannot be applied to the model, as typed errors naming the adapter file at fault. */
  refusals: LoraStudioError[];
  /** What the user should know although the adapter can be applied (a different base_model_name_or_path). */
  warnings: string[];
}

/**
 * Whether an adapter (its parsed adapter_config.json and the tensor shapes of adapter_model.safetensors,
 * e.g. parseSafetensors(bytes).tensors) can be applied to a model, given as what the model expects of an
 * adapter (its layer count and projection sizes: adapterExpectation in src/model/lora.ts makes it from a
 * model's config.json).
 * Unlike readAdapter, which stops at the first problem, this lists every one, once per kind:
 *   - tensors that are not LoRA weights of a listed target (a module the model lacks, such as GPT-2's
 *     c_attn, is not a LoRA weight here; parseAdapterConfig already refuses such names in target_modules,
 *     and every supported architecture has all seven projections);
 *   - weights for layers the model does not have, or layers of the model with no weights;
 *   - a rank in the weights other than the config's r (the two files do not belong together);
 *   - lora_A / lora_B in / out features other than the model's projection sizes (another model).
 * A base_model_name_or_path naming another model is a warning, not a refusal: the name is often a local
 * path or a copy's name, and an adapter whose every shape fits (e.g. trained on a base model, applied to
 * its Instruct tune) runs; only the user can tell whether it means anything on these weights.
 */
export function checkAdapterFitsModel(
  adapter: AdapterConfig,
  tensors: ReadonlyMap<string, { readonly shape: readonly number[] }>,
  expected: AdapterExpectation,
  options: { modelName?: string; files?: AdapterFileNames } = {},
): AdapterFit {
  const { config: cFile, weights: wFile } = options.files ?? DEFAULT_NAMES;
  const modelName = options.modelName ? `“${options.modelName}”` : 'this model';
  const refusals = new Map<string, LoraStudioError>(); // keyed by kind, so 28 layers with one wrong shape say it once
  const refuse = (kind: string, error: () => LoraStudioError) => {
    if (!refusals.has(kind)) refusals.set(kind, error());
  };
  const seen = new Set<string>();
  let deepest = -1;
  for (const [key, { shape }] of tensors) {
    const mag = parseMagnitudeKey(key);
    if (mag !== null && adapter.useDora === true && adapter.targetModules.includes(mag.target)) {
      seen.add(loraMagnitudeKey(mag.layer, mag.target));
      deepest = Math.max(deepest, mag.layer);
      const want = mag.layer < expected.numLayers ? expected.shapes(mag.target).outFeatures : -1;
      if (want >= 0 && (shape.length !== 1 || shape[0] !== want)) {
        refuse(`size ${mag.target}.magnitude`, () => new ShapeError(wFile,
          `${wFile}: the DoRA magnitude of ${mag.target} has shape [${shape.join(', ')}], but ${modelName}'s ${mag.target} has out_features ${want}: ` +
            'the adapter was trained for another model.'));
      }
      continue;
    }
    if (mag !== null) {
      refuse('magnitude', () => new FormatError(wFile, adapter.useDora === true
        ? `${wFile}: ${show(key, 200)} adapts ${mag.target}, which ${cFile} does not list in target_modules: the two files do not belong together.`
        : `${wFile}: ${show(key, 200)} is a DoRA magnitude vector, but ${cFile} does not set use_dora: the two files do not belong together.`));
      continue;
    }
    const p = parseLoraKey(key);
    if (p === null || !adapter.targetModules.includes(p.target)) {
      refuse(`key ${p?.target ?? 'other'}`, () => new FormatError(wFile, p === null
        ? `${wFile}: ${show(key, 200)} is not a LoRA weight of a Llama projection, so LoRA Studio cannot apply it.`
        : `${wFile}: ${show(key, 200)} adapts ${p.target}, which ${cFile} does not list in target_modules: the two files do not belong together.`));
      continue;
    }
    seen.add(loraKey(p.layer, p.target, p.which));
    deepest = Math.max(deepest, p.layer);
    if (p.layer >= expected.numLayers) continue; // said once below
    const { inFeatures, outFeatures } = expected.shapes(p.target);
    const factor = `lora_${p.which} of ${p.target}`;
    if (shape.length !== 2) {
      refuse(`matrix ${p.target}.${p.which}`, () => new FormatError(wFile, `${wFile}: ${key} has shape [${shape.join(', ')}]; a LoRA factor is a matrix.`));
      continue;
    }
    // A is [r, in_features], B is [out_features, r].
    const [rank, size, want, what] = p.which === 'A' ? [shape[0], shape[1], inFeatures, 'in_features'] : [shape[1], shape[0], outFeatures, 'out_features'];
    if (rank !== adapter.r) {
      refuse(`rank ${p.target}.${p.which}`, () => new ShapeError(wFile,
        `${wFile}: ${factor} has rank ${rank} (shape [${shape.join(', ')}]), but ${cFile} says r = ${adapter.r}: the two files do not belong together.`));
    }
    if (size !== want) {
      refuse(`size ${p.target}.${p.which}`, () => new ShapeError(wFile,
        `${wFile}: ${factor} has ${what} ${size} (shape [${shape.join(', ')}]), but ${modelName}'s ${p.target} has ${what} ${want}: ` +
          'the adapter was trained for another model.'));
    }
  }
  if (deepest >= expected.numLayers) {
    refuse('deeper', () => new ShapeError(wFile,
      `${wFile}: has weights for ${deepest + 1} layers, but ${modelName} has ${expected.numLayers} (num_hidden_layers): the adapter was trained for another model.`));
  }
  for (let layer = 0; layer < expected.numLayers; layer++) {
    for (const target of adapter.targetModules) {
      for (const which of ['A', 'B'] as const) {
        if (seen.has(loraKey(layer, target, which))) continue;
        if (deepest >= 0 && layer > deepest) {
          refuse('shallower', () => new ShapeError(wFile,
            `${wFile}: has weights for only ${deepest + 1} layers, but ${modelName} has ${expected.numLayers} (num_hidden_layers): the adapter was trained for another model.`));
        } else {
          refuse(`missing ${target}.${which}`, () => new FormatError(wFile,
            `${wFile}: has no ${loraKey(layer, target, which)}: ${cFile} lists ${target}, so every layer needs lora_A and lora_B. The file is incomplete.`));
        }
      }
      if (adapter.useDora === true && !seen.has(loraMagnitudeKey(layer, target)) && !(deepest >= 0 && layer > deepest)) {
        refuse(`missing ${target}.magnitude`, () => new FormatError(wFile,
          `${wFile}: has no ${loraMagnitudeKey(layer, target)}: ${cFile} sets use_dora, so every adapted projection needs its magnitude vector. The file is incomplete.`));
      }
    }
  }

  const warnings: string[] = [];
  if (adapter.baseModel !== '' && options.modelName !== undefined && !sameBaseModel(adapter.baseModel, options.modelName)) {
    warnings.push(
      `${cFile}: the adapter was trained on “${adapter.baseModel}”, not ${modelName}. Where its shapes fit it can be applied, ` +
        'but it only does what it learned on the weights it was trained with.',
    );
  }
  return { fits: refusals.size === 0, refusals: [...refusals.values()], warnings };
}

/**
 * Whether an adapter's base_model_name_or_path names the loaded model. PEFT writes whatever the base was
 * loaded from, often a local folder ("./models/Qwen2.5-0.5B"), so the last path segment may stand for a
 * Hub id ("Qwen/Qwen2.5-0.5B"); case and trailing slashes are ignored.
 */
export function sameBaseModel(adapterBase: string, loaded: string): boolean {
  const norm = (s: string) => s.trim().replace(/[\\/]+$/, '').toLowerCase();
  const last = (s: string) => norm(s).split(/[\\/]/).pop() ?? '';
  const a = norm(adapterBase);
  const b = norm(loaded);
  return a === b || last(a) === last(b);
}
