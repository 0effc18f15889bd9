// Tests for src/io/peft.ts: key naming, adapter_config.json in both directions, adapter round
// trips against a tiny model's shapes, and a table of bad configs and bad weight files, each of
// which must fail with a typed error naming the file and the problem.

import { describe, expect, it } from 'vitest';
import { ConfigError, FormatError, LoraStudioError, ShapeError, UnsupportedError } from '../../src/io/errors.ts';
import {
  adapterConfigToJson,
  LORA_TARGETS,
  loraKey,
  loraMagnitudeKey,
  loraScale,
  loraSubmodule,
  parseAdapterConfig,
  parseLoraKey,
  readAdapter,
  readAdapterConfig,
  writeAdapter,
  type AdapterConfig,
  type AdapterExpectation,
  type LoraTarget,
} from '../../src/io/peft.ts';
import { checkAdapterFitsModel, sameBaseModel } from '../../src/io/peft_fit.ts';
import { parseSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { readPeftFiles } from '../../src/io/peft_files.ts';
import { parseModelConfig, projectionDims } from '../../src/model/config.ts';
import { adapterExpectation } from '../../src/model/lora.ts';

// A tiny Llama: hidden 32, 2 KV heads of 8 (so k/v project to 16), MLP 48, 2 layers.
const MODEL: AdapterExpectation = {
  numLayers: 2,
  shapes: (target: LoraTarget) =>
    ({
      q_proj: { inFeatures: 32, outFeatures: 32 },
      k_proj: { inFeatures: 32, outFeatures: 16 },
      v_proj: { inFeatures: 32, outFeatures: 16 },
      o_proj: { inFeatures: 32, outFeatures: 32 },
      gate_proj: { inFeatures: 32, outFeatures: 48 },
      up_proj: { inFeatures: 32, outFeatures: 48 },
      down_proj: { inFeatures: 48, outFeatures: 32 },
    })[target],
};

const CONFIG: AdapterConfig = {
  r: 4,
  loraAlpha: 8,
  loraDropout: 0.05,
  targetModules: ['q_proj', 'v_proj'],
  useRslora: false,
  baseModel: 'HuggingFaceTB/SmolLM2-135M',
};

/** Shapes of every adapter tensor for cfg on MODEL, keyed by PEFT name. */
function adapterShapes(cfg: AdapterConfig, model = MODEL): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (let layer = 0; layer < model.numLayers; layer++) {
    for (const target of cfg.targetModules) {
      const { inFeatures, outFeatures } = model.shapes(target);
      shapes.set(loraKey(layer, target, 'A'), [cfg.r, inFeatures]);
      shapes.set(loraKey(layer, target, 'B'), [outFeatures, cfg.r]);
      if (cfg.useDora) shapes.set(loraMagnitudeKey(layer, target), [outFeatures]);
    }
  }
  return shapes;
}

function filled(shape: number[], seed: number): Float32Array {
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(seed * 100 + i));
}

/** A weights file from name → shape, with `edit` applied to the list first. */
function weightsFile(
  shapes: Map<string, number[]>,
  edit: (list: { name: string; shape: number[]; data: Float32Array }[]) => typeof list = (l) => l,
): Uint8Array {
  const list = [...shapes].map(([name, shape], i) => ({ name, shape, data: filled(shape, i) }));
  return writeSafetensors(edit(list), { format: 'pt' });
}

const configText = (overrides: Record<string, unknown> = {}) => JSON.stringify({ ...adapterConfigToJson(CONFIG), ...overrides });

