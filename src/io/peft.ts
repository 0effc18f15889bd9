// Import and export of LoRA adapters in Hugging Face PEFT's on-disk format: adapter_config.json
// plus adapter_model.safetensors, so an adapter trained here loads with
// `PeftModel.from_pretrained(base, dir)` and an adapter from the Hub loads here.
//
// PEFT names weights after the module path of the wrapped model, for a causal LM:
//   base_model.model.model.layers.{L}.{self_attn|mlp}.{target}.lora_{A|B}.weight
// with lora_A of shape [r, in_features] and lora_B of shape [out_features, r], so that
// W' = W + scale · B·A with scale = lora_alpha / r (or lora_alpha / √r with rsLoRA, arXiv:2312.03732).
//
// With use_dora (DoRA, arXiv:2402.09353) each adapted projection also has its magnitude vector, saved by
// PEFT (get_peft_model_state_dict drops the adapter name and the ".weight" of its DoraLinearLayer) as
//   base_model.model.model.layers.{L}.{self_attn|mlp}.{target}.lora_magnitude_vector        [out_features]
//
// This file is not the LoRA math (src/model) and does not read files (callers pass text and
// bytes). It refuses, with a typed error naming the file, every PEFT option whose weights we
// would silently misapply (per-layer ranks, partial layers, extra saved modules), and says
// (checkAdapterFitsModel) every reason an adapter does not fit a loaded model. What it reads in a
// way the user should know about (PEFT's default lora_alpha, layers_to_transform naming every
// layer) comes back as notes (readAdapterConfig, readAdapter).

import { ConfigError, FormatError, ShapeError, throwerFor, UnsupportedError } from './errors.ts';
import { parseSafetensors, writeSafetensors } from './safetensors.ts';

export type LoraTarget = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';

