// A library adapter as the files PEFT reads and writes: export to adapter_config.json +
// adapter_model.safetensors (and a zip of both, for one download), import from those two files or a zip
// of them, and the checks that the weights are a complete LoRA for their config, with or without a model
// to fit. This file parses and checks; it does not store anything (library.ts, library_store.ts) and does
// not define the PEFT formats themselves (peft.ts, safetensors.ts, zip.ts).

import { judgeAdapterBase, type BaseIdentity } from './base_identity.ts';
import { FormatError } from './errors.ts';
import {
  adapterConfigToJson,
  parseLoraKey,
  readAdapter,
  readAdapterConfig,
  type AdapterConfig,
  type AdapterExpectation,
  type AdapterFileNames,
  type LoraTarget,
} from './peft.ts';
import { parseSafetensors } from './safetensors.ts';
import { readZip, writeZip, type ZipFile } from './zip.ts';

export const PEFT_CONFIG_FILE = 'adapter_config.json';
export const PEFT_WEIGHTS_FILE = 'adapter_model.safetensors';

/** The base model an import must fit (base_identity.ts); omit it when no model is loaded (see readPeftFiles). */
export type ImportExpectation = BaseIdentity;

/** The two PEFT files of an adapter, and a stored zip of both dated `date`, ready for `PeftModel.from_pretrained`. */
export function writePeftFiles(
  adapter: { baseModel: string; config: AdapterConfig; weights: Uint8Array },
  date: Date,
): { files: ZipFile[]; zip: Uint8Array } {
  const configJson = `${JSON.stringify(adapterConfigToJson({ ...adapter.config, baseModel: adapter.baseModel }), null, 2)}\n`;
  const files: ZipFile[] = [
    { name: PEFT_CONFIG_FILE, bytes: new TextEncoder().encode(configJson) },
    { name: PEFT_WEIGHTS_FILE, bytes: adapter.weights },
  ];
  return { files, zip: writeZip(files, { date }) };
}

/**
 * A PEFT adapter from its two files (by name; a folder prefix is fine) or from a zip of them, `source`
 * naming the upload in errors. With `expected` (a model is loaded), refuses an adapter whose shapes do not
 * fit it, as judgeAdapterBase decides (the worker's Load asks the same); a base_model_name_or_path naming
 * another model whose shapes fit is accepted, with a note.
 * Without it, checks only that the config parses and the weights agree with it and with each other; the
 * shapes are checked again when the adapter is applied to a model. The base model is the config's, or
 * the loaded one's when the config names none. `notes` say what was read that the user should know (PEFT's
 * default lora_alpha, layers_to_transform listing every layer).
 */
export function readPeftFiles(
  input: Map<string, Uint8Array> | Uint8Array,
  expected: ImportExpectation | undefined,
  source: string,
): { baseModel: string; config: AdapterConfig; weights: Uint8Array; notes: string[] } {
  const files = input instanceof Map ? input : readZip(input, source);
  const { configBytes, weights, names } = pickPeftFiles(files, source);
  let configText: string;
  try {
    configText = new TextDecoder('utf-8', { fatal: true }).decode(configBytes);
  } catch (e) {
    throw new FormatError(names.config, `${names.config}: is not UTF-8 text, so it is not a PEFT adapter config.`, e);
  }
  const { config, notes } = readAdapterConfig(configText, names.config);
  if (expected !== undefined) {
    const verdict = judgeAdapterBase(config, parseSafetensors(weights, names.weights).tensors, expected, names);
    if (!verdict.fits) {
      // The first misfit's typed error (its code and file), carrying every reason, as Load says them.
      const first = verdict.refusals[0];
      first.message = verdict.reason!;
      throw first;
    }
    if (verdict.note) notes.push(`${names.config}: ${verdict.note}`);
    readAdapter(configText, weights, expected, names);
  } else {
    checkAdapterBytes(config, weights, names, configText);
  }
  const baseModel = config.baseModel !== '' ? config.baseModel : (expected?.baseModel ?? '');
  return { baseModel, config: { ...config, baseModel }, weights, notes };
}