describe('LoRA key names', () => {
  it('lists the seven Llama projections and where they live', () => {
    expect(LORA_TARGETS).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    expect(LORA_TARGETS.map(loraSubmodule)).toEqual(['self_attn', 'self_attn', 'self_attn', 'self_attn', 'mlp', 'mlp', 'mlp']);
  });

  it('builds PEFT keys and parses them back, with or without an adapter name', () => {
    expect(loraKey(3, 'down_proj', 'B')).toBe('base_model.model.model.layers.3.mlp.down_proj.lora_B.weight');
    for (const target of LORA_TARGETS) {
      for (const which of ['A', 'B'] as const) {
        expect(parseLoraKey(loraKey(17, target, which))).toEqual({ layer: 17, target, which });
      }
    }
    expect(parseLoraKey('base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight')).toEqual({ layer: 0, target: 'q_proj', which: 'A' });
  });

  it('returns null for keys that are not LoRA weights', () => {
    for (const key of [
      'base_model.model.model.layers.0.mlp.q_proj.lora_A.weight', // wrong sub-module
      'base_model.model.model.layers.01.self_attn.q_proj.lora_A.weight', // leading zero
      'base_model.model.model.layers.0.self_attn.q_proj.lora_C.weight',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.a.b.weight',
      'base_model.model.lm_head.lora_A.weight',
      'model.layers.0.self_attn.q_proj.lora_A.weight',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight.extra',
    ]) {
      expect(parseLoraKey(key), key).toBeNull();
    }
  });
});

describe('adapter_config.json', () => {
  it('writes every key PEFT expects', () => {
    expect(adapterConfigToJson({ ...CONFIG, targetModules: ['v_proj', 'q_proj'] })).toEqual({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0.05,
      target_modules: ['q_proj', 'v_proj'],
      bias: 'none',
      use_rslora: false,
      fan_in_fan_out: false,
      base_model_name_or_path: 'HuggingFaceTB/SmolLM2-135M',
      init_lora_weights: true,
      modules_to_save: null,
      inference_mode: true,
      revision: null,
      layers_to_transform: null,
      layers_pattern: null,
      rank_pattern: {},
      alpha_pattern: {},
      use_dora: false,
    });
  });

  it('round-trips through JSON', () => {
    const cfg: AdapterConfig = { ...CONFIG, targetModules: [...LORA_TARGETS], useRslora: true, r: 16, loraAlpha: 32 };
    expect(parseAdapterConfig(JSON.stringify(adapterConfigToJson(cfg)))).toEqual(cfg);
  });

  it('reads a config as PEFT 0.13 writes it (sorted keys, extra fields, modules in set order)', () => {
    const text = `{
  "alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": "meta-llama/Llama-3.2-1B",
  "bias": "none", "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
  "layer_replication": null, "layers_pattern": null, "layers_to_transform": null, "loftq_config": {},
  "lora_alpha": 16, "lora_dropout": 0.1, "megatron_config": null, "megatron_core": "megatron.core",
  "modules_to_save": null, "peft_type": "LORA", "r": 8, "rank_pattern": {}, "revision": null,
  "target_modules": ["v_proj", "o_proj", "q_proj", "k_proj"], "task_type": "CAUSAL_LM",
  "use_dora": false, "use_rslora": false
}`;
    expect(parseAdapterConfig(text)).toEqual({
      r: 8,
      loraAlpha: 16,
      loraDropout: 0.1,
      targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
      useRslora: false,
      baseModel: 'meta-llama/Llama-3.2-1B',
    });
  });

  it('uses PEFT defaults for omitted fields and expands "all-linear"', () => {
    const cfg = parseAdapterConfig('{"peft_type":"LORA","r":2,"target_modules":"all-linear"}');
    expect(cfg).toEqual({ r: 2, loraAlpha: 8, loraDropout: 0, targetModules: [...LORA_TARGETS], useRslora: false, baseModel: '' });
  });

  it('computes the LoRA scale with and without rsLoRA', () => {
    expect(loraScale({ r: 16, loraAlpha: 32, useRslora: false })).toBe(2);
    expect(loraScale({ r: 16, loraAlpha: 32, useRslora: true })).toBe(8);
  });

  it('refuses to write an invalid config', () => {
    expect(() => adapterConfigToJson({ ...CONFIG, r: 0 })).toThrow(ConfigError);
    expect(() => adapterConfigToJson({ ...CONFIG, targetModules: [] })).toThrow(/target_modules is empty/);
  });
});