export const LORA_TARGETS: readonly LoraTarget[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** The sub-module of a Llama decoder layer that holds each projection. */
export function loraSubmodule(target: LoraTarget): 'self_attn' | 'mlp' {
  return target === 'gate_proj' || target === 'up_proj' || target === 'down_proj' ? 'mlp' : 'self_attn';
}

export interface AdapterConfig {
  r: number;
  loraAlpha: number;
  loraDropout: number;
  targetModules: LoraTarget[];
  useRslora: boolean;
  baseModel: string;
  /** DoRA: a trainable magnitude per output row (PEFT's use_dora); absent means false. */
  useDora?: boolean;
}

/** What the base model dictates about an adapter's tensors. */
export interface AdapterExpectation {
  numLayers: number;
  shapes: (target: LoraTarget) => { inFeatures: number; outFeatures: number };
}

export interface AdapterFileNames {
  config: string;
  weights: string;
}

export const DEFAULT_NAMES: AdapterFileNames = { config: 'adapter_config.json', weights: 'adapter_model.safetensors' };

const SUPPORTED = LORA_TARGETS.join(', ');

const UNSUPPORTED_WHEN_SET: [string, string][] = [
  ['exclude_modules', 'adapters that skip some modules are not supported; train on all layers.'],
  ['rank_pattern', 'per-module ranks are not supported; use one r for every module.'],
  ['alpha_pattern', 'per-module lora_alpha values are not supported; use one lora_alpha for every module.'],
  ['modules_to_save', 'adapters that also save whole modules (e.g. lm_head) are not supported: PEFT swaps those modules for ' +
    'trained copies, which LoRA Studio cannot apply, so the adapter would not compute what was trained. Train without modules_to_save.'],
  ['layer_replication', 'adapters that replicate layers are not supported.'],
  ['target_parameters', 'adapters on raw parameters (rather than Linear modules) are not supported.'],
  ['trainable_token_indices', 'adapters that also train token embeddings are not supported.'],
];

/** The factor multiplying B·A, as PEFT computes it. */
export function loraScale(cfg: Pick<AdapterConfig, 'r' | 'loraAlpha' | 'useRslora'>): number {
  return cfg.useRslora ? cfg.loraAlpha / Math.sqrt(cfg.r) : cfg.loraAlpha / cfg.r;
}

export function loraKey(layer: number, target: LoraTarget, which: 'A' | 'B'): string {
  return `base_model.model.model.layers.${layer}.${loraSubmodule(target)}.${target}.lora_${which}.weight`;
}

/** DoRA's magnitude vector m [out_features] of one projection, under the key PEFT saves it with. */
export function loraMagnitudeKey(layer: number, target: LoraTarget): string {
  return `base_model.model.model.layers.${layer}.${loraSubmodule(target)}.${target}.lora_magnitude_vector`;
}

// Read also with the adapter name and the DoraLinearLayer's ".weight" that a model's own state_dict has
// ("lora_magnitude_vector.default.weight"), as PEFT's loader accepts them.
const MAGNITUDE_PATTERN =
  /^base_model\.model\.model\.layers\.(0|[1-9]\d{0,8})\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.lora_magnitude_vector(?:\.[^.]+)?(?:\.weight)?$/;

export function parseMagnitudeKey(key: string): { layer: number; target: LoraTarget } | null {
  const m = MAGNITUDE_PATTERN.exec(key);
  if (m === null) return null;
  const target = m[3] as LoraTarget;
  if (loraSubmodule(target) !== m[2]) return null;
  return { layer: Number(m[1]), target };
}

// The optional middle group is the adapter name ("lora_A.default.weight"), which some PEFT
// versions keep in saved keys; the layer index refuses leading zeros so every key has one spelling.
const KEY_PATTERN =
  /^base_model\.model\.model\.layers\.(0|[1-9]\d{0,8})\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.lora_(A|B)(?:\.[^.]+)?\.weight$/;

export function parseLoraKey(key: string): { layer: number; target: LoraTarget; which: 'A' | 'B' } | null {
  const m = KEY_PATTERN.exec(key);
  if (m === null) return null;
  const target = m[3] as LoraTarget;
  if (loraSubmodule(target) !== m[2]) return null;
  return { layer: Number(m[1]), target, which: m[4] as 'A' | 'B' };
}

/** A value as JSON for a message, cut to `max` characters. */
export function show(value: unknown, max = 60): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

/** Throws ConfigError unless cfg is something we can train or apply. `where` prefixes messages. */
function checkAdapterConfig(cfg: AdapterConfig, where: string, file?: string): void {
  const bad = (problem: string): never => {
    throw new ConfigError(file, `${where}: ${problem}`);
  };
  if (!Number.isSafeInteger(cfg.r) || cfg.r <= 0) bad(`r must be a positive integer (got ${show(cfg.r)}).`);
  if (typeof cfg.loraAlpha !== 'number' || !Number.isFinite(cfg.loraAlpha) || cfg.loraAlpha <= 0) {
    bad(`lora_alpha must be a positive number (got ${show(cfg.loraAlpha)}).`);
  }
  if (typeof cfg.loraDropout !== 'number' || !(cfg.loraDropout >= 0 && cfg.loraDropout < 1)) {
    bad(`lora_dropout must be a number from 0 up to (not including) 1 (got ${show(cfg.loraDropout)}).`);
  }
  if (cfg.targetModules.length === 0) bad(`target_modules is empty: list at least one of ${SUPPORTED}.`);
  for (const t of cfg.targetModules) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) {
      bad(`target_modules includes ${show(t)}, which LoRA Studio cannot adapt (supported: ${SUPPORTED}).`);
    }
  }
  if (typeof cfg.useRslora !== 'boolean') bad(`use_rslora must be true or false (got ${show(cfg.useRslora)}).`);
  if (cfg.useDora !== undefined && typeof cfg.useDora !== 'boolean') bad(`use_dora must be true or false (got ${show(cfg.useDora)}).`);
  if (typeof cfg.baseModel !== 'string') bad(`base_model_name_or_path must be a string (got ${show(cfg.baseModel)}).`);
}