/**
 * Checks that safetensors bytes hold a complete LoRA for `config` on SOME model: every tensor a LoRA key,
 * A as [r, in] and B as [out, r] with r from the config, the same in/out for a target in every layer,
 * both factors of every target in every layer from 0 up. The model itself is inferred from layer shapes.
 * `configText`, the config as read, also holds the weights to what it says beyond `config` (layers_to_transform).
 */
export function checkAdapterBytes(
  config: AdapterConfig,
  weights: Uint8Array,
  names: AdapterFileNames = { config: PEFT_CONFIG_FILE, weights: PEFT_WEIGHTS_FILE },
  configText = JSON.stringify(adapterConfigToJson(config)), // throws ConfigError first, for r = 0 and the like
): void {
  const file = names.weights;
  const tensors = parseSafetensors(weights, file).tensors;
  const dims = new Map<LoraTarget, { inFeatures: number; outFeatures: number; from: { A?: string; B?: string } }>();
  let numLayers = 0;
  for (const [key, { shape }] of tensors) {
    const p = parseLoraKey(key);
    if (p === null) continue; // readAdapter below names the unexpected key
    numLayers = Math.max(numLayers, p.layer + 1);
    const rAt = p.which === 'A' ? 0 : 1;
    if (shape.length !== 2 || shape[rAt] !== config.r) {
      throw new FormatError(
        file,
        `${file}: ${key} has shape [${shape.join(', ')}], but ${names.config} says r = ${config.r}, so lora_${p.which} ` +
          `must be ${p.which === 'A' ? '[r, in_features]' : '[out_features, r]'}. The config and weights do not belong together.`,
      );
    }
    const d = dims.get(p.target) ?? { inFeatures: -1, outFeatures: -1, from: {} };
    const field = p.which === 'A' ? 'inFeatures' : 'outFeatures';
    const size = shape[1 - rAt];
    if (d[field] !== -1 && d[field] !== size) {
      throw new FormatError(
        file,
        `${file}: ${key} has ${p.which === 'A' ? 'in' : 'out'}_features ${size}, but ${d.from[p.which]} has ${d[field]}: ` +
          `one adapter's ${p.target} must have the same shape in every layer. The file is damaged or was put together from two adapters.`,
      );
    }
    d[field] = size;
    d.from[p.which] ??= key;
    dims.set(p.target, d);
  }
  if (tensors.size === 0) throw new FormatError(file, `${file}: holds no tensors, so there is no adapter to import.`);
  const inferred: AdapterExpectation = {
    numLayers,
    shapes: (t) => dims.get(t) ?? { inFeatures: 0, outFeatures: 0 },
  };
  readAdapter(configText, weights, inferred, names);
}

/** Finds adapter_config.json and adapter_model.safetensors among the files (by base name, one of each). */
function pickPeftFiles(files: Map<string, Uint8Array>, source: string): { configBytes: Uint8Array; weights: Uint8Array; names: AdapterFileNames } {
  const byBase = (base: string) => [...files.keys()].filter((n) => (n.split('/').pop() ?? n) === base && !n.startsWith('__MACOSX/'));
  const pick = (base: string): string => {
    const found = byBase(base);
    if (found.length > 1) {
      throw new FormatError(source, `${source}: holds ${found.length} files named ${base} (${found.join(', ')}); import one adapter at a time.`);
    }
    if (found.length === 0) {
      const hint =
        base === PEFT_WEIGHTS_FILE && byBase('adapter_model.bin').length > 0
          ? ' It has adapter_model.bin, a PyTorch pickle, which LoRA Studio does not read: save the adapter again with ' +
            '`model.save_pretrained(dir, safe_serialization=True)`.'
          : ` A PEFT adapter is two files, ${PEFT_CONFIG_FILE} and ${PEFT_WEIGHTS_FILE}; choose both, or a zip of them.`;
      throw new FormatError(source, `${source}: has no ${base}.${hint}`);
    }
    return found[0];
  };
  const config = pick(PEFT_CONFIG_FILE);
  const weights = pick(PEFT_WEIGHTS_FILE);
  // The weights stay a view into the zip here; the library copies them out before storing (ownBytes).
  return { configBytes: files.get(config)!, weights: files.get(weights)!, names: { config, weights } };
}