describe('adapter round trip', () => {
  it('writeAdapter → readAdapter returns the same weights and config', () => {
    const cfg: AdapterConfig = { ...CONFIG, targetModules: [...LORA_TARGETS] };
    const weights = new Map([...adapterShapes(cfg)].map(([k, s], i) => [k, filled(s, i)]));
    const out = writeAdapter(cfg, weights, MODEL);
    expect(JSON.parse(out.configJson).peft_type).toBe('LORA');
    const back = readAdapter(out.configJson, out.weights, MODEL);
    expect(back.config).toEqual(cfg);
    expect([...back.weights.keys()].sort()).toEqual([...weights.keys()].sort());
    for (const [k, v] of weights) expect(back.weights.get(k)).toEqual(v);
  });

  it('reads keys saved with an adapter name and returns them under the plain PEFT name', () => {
    const shapes = adapterShapes(CONFIG);
    const bytes = weightsFile(shapes, (list) => list.map((t) => ({ ...t, name: t.name.replace(/\.weight$/, '.default.weight') })));
    const { weights } = readAdapter(configText(), bytes, MODEL);
    expect([...weights.keys()].sort()).toEqual([...shapes.keys()].sort());
  });

  it('round-trips a DoRA adapter: use_dora in the config, one magnitude vector per projection under PEFT\'s key', () => {
    const cfg: AdapterConfig = { ...CONFIG, useDora: true };
    const weights = new Map([...adapterShapes(cfg)].map(([k, s], i) => [k, filled(s, i)]));
    const out = writeAdapter(cfg, weights, MODEL);
    expect(JSON.parse(out.configJson).use_dora).toBe(true);
    const file = parseSafetensors(out.weights);
    // PEFT's get_peft_model_state_dict drops the adapter name and the DoraLinearLayer's ".weight".
    expect(file.tensors.get('base_model.model.model.layers.1.self_attn.v_proj.lora_magnitude_vector')?.shape).toEqual([16]);
    expect([...file.tensors.keys()].filter((k) => k.includes('magnitude'))).toHaveLength(4);
    const back = readAdapter(out.configJson, out.weights, MODEL);
    expect(back.config).toEqual(cfg);
    for (const [k, v] of weights) expect(back.weights.get(k)).toEqual(v);
    // A model's own state_dict names (".lora_magnitude_vector.default.weight") read as the same weights.
    const named = weightsFile(adapterShapes(cfg), (l) => l.map((t) => ({ ...t, name: t.name.replace(/magnitude_vector$/, 'magnitude_vector.default.weight') })));
    expect([...readAdapter(out.configJson, named, MODEL).weights.keys()].sort()).toEqual([...weights.keys()].sort());
    // A plain LoRA's config still says use_dora false, and reads back without the field.
    expect(JSON.parse(writeAdapter(CONFIG, new Map([...adapterShapes(CONFIG)].map(([k, s], i) => [k, filled(s, i)])), MODEL).configJson).use_dora).toBe(false);
  });

  it('infers shapes from r when writing without a model, and refuses data that is not a multiple of r', () => {
    const out = writeAdapter(CONFIG, new Map([[loraKey(0, 'q_proj', 'B'), new Float32Array(12)]]));
    expect(out.weights.length).toBeGreaterThan(48);
    expect(() => writeAdapter(CONFIG, new Map([[loraKey(0, 'q_proj', 'A'), new Float32Array(10)]]))).toThrow(ShapeError);
    expect(() => writeAdapter(CONFIG, new Map([[loraKey(0, 'q_proj', 'A'), new Float32Array(128)]]), MODEL)).toThrow(/missing .*layers\.0\.self_attn\.q_proj\.lora_B/);
  });
});