/** PEFT's adapter_config.json for a LoRA on a causal LM. */
export function adapterConfigToJson(cfg: AdapterConfig): Record<string, unknown> {
  checkAdapterConfig(cfg, 'Adapter config');
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    r: cfg.r,
    lora_alpha: cfg.loraAlpha,
    lora_dropout: cfg.loraDropout,
    target_modules: LORA_TARGETS.filter((t) => cfg.targetModules.includes(t)),
    bias: 'none',
    use_rslora: cfg.useRslora,
    fan_in_fan_out: false,
    base_model_name_or_path: cfg.baseModel,
    init_lora_weights: true,
    modules_to_save: null,
    inference_mode: true,
    revision: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    use_dora: cfg.useDora === true,
  };
}

export function parseAdapterConfig(text: string, fileName = 'adapter_config.json'): AdapterConfig {
  return parseConfig(text, fileName).config;
}

/** parseAdapterConfig, with notes (one line each, naming the file) on what was read that the user should know. */
export function readAdapterConfig(text: string, fileName = 'adapter_config.json'): { config: AdapterConfig; notes: string[] } {
  const { config, notes } = parseConfig(text, fileName);
  return { config, notes };
}

/** `layers`: the layers layers_to_transform covers (0 .. count − 1) and its value as written, when it is set. */
function parseConfig(text: string, fileName: string): { config: AdapterConfig; notes: string[]; layers?: { count: number; written: string } } {
  const bad = throwerFor(ConfigError, fileName);
  const unsupported = throwerFor(UnsupportedError, fileName);

  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return bad(`is not valid JSON (${(e as Error).message}). Re-download the adapter or fix the file by hand.`, e);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return bad(`must be a JSON object of PEFT settings (got ${show(json)}).`);
  }
  const obj = json as Record<string, unknown>;
  const get = (key: string): unknown => (Object.hasOwn(obj, key) ? obj[key] : undefined);
  const isEmpty = (v: unknown) =>
    v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0) ||
    (typeof v === 'object' && v !== null && Object.keys(v).length === 0);

  const peftType = get('peft_type');
  if (peftType === undefined) bad('has no peft_type, so it is not a PEFT adapter config (expected "peft_type": "LORA").');
  if (peftType !== 'LORA') {
    unsupported(`peft_type is ${show(peftType)}; LoRA Studio only reads LORA adapters.`);
  }

  const r = get('r');
  if (r === undefined) bad('"r" (the LoRA rank) is missing; PEFT always writes it, so the file is incomplete.');

  // PEFT reads a string as a regular expression matched against full module paths; "all-linear"
  // is its one named shortcut, which for a Llama means every projection we support.
  let targets: LoraTarget[] = [];
  const rawTargets = get('target_modules');
  if (rawTargets === 'all-linear') {
    targets = [...LORA_TARGETS];
  } else if (typeof rawTargets === 'string') {
    unsupported(
      `target_modules is the pattern ${show(rawTargets)}, which PEFT treats as a regular expression; ` +
        `LoRA Studio needs a list of module names instead, e.g. ["q_proj", "v_proj"] (supported: ${SUPPORTED}).`,
    );
  } else if (Array.isArray(rawTargets)) {
    for (const t of rawTargets) {
      if (typeof t !== 'string' || !(LORA_TARGETS as readonly string[]).includes(t)) {
        unsupported(`target_modules includes ${show(t)}, which LoRA Studio cannot adapt (supported: ${SUPPORTED}).`);
      }
    }
    targets = LORA_TARGETS.filter((t) => rawTargets.includes(t));
  } else {
    bad(`target_modules must be a list of module names such as ["q_proj", "v_proj"] (got ${show(rawTargets)}).`);
  }

  if (get('fan_in_fan_out') === true) {
    unsupported('fan_in_fan_out is true, which is for GPT-2-style Conv1D layers; Llama-family adapters must have it false.');
  }
  if (get('lora_bias') === true) unsupported('lora_bias is true: adapters with a bias on lora_B are not supported.');
  // Each of these, when set, changes which weights exist or how they apply, so ignoring it would
  // load an adapter that silently computes something other than what was trained.
  for (const [key, why] of UNSUPPORTED_WHEN_SET) {
    if (!isEmpty(get(key))) unsupported(`${key} is ${show(get(key))}: ${why}`);
  }
  const notes: string[] = [];
  const layers = layersToTransform(get('layers_to_transform'), get('layers_pattern'), fileName, notes);

  // Defaults are PEFT's LoraConfig defaults, so a hand-written minimal config means what PEFT means.
  const alpha = get('lora_alpha');
  const dropout = get('lora_dropout');
  const rslora = get('use_rslora');
  const dora = get('use_dora');
  const base = get('base_model_name_or_path');
  const cfg: AdapterConfig = {
    r: r as number,
    loraAlpha: alpha === undefined ? 8 : (alpha as number),
    loraDropout: dropout === undefined || dropout === null ? 0 : (dropout as number),
    targetModules: targets,
    useRslora: rslora === undefined || rslora === null ? false : (rslora as boolean),
    baseModel: base === undefined || base === null ? '' : (base as string),
  };
  if (dora !== undefined && dora !== null && dora !== false) cfg.useDora = dora as boolean;
  checkAdapterConfig(cfg, fileName, fileName);
  if (alpha === undefined) {
    notes.push(
      `${fileName}: has no lora_alpha, so PEFT's default 8 applies (scale ${+loraScale(cfg).toFixed(4)} at r = ${cfg.r}). ` +
        'If the adapter was trained with another lora_alpha, add it to the config.',
    );
  }
  return { config: cfg, notes, layers };
}