describe('malformed adapters', () => {
  const CFG = 'adapter_config.json';
  const W = 'adapter_model.safetensors';
  const good = weightsFile(adapterShapes(CONFIG));
  const qA0 = loraKey(0, 'q_proj', 'A');

  // [what, config text, weights bytes, error class, file the message must name, phrase]
  const cases: [string, string, Uint8Array, typeof LoraStudioError, string, RegExp][] = [
    ['r = 0', configText({ r: 0 }), good, ConfigError, CFG, /r must be a positive integer \(got 0\)/],
    ['r = -1', configText({ r: -1 }), good, ConfigError, CFG, /r must be a positive integer \(got -1\)/],
    ['r = 2.5', configText({ r: 2.5 }), good, ConfigError, CFG, /r must be a positive integer \(got 2.5\)/],
    ['r a string', configText({ r: '8' }), good, ConfigError, CFG, /r must be a positive integer \(got "8"\)/],
    ['missing r', configText({ r: undefined }), good, ConfigError, CFG, /"r" \(the LoRA rank\) is missing/],
    ['lora_alpha 0', configText({ lora_alpha: 0 }), good, ConfigError, CFG, /lora_alpha must be a positive number \(got 0\)/],
    ['lora_dropout 1.5', configText({ lora_dropout: 1.5 }), good, ConfigError, CFG, /lora_dropout must be a number from 0/],
    ['peft_type PREFIX_TUNING', configText({ peft_type: 'PREFIX_TUNING' }), good, UnsupportedError, CFG, /peft_type is "PREFIX_TUNING"; LoRA Studio only reads LORA/],
    ['no peft_type', configText({ peft_type: undefined }), good, ConfigError, CFG, /has no peft_type/],
    ['unknown target module', configText({ target_modules: ['q_proj', 'lm_head'] }), good, UnsupportedError, CFG, /target_modules includes "lm_head".*supported: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj/],
    ['regex target string', configText({ target_modules: '.*\\.(q|v)_proj' }), good, UnsupportedError, CFG, /regular expression.*list of module names.*supported: q_proj/],
    ['empty target list', configText({ target_modules: [] }), good, ConfigError, CFG, /target_modules is empty/],
    ['target_modules missing', configText({ target_modules: undefined }), good, ConfigError, CFG, /target_modules must be a list/],
    ['use_dora without the magnitude vectors', configText({ use_dora: true }), good, FormatError, W, /missing .*q_proj\.lora_magnitude_vector: the config sets use_dora/],
    ['use_dora not a boolean', configText({ use_dora: 'yes' }), good, ConfigError, CFG, /use_dora must be true or false \(got "yes"\)/],
    [
      'a DoRA magnitude vector without use_dora',
      configText(),
      weightsFile(adapterShapes({ ...CONFIG, useDora: true })),
      FormatError,
      W,
      /q_proj\.lora_magnitude_vector" is a DoRA magnitude vector, but the adapter config does not set use_dora/,
    ],
    [
      'a DoRA magnitude vector of another model',
      configText({ use_dora: true }),
      weightsFile(adapterShapes({ ...CONFIG, useDora: true }), (l) => l.map((t) => (t.name.endsWith('magnitude_vector') ? { ...t, shape: [8], data: new Float32Array(8) } : t))),
      ShapeError,
      W,
      /lora_magnitude_vector has shape \[8\] but this model's q_proj needs \[32\] \(one magnitude per output feature\)/,
    ],
    ['fan_in_fan_out', configText({ fan_in_fan_out: true }), good, UnsupportedError, CFG, /fan_in_fan_out is true/],
    ['rank_pattern', configText({ rank_pattern: { q_proj: 8 } }), good, UnsupportedError, CFG, /rank_pattern is .*per-module ranks are not supported/],
    ['layers_to_transform', configText({ layers_to_transform: [0] }), good, UnsupportedError, CFG, /layers_to_transform is \[0\]: adapters on only some layers/],
    ['modules_to_save', configText({ modules_to_save: ['lm_head'] }), good, UnsupportedError, CFG, /modules_to_save is \["lm_head"\]/],
    ['non-JSON config', '{"r": 8,', good, ConfigError, CFG, /is not valid JSON/],
    ['config is an array', '[1, 2]', good, ConfigError, CFG, /must be a JSON object of PEFT settings/],
    [
      'weights with the wrong shape',
      configText(),
      weightsFile(adapterShapes(CONFIG, { numLayers: 2, shapes: (t) => ({ ...MODEL.shapes(t), inFeatures: 64 }) })),
      ShapeError,
      W,
      /base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight has shape \[4, 64\] but this model's q_proj needs \[4, 32\].*trained for another model/,
    ],
    [
      'weights with another rank',
      configText({ r: 8 }),
      good,
      ShapeError,
      W,
      /lora_A\.weight has shape \[4, 32\] but this model's q_proj needs \[8, 32\] \(r = 8\)/,
    ],
    [
      'missing lora_B',
      configText(),
      weightsFile(adapterShapes(CONFIG), (l) => l.filter((t) => t.name !== loraKey(1, 'v_proj', 'B'))),
      FormatError,
      W,
      /missing base_model\.model\.model\.layers\.1\.self_attn\.v_proj\.lora_B\.weight/,
    ],
    [
      'layer index out of range',
      configText(),
      weightsFile(adapterShapes(CONFIG, { ...MODEL, numLayers: 3 })),
      ShapeError,
      W,
      /layers\.2\.self_attn\.q_proj\.lora_A\.weight is for layer 2, but this model has only 2 layers/,
    ],
    [
      'unexpected key',
      configText(),
      weightsFile(adapterShapes(CONFIG), (l) => [...l, { name: 'base_model.model.lm_head.weight', shape: [2, 2], data: new Float32Array(4) }]),
      FormatError,
      W,
      /unexpected key "base_model\.model\.lm_head\.weight"/,
    ],
    [
      'weights for a module the config does not list',
      configText(),
      weightsFile(adapterShapes({ ...CONFIG, targetModules: ['q_proj', 'k_proj', 'v_proj'] })),
      FormatError,
      W,
      /adapts k_proj, which target_modules in the adapter config does not list/,
    ],
    [
      'the same weight saved twice',
      configText(),
      weightsFile(adapterShapes(CONFIG), (l) => [...l, { ...l.find((t) => t.name === qA0)!, name: qA0.replace('.weight', '.default.weight') }]),
      FormatError,
      W,
      /are the same weight saved twice/,
    ],
    ['corrupt weights file', configText(), good.subarray(0, good.length - 3), FormatError, W, /belong|past the end|needs/],
  ];

  it('has a broad table', () => expect(cases.length).toBeGreaterThanOrEqual(25));

  for (const [what, config, weights, ErrorClass, file, phrase] of cases) {
    it(`refuses: ${what}`, () => {
      let caught: unknown;
      try {
        readAdapter(config, weights, MODEL);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ErrorClass);
      const err = caught as LoraStudioError;
      expect(err.file).toBe(file);
      expect(err.message.startsWith(`${file}: `)).toBe(true);
      expect(err.message).toMatch(phrase);
    });
  }

  it('names a custom config file name', () => {
    expect(() => parseAdapterConfig('{}', 'my-adapter/adapter_config.json')).toThrow(/^my-adapter\/adapter_config\.json: has no peft_type/);
  });
});

describe('checkAdapterFitsModel', () => {
  // The same tiny Llama as MODEL, as its config.json: q 4×8 = 32, k/v 2×8 = 16, MLP 48, 2 layers.
  const llama = (o: Record<string, unknown> = {}) =>
    parseModelConfig(JSON.stringify({
      architectures: ['LlamaForCausalLM'], hidden_size: 32, intermediate_size: 48, num_attention_heads: 4, num_key_value_heads: 2,
      head_dim: 8, num_hidden_layers: 2, vocab_size: 64, ...o,
    }));
  const shapesOf = (shapes: Map<string, number[]>) => new Map([...shapes].map(([k, shape]) => [k, { shape }]));
  const ALL: AdapterConfig = { ...CONFIG, targetModules: [...LORA_TARGETS] };
  const check = (cfg: AdapterConfig, shapes: Map<string, number[]>, model = llama(), modelName?: string) =>
    checkAdapterFitsModel(cfg, shapesOf(shapes), adapterExpectation(model), { modelName });
  const messages = (fit: ReturnType<typeof check>) => fit.refusals.map((e) => e.message);

  it('fits an adapter made for the model, every target, from the tensors of its safetensors file', () => {
    for (const t of LORA_TARGETS) expect(projectionDims(llama(), t)).toEqual(MODEL.shapes(t));
    const file = parseSafetensors(weightsFile(adapterShapes(ALL)));
    const fit = checkAdapterFitsModel(ALL, file.tensors, adapterExpectation(llama()), { modelName: './models/SmolLM2-135M/' });
    expect(fit).toEqual({ fits: true, refusals: [], warnings: [] });
  });

  it('refuses weights whose rank is not the config\'s r, once per factor whatever the layer count', () => {
    const fit = check(CONFIG, adapterShapes({ ...CONFIG, r: 8 }));
    expect(fit.fits).toBe(false);
    expect(fit.refusals.every((e) => e instanceof ShapeError && e.file === 'adapter_model.safetensors')).toBe(true);
    expect(messages(fit)).toEqual([
      'adapter_model.safetensors: lora_A of q_proj has rank 8 (shape [8, 32]), but adapter_config.json says r = 4: the two files do not belong together.',
      'adapter_model.safetensors: lora_B of q_proj has rank 8 (shape [32, 8]), but adapter_config.json says r = 4: the two files do not belong together.',
      'adapter_model.safetensors: lora_A of v_proj has rank 8 (shape [8, 32]), but adapter_config.json says r = 4: the two files do not belong together.',
      'adapter_model.safetensors: lora_B of v_proj has rank 8 (shape [16, 8]), but adapter_config.json says r = 4: the two files do not belong together.',
    ]);
  });

  it('refuses in/out features of another model, naming the model and the sizes', () => {
    // An adapter trained on a model with hidden 64 (so q/o and the MLP's input are 64 wide).
    const wide = llama({ hidden_size: 64, head_dim: 16 });
    const shapes = new Map<string, number[]>();
    for (let layer = 0; layer < 2; layer++) {
      for (const t of ['q_proj', 'down_proj'] as const) {
        const { inFeatures, outFeatures } = projectionDims(wide, t);
        shapes.set(loraKey(layer, t, 'A'), [4, inFeatures]);
        shapes.set(loraKey(layer, t, 'B'), [outFeatures, 4]);
      }
    }
    const fit = check({ ...CONFIG, targetModules: ['q_proj', 'down_proj'] }, shapes, llama(), 'tiny-llama');
    expect(messages(fit)).toEqual([
      'adapter_model.safetensors: lora_A of q_proj has in_features 64 (shape [4, 64]), but “tiny-llama”\'s q_proj has in_features 32: the adapter was trained for another model.',
      'adapter_model.safetensors: lora_B of q_proj has out_features 64 (shape [64, 4]), but “tiny-llama”\'s q_proj has out_features 32: the adapter was trained for another model.',
      'adapter_model.safetensors: lora_B of down_proj has out_features 64 (shape [64, 4]), but “tiny-llama”\'s down_proj has out_features 32: the adapter was trained for another model.',
    ]);
  });

  it('refuses an adapter for more layers, or fewer, than the model has', () => {
    const deeper = check(CONFIG, adapterShapes(CONFIG, { ...MODEL, numLayers: 3 }));
    expect(messages(deeper)).toEqual([
      'adapter_model.safetensors: has weights for 3 layers, but this model has 2 (num_hidden_layers): the adapter was trained for another model.',
    ]);
    const shallower = check(CONFIG, adapterShapes(CONFIG), llama({ num_hidden_layers: 4 }));
    expect(messages(shallower)).toEqual([
      'adapter_model.safetensors: has weights for only 2 layers, but this model has 4 (num_hidden_layers): the adapter was trained for another model.',
    ]);
    const holed = adapterShapes(CONFIG);
    holed.delete(loraKey(0, 'v_proj', 'B'));
    expect(messages(check(CONFIG, holed))).toEqual([
      'adapter_model.safetensors: has no base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight: adapter_config.json lists v_proj, ' +
        'so every layer needs lora_A and lora_B. The file is incomplete.',
    ]);
  });

  it('refuses targets the model lacks: in the config (refused on parsing) and in the weights', () => {
    // GPT-2's fused attention and the output head are not Llama projections LoRA Studio can adapt.
    expect(() => parseAdapterConfig(configText({ target_modules: ['q_proj', 'c_attn'] }))).toThrow(UnsupportedError);
    expect(() => parseAdapterConfig(configText({ target_modules: ['lm_head'] }))).toThrow(/target_modules includes "lm_head"/);
    const shapes = adapterShapes(CONFIG);
    shapes.set('base_model.model.model.layers.0.self_attn.c_attn.lora_A.weight', [4, 32]);
    shapes.set(loraKey(0, 'gate_proj', 'A'), [4, 32]);
    const fit = check(CONFIG, shapes);
    expect(fit.refusals.map((e) => e.constructor)).toEqual([FormatError, FormatError]);
    expect(messages(fit)).toEqual([
      'adapter_model.safetensors: "base_model.model.model.layers.0.self_attn.c_attn.lora_A.weight" is not a LoRA weight of a Llama projection, so LoRA Studio cannot apply it.',
      'adapter_model.safetensors: "base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight" adapts gate_proj, which adapter_config.json ' +
        'does not list in target_modules: the two files do not belong together.',
    ]);
  });

  it('warns, without refusing, when base_model_name_or_path names another model whose shapes fit', () => {
    const fit = check(CONFIG, adapterShapes(CONFIG), llama(), 'HuggingFaceTB/SmolLM2-135M-Instruct');
    expect(fit.fits).toBe(true);
    expect(fit.warnings).toEqual([
      'adapter_config.json: the adapter was trained on “HuggingFaceTB/SmolLM2-135M”, not “HuggingFaceTB/SmolLM2-135M-Instruct”. ' +
        'Where its shapes fit it can be applied, but it only does what it learned on the weights it was trained with.',
    ]);
    // No warning without a name on either side, or for the same model under a local path.
    expect(check({ ...CONFIG, baseModel: '' }, adapterShapes(CONFIG), llama(), 'anything').warnings).toEqual([]);
    expect(check(CONFIG, adapterShapes(CONFIG)).warnings).toEqual([]);
    expect(sameBaseModel('/content/models/smollm2-135m/', 'HuggingFaceTB/SmolLM2-135M')).toBe(true);
  });

  it('names the files the caller read the adapter from', () => {
    const files = { config: 'up/adapter_config.json', weights: 'up/adapter_model.safetensors' };
    const fit = checkAdapterFitsModel(CONFIG, shapesOf(adapterShapes({ ...CONFIG, r: 2 })), adapterExpectation(llama()), { files });
    expect(fit.refusals[0].file).toBe(files.weights);
    expect(fit.refusals[0].message).toMatch(/^up\/adapter_model\.safetensors: .* but up\/adapter_config\.json says r = 4/);
  });
});