/**
 * PEFT applies an adapter only to the layers whose index layers_to_transform lists (a single int: that one
 * layer; empty or null: every layer). Only "every layer" is something LoRA Studio computes, so a list is read
 * when it holds 0 .. n − 1, for a model of n layers (readAdapter checks n against the model), and refused
 * when it leaves a layer out. Returns n, or undefined when the key is unset.
 */
function layersToTransform(value: unknown, pattern: unknown, file: string, notes: string[]): { count: number; written: string } | undefined {
  if (value === undefined || value === null || (Array.isArray(value) && value.length === 0)) return undefined;
  const list = typeof value === 'number' ? [value] : value;
  if (!Array.isArray(list) || list.some((i) => !Number.isSafeInteger(i) || i < 0)) {
    throw new ConfigError(file, `${file}: layers_to_transform must be a layer index or a list of them (got ${show(value)}).`);
  }
  const listed = new Set(list as number[]);
  const n = Math.max(...listed) + 1;
  const missing = [...Array(n).keys()].filter((i) => !listed.has(i));
  if (missing.length > 0) {
    throw new UnsupportedError(file, `${file}: layers_to_transform is ${show(value)}: adapters on only some layers are not supported ` +
      `(it leaves out layer ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}); train on all layers.`);
  }
  // layers_pattern names the model's list of layers; a Llama-family model calls it "layers".
  const patterns = typeof pattern === 'string' ? [pattern] : Array.isArray(pattern) ? pattern : [];
  if (patterns.length > 0 && !patterns.includes('layers')) {
    throw new UnsupportedError(file, `${file}: layers_pattern is ${show(pattern)}, but a Llama-family model keeps its decoder layers in "layers", ` +
      'so PEFT would apply this adapter nowhere. Fix layers_pattern or remove it.');
  }
  notes.push(`${file}: layers_to_transform lists layers 0 to ${n - 1}, so it covers every layer of a model with up to ${n}: read as an adapter on all layers.`);
  return { count: n, written: show(value) };
}