describe('PEFT adapters made elsewhere: the import traps of issue 16', () => {
  const W = 'adapter_model.safetensors';
  const weightsFor = (numLayers: number) => weightsFile(adapterShapes(CONFIG, { ...MODEL, numLayers }));
  const refusal = (f: () => unknown): LoraStudioError => {
    try {
      f();
    } catch (e) {
      return e as LoraStudioError;
    }
    throw new Error('expected a refusal');
  };

  it('reads keys with ".default", a config without lora_alpha (PEFT default 8, with a note) and use_rslora', () => {
    const text = JSON.stringify({ peft_type: 'LORA', r: 4, target_modules: ['q_proj', 'v_proj'], use_rslora: true });
    const bytes = weightsFile(adapterShapes(CONFIG), (l) => l.map((t) => ({ ...t, name: t.name.replace(/\.weight$/, '.default.weight') })));
    const read = readAdapter(text, bytes, MODEL);
    expect(read.config).toMatchObject({ r: 4, loraAlpha: 8, useRslora: true });
    expect(loraScale(read.config)).toBe(4); // 8 / √4
    expect([...read.weights.keys()].sort()).toEqual([...adapterShapes(CONFIG).keys()].sort());
    expect(read.notes).toEqual([expect.stringMatching(/^adapter_config\.json: has no lora_alpha, so PEFT's default 8 applies \(scale 4 at r = 4\)/)]);
    expect(readAdapterConfig(text, 'up/adapter_config.json').notes[0]).toMatch(/^up\/adapter_config\.json: has no lora_alpha/);
    // The note travels with a library import too, and a config that sets lora_alpha has none.
    const files = new Map([['adapter_config.json', new TextEncoder().encode(text)], [W, bytes]]);
    expect(readPeftFiles(files, undefined, 'upload').notes).toEqual(read.notes);
    expect(readAdapter(configText(), weightsFor(2), MODEL).notes).toEqual([]);
  });

  it('refuses modules_to_save with the reason', () => {
    const e = refusal(() => readAdapter(configText({ modules_to_save: ['lm_head', 'embed_tokens'] }), weightsFor(2), MODEL));
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e.message).toMatch(/modules_to_save is \["lm_head","embed_tokens"\]: .*PEFT swaps those modules for trained copies.*Train without modules_to_save/);
  });

  it('reads layers_to_transform when it lists every layer (as PEFT: a list, or one int for a one-layer model), with a note', () => {
    for (const layers of [[0, 1], [1, 0], [0, 1, 1], [0, 1, 2]]) {
      const read = readAdapter(configText({ layers_to_transform: layers, layers_pattern: 'layers' }), weightsFor(2), MODEL);
      expect(read.config).toEqual(CONFIG);
      expect(read.notes[0]).toMatch(/layers_to_transform lists layers 0 to \d, .*read as an adapter on all layers/);
    }
    const one = { ...MODEL, numLayers: 1 };
    expect(readAdapter(configText({ layers_to_transform: 0 }), weightsFor(1), one).config).toEqual(CONFIG);
    // PEFT reads an empty list as every layer, like null.
    expect(readAdapter(configText({ layers_to_transform: [] }), weightsFor(2), MODEL).notes).toEqual([]);
  });

  it('refuses layers_to_transform that leaves a layer out, or names layers by another pattern, with the reason', () => {
    const cases: [unknown, unknown, RegExp, typeof LoraStudioError][] = [
      [1, null, /layers_to_transform is 1: adapters on only some layers are not supported \(it leaves out layer 0\)/, UnsupportedError],
      [[0, 2], null, /layers_to_transform is \[0,2\]: adapters on only some layers .*leaves out layer 1\)/, UnsupportedError],
      [0, null, /layers_to_transform is 0: adapters on only some layers are not supported, and here there are 2 layers \(0 to 1\)/, UnsupportedError],
      [[0, 1], 'h', /layers_pattern is "h", but a Llama-family model keeps its decoder layers in "layers"/, UnsupportedError],
      [['0'], null, /layers_to_transform must be a layer index or a list of them \(got \["0"\]\)/, ConfigError],
    ];
    for (const [layers, pattern, phrase, Kind] of cases) {
      const e = refusal(() => readAdapter(configText({ layers_to_transform: layers, layers_pattern: pattern }), weightsFor(2), MODEL));
      expect(e, String(phrase)).toBeInstanceOf(Kind);
      expect(e.file).toBe('adapter_config.json');
      expect(e.message).toMatch(phrase);
    }
    // Without a model, the weights say how many layers there are: [0] with weights for two layers is partial.
    const files = new Map([['adapter_config.json', new TextEncoder().encode(configText({ layers_to_transform: [0] }))], [W, weightsFor(2)]]);
    expect(refusal(() => readPeftFiles(files, undefined, 'upload')).message).toMatch(/layers_to_transform is \[0\]: adapters on only some layers/);
  });

  it('exports lora_alpha, base_model_name_or_path and only keys PEFT 0.10 accepts', () => {
    // PEFT 0.10's PeftConfig.from_pretrained passes every key to LoraConfig(**kwargs), which raises on an unknown
    // one; these are the fields of LoraConfig and its bases in PEFT v0.10.0 (src/peft/tuners/lora/config.py, src/peft/config.py).
    const PEFT_0_10 = new Set([
      'peft_type', 'auto_mapping', 'base_model_name_or_path', 'revision', 'task_type', 'inference_mode',
      'r', 'target_modules', 'lora_alpha', 'lora_dropout', 'fan_in_fan_out', 'bias', 'use_rslora', 'modules_to_save',
      'init_lora_weights', 'layers_to_transform', 'layers_pattern', 'rank_pattern', 'alpha_pattern', 'megatron_config',
      'megatron_core', 'loftq_config', 'use_dora', 'layer_replication',
    ]);
    const json = JSON.parse(writeAdapter(CONFIG, new Map([...adapterShapes(CONFIG)].map(([k, s], i) => [k, filled(s, i)])), MODEL).configJson);
    expect(Object.keys(json).filter((k) => !PEFT_0_10.has(k))).toEqual([]);
    expect(json).toMatchObject({ lora_alpha: 8, base_model_name_or_path: 'HuggingFaceTB/SmolLM2-135M' });
  });
});