/**
 * Checks the adapter's tensor names and shapes against its config and the base model: every
 * (layer, target) has A as [r, in] and B as [out, r] (and, with use_dora, its magnitude as [out]),
 * nothing else is present. Returns the canonical key (no adapter name) → key as stored.
 */
function checkAdapterTensors(
  cfg: AdapterConfig,
  shapes: Map<string, number[]>,
  expected: AdapterExpectation | undefined,
  file: string,
): Map<string, string> {
  const canonical = new Map<string, string>();
  const example = loraKey(0, cfg.targetModules[0], 'A');
  for (const key of [...shapes.keys()].sort()) {
    const shape = shapes.get(key)!;
    const mag = parseMagnitudeKey(key);
    if (mag !== null) {
      checkMagnitudeTensor(cfg, key, mag, shape, expected, file, canonical);
      continue;
    }
    const p = parseLoraKey(key);
    if (p === null) {
      throw new FormatError(file, `${file}: unexpected key ${show(key)}: LoRA Studio only reads LoRA weights named like "${example}".`);
    }
    if (!cfg.targetModules.includes(p.target)) {
      throw new FormatError(
        file,
        `${file}: unexpected key ${show(key)}: it adapts ${p.target}, which target_modules in the adapter config does not list ` +
          `(${cfg.targetModules.join(', ')}). The config and weights do not belong together.`,
      );
    }
    const name = loraKey(p.layer, p.target, p.which);
    if (canonical.has(name)) {
      throw new FormatError(file, `${file}: ${show(key)} and ${show(canonical.get(name))} are the same weight saved twice; keep one.`);
    }
    canonical.set(name, key);
    if (expected === undefined) continue;
    if (p.layer >= expected.numLayers) {
      throw new ShapeError(
        file,
        `${file}: ${key} is for layer ${p.layer}, but this model has only ${expected.numLayers} layers ` +
          `(0..${expected.numLayers - 1}): the adapter was trained for another model.`,
      );
    }
    const { inFeatures, outFeatures } = expected.shapes(p.target);
    const want = p.which === 'A' ? [cfg.r, inFeatures] : [outFeatures, cfg.r];
    if (shape.length !== 2 || shape[0] !== want[0] || shape[1] !== want[1]) {
      throw new ShapeError(
        file,
        `${file}: ${key} has shape [${shape.join(', ')}] but this model's ${p.target} needs [${want.join(', ')}]` +
          ` (r = ${cfg.r}): the adapter was trained for another model.`,
      );
    }
  }
  if (expected !== undefined) {
    for (let layer = 0; layer < expected.numLayers; layer++) {
      for (const target of cfg.targetModules) {
        for (const which of ['A', 'B'] as const) {
          const name = loraKey(layer, target, which);
          if (!canonical.has(name)) {
            throw new FormatError(
              file,
              `${file}: missing ${name}: target_modules lists ${target}, so every layer needs both lora_A and lora_B. ` +
                'The file is incomplete: export or download it again.',
            );
          }
        }
        if (cfg.useDora === true && !canonical.has(loraMagnitudeKey(layer, target))) {
          throw new FormatError(
            file,
            `${file}: missing ${loraMagnitudeKey(layer, target)}: the config sets use_dora, so every adapted projection needs its DoRA ` +
              'magnitude vector. The file is incomplete: export or download it again.',
          );
        }
      }
    }
  }
  return canonical;
}

/** One DoRA magnitude vector of checkAdapterTensors: allowed only with use_dora, on a listed target, shaped [out_features]. */
function checkMagnitudeTensor(
  cfg: AdapterConfig, key: string, mag: { layer: number; target: LoraTarget }, shape: number[],
  expected: AdapterExpectation | undefined, file: string, canonical: Map<string, string>,
): void {
  if (cfg.useDora !== true) {
    throw new FormatError(file, `${file}: ${show(key, 200)} is a DoRA magnitude vector, but the adapter config does not set use_dora: true. ` +
      'The config and weights do not belong together.');
  }
  if (!cfg.targetModules.includes(mag.target)) {
    throw new FormatError(file, `${file}: unexpected key ${show(key, 200)}: it adapts ${mag.target}, which target_modules in the adapter config does not list ` +
      `(${cfg.targetModules.join(', ')}). The config and weights do not belong together.`);
  }
  const name = loraMagnitudeKey(mag.layer, mag.target);
  if (canonical.has(name)) throw new FormatError(file, `${file}: ${show(key, 200)} and ${show(canonical.get(name))} are the same weight saved twice; keep one.`);
  canonical.set(name, key);
  if (expected === undefined) return;
  if (mag.layer >= expected.numLayers) {
    throw new ShapeError(file, `${file}: ${key} is for layer ${mag.layer}, but this model has only ${expected.numLayers} layers ` +
      `(0..${expected.numLayers - 1}): the adapter was trained for another model.`);
  }
  const { outFeatures } = expected.shapes(mag.target);
  if (shape.length !== 1 || shape[0] !== outFeatures) {
    throw new ShapeError(file, `${file}: ${key} has shape [${shape.join(', ')}] but this model's ${mag.target} needs [${outFeatures}] ` +
      '(one magnitude per output feature): the adapter was trained for another model.');
  }
}

export function readAdapter(
  configText: string,
  weightsBytes: Uint8Array | ArrayBuffer,
  expected: AdapterExpectation,
  fileNames: AdapterFileNames = DEFAULT_NAMES,
): { config: AdapterConfig; weights: Map<string, Float32Array>; notes: string[] } {
  const { config, notes, layers } = parseConfig(configText, fileNames.config);
  if (layers !== undefined && layers.count < expected.numLayers) {
    throw new UnsupportedError(fileNames.config, `${fileNames.config}: layers_to_transform is ${layers.written}: adapters on only some layers ` +
      `are not supported, and here there are ${expected.numLayers} layers (0 to ${expected.numLayers - 1}); train on all layers.`);
  }
  const file = parseSafetensors(weightsBytes, fileNames.weights);
  const shapes = new Map([...file.tensors].map(([k, t]) => [k, t.shape]));
  const canonical = checkAdapterTensors(config, shapes, expected, fileNames.weights);
  const weights = new Map<string, Float32Array>();
  for (const [name, stored] of canonical) weights.set(name, file.readF32(stored));
  return { config, weights, notes };
}

/**
 * Serialises an adapter. Shapes follow from the key and r (A is [r, in], B is [out, r]); pass
 * `expected` to also check them and completeness against the base model before writing.
 */
export function writeAdapter(
  config: AdapterConfig,
  weights: Map<string, Float32Array>,
  expected?: AdapterExpectation,
): { configJson: string; weights: Uint8Array } {
  const configJson = `${JSON.stringify(adapterConfigToJson(config), null, 2)}\n`;
  const shapes = new Map<string, number[]>();
  for (const [key, data] of weights) {
    if (parseMagnitudeKey(key) !== null) {
      shapes.set(key, [data.length]);
      continue;
    }
    const p = parseLoraKey(key);
    const other = data.length / config.r;
    if (p !== null && !Number.isInteger(other)) {
      throw new ShapeError(undefined, `Cannot export ${key}: its ${data.length} values are not a multiple of r = ${config.r}.`);
    }
    shapes.set(key, p?.which === 'A' ? [config.r, other] : [other, config.r]);
  }
  const canonical = checkAdapterTensors(config, shapes, expected, DEFAULT_NAMES.weights);
  const tensors = [...canonical].map(([name, key]) => ({ name, shape: shapes.get(key)!, data: weights.get(key)! }));
  // PEFT writes this metadata; some transformers loaders check it before trusting the file.
  return { configJson, weights: writeSafetensors(tensors, { format: 'pt' }) };
}
