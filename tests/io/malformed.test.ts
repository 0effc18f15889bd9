// Malformed inputs through the public entry points (loadModel, loadTokenizer, parseDataset, readAdapter):
// each must be refused with a LoraStudioError whose message starts with the file it is about and says
// what is wrong. Model-folder cases run twice: from a folder, and over the Hub code path with a cache,
// which must stay empty (a model that fails to load writes nothing).

import { describe, expect, it } from 'vitest';
import { ConfigError, FormatError, LoraStudioError, ShapeError, UnsupportedError } from '../../src/io/errors';
import { hubSource, type HubCache } from '../../src/io/hub';
import { folderSource } from '../../src/io/model_source';
import { loadTokenizer } from '../../src/io/tokenizer';
import { parseDataset, type DatasetOptions } from '../../src/io/dataset';
import { readAdapter, writeAdapter, loraKey, type AdapterConfig } from '../../src/io/peft';
import { parseSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { parseModelConfig, projectionDims, type ModelConfig } from '../../src/model/config';
import { loadModel } from '../../src/model/load';
import { adapterExpectation as expectation } from '../../src/model/lora';
import { fixtureText, REPO_CONFIG, tinyRepo, TOKENIZER_VOCAB } from '../fixtures/tokenizer/tiny_repo';

const enc = (s: string) => new TextEncoder().encode(s);
const json = (v: unknown) => enc(JSON.stringify(v));

/** A safetensors file from a header (JSON text) and `data` zero bytes; `length` overrides the header length field. */
function raw(header: string, data = 0, length?: bigint): Uint8Array {
  const h = enc(header);
  const out = new Uint8Array(8 + h.length + data);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(h.length), true);
  out.set(h, 8);
  return out;
}
const t = (dtype: string, shape: number[], offsets: number[]) => ({ dtype, shape, data_offsets: offsets });

/**
 * A safetensors file written by hand, so that tensors can have any dtype: [name, dtype, shape, bytes] in order.
 * `storedAs` rewrites model.safetensors with some of its F32 tensors stored as another dtype, others added.
 */
function rawSafetensors(entries: [name: string, dtype: string, shape: number[], bytes: Uint8Array][]): Uint8Array {
  const header: Record<string, unknown> = {};
  let at = 0;
  for (const [name, dtype, shape, bytes] of entries) {
    header[name] = t(dtype, shape, [at, at + bytes.byteLength]);
    at += bytes.byteLength;
  }
  const out = raw(JSON.stringify(header), at);
  let offset = out.byteLength - at;
  for (const [, , , bytes] of entries) {
    out.set(bytes, offset);
    offset += bytes.byteLength;
  }
  return out;
}
const asBytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const STORE: Record<string, (v: Float32Array) => Uint8Array> = {
  F64: (v) => asBytes(Float64Array.from(v)),
  I32: (v) => asBytes(Int32Array.from(v, Math.round)),
  I8: (v) => asBytes(Int8Array.from(v, Math.round)),
  U8: (v) => asBytes(Uint8Array.from(v, Math.round)),
};
const storedAs = (dtypes: Record<string, string>, extra: [string, string, number[], Uint8Array][] = []) => (f: Files) => {
  const st = parseSafetensors(f.get('model.safetensors')!);
  const entries = [...st.tensors].map(([name, info]): [string, string, number[], Uint8Array] => {
    const dtype = dtypes[name] ?? 'F32';
    const values = st.readF32(name);
    return [name, dtype, info.shape, dtype === 'F32' ? asBytes(values) : STORE[dtype](values)];
  });
  f.set('model.safetensors', rawSafetensors([...entries, ...extra]));
};
const Q = 'model.layers.0.self_attn.q_proj';

// ── Model folders ───────────────────────────────────────────────────────────────────────────────────────

type Files = Map<string, Uint8Array>;
type ModelCase = [what: string, mutate: (f: Files) => void, file: string, ErrorClass: typeof LoraStudioError, problem: RegExp];

const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';
const INDEX = 'model.safetensors.index.json';
const indexOf = (f: Files) => JSON.parse(new TextDecoder().decode(f.get(INDEX)!));
const setIndex = (f: Files, change: (index: { weight_map: Record<string, string> }) => unknown) => {
  const index = indexOf(f);
  f.set(INDEX, json(change(index) ?? index));
};
const setConfig = (change: Record<string, unknown>) => (f: Files) => f.set('config.json', json({ ...REPO_CONFIG, ...change }));
const sharded = (mutate: (f: Files) => void) => Object.assign(mutate, { sharded: true });

const modelCases: ModelCase[] = [
  // model.safetensors
  ['a truncated model.safetensors', (f) => f.set('model.safetensors', f.get('model.safetensors')!.slice(0, 3000)), 'model.safetensors', FormatError, /past the end of the data section/],
  ['a 5-byte model.safetensors', (f) => f.set('model.safetensors', new Uint8Array(5)), 'model.safetensors', FormatError, /only 5 bytes, shorter than the 8-byte header length/],
  ['a header length past the end of the file', (f) => f.set('model.safetensors', raw('{}', 0, 4096n)), 'model.safetensors', FormatError, /says 4096 bytes, past the end of the file/],
  ['an oversized header length', (f) => f.set('model.safetensors', raw('{}', 0, 1n << 40n)), 'model.safetensors', FormatError, /larger than the 100 MB limit/],
  ['a non-JSON header', (f) => f.set('model.safetensors', raw('{"model.norm.weight": ')), 'model.safetensors', FormatError, /the header is not valid JSON/],
  ['overlapping offsets', (f) => f.set('model.safetensors', raw(JSON.stringify({ a: t('F32', [2], [0, 8]), b: t('F32', [2], [4, 12]) }), 12)), 'model.safetensors', FormatError, /tensors "a" and "b" overlap/],
  ['out-of-range offsets', (f) => f.set('model.safetensors', raw(JSON.stringify({ a: t('F32', [4], [0, 16]) }), 8)), 'model.safetensors', FormatError, /past the end of the data section \(8 bytes\)/],
  ['an unknown dtype', (f) => f.set('model.safetensors', raw(JSON.stringify({ a: t('F17', [1], [0, 4]) }), 4)), 'model.safetensors', FormatError, /unknown dtype "F17"/],
  ['dtype × shape not matching the bytes', (f) => f.set('model.safetensors', raw(JSON.stringify({ a: t('BF16', [3], [0, 8]) }), 8)), 'model.safetensors', FormatError, /\(8 bytes\) but BF16 × \[3\] needs 6 bytes/],
  ['a "__proto__" tensor name', (f) => f.set('model.safetensors', raw('{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)), 'model.safetensors', FormatError, /"__proto__" uses a reserved name/],
  ['bytes that belong to no tensor', (f) => f.set('model.safetensors', raw(JSON.stringify({ a: t('F32', [1], [0, 4]) }), 12)), 'model.safetensors', FormatError, /last 8 bytes of the data section belong to no tensor/],
  ['a weight whose shape does not fit the config', setConfig({ intermediate_size: 48 }), 'model.safetensors', ShapeError, /model\.layers\.0\.mlp\.down_proj\.weight has shape \[32,64\] but config\.json implies \[32,48\]/],
  ['weights missing a tensor the config needs', setConfig({ tie_word_embeddings: false, num_hidden_layers: 2 }), 'model.safetensors', ShapeError, /tensor\(s\) the config needs are missing, e\.g\. model\.layers\.1\./],
  // config.json
  ['config.json that is not JSON', (f) => f.set('config.json', enc('{"architectures": [')), 'config.json', ConfigError, /config\.json: not valid JSON/],
  ['config.json that is a list', (f) => f.set('config.json', json([REPO_CONFIG])), 'config.json', ConfigError, /must be a JSON object/],
  ['config.json missing hidden_size', (f) => f.set('config.json', json({ ...REPO_CONFIG, hidden_size: undefined })), 'config.json', ConfigError, /"hidden_size" is missing/],
  ['config.json without architectures', (f) => f.set('config.json', json({ ...REPO_CONFIG, architectures: undefined })), 'config.json', ConfigError, /"architectures" is missing; expected one of LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM/],
  ['an unsupported architecture', setConfig({ architectures: ['GPT2LMHeadModel'] }), 'config.json', UnsupportedError, /architecture GPT2LMHeadModel is not supported; LoRA Studio trains LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM/],
  ['heads not a multiple of KV heads', setConfig({ num_key_value_heads: 3 }), 'config.json', ConfigError, /num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)/],
  ['a "__proto__" key in config.json', (f) => f.set('config.json', enc(JSON.stringify(REPO_CONFIG).replace('{', '{"__proto__": {"hidden_size": 1},'))), 'config.json', ConfigError, /"__proto__" key/],
  ['an oversized config.json', (f) => f.set('config.json', enc(JSON.stringify(REPO_CONFIG) + ' '.repeat(2 << 20))), 'config.json', FormatError, /more than the 1 MB a config\.json can reasonably be/],
  ['no config.json', (f) => f.delete('config.json'), 'config.json', ConfigError, /config\.json: not found \(found: model\.safetensors, tokenizer\.json/],
  ['rope scaling', setConfig({ rope_scaling: { type: 'llama3', factor: 8 } }), 'config.json', UnsupportedError, /"rope_scaling" .* is not supported yet/],
  // Weights layout and the shard index
  ['no weights at all', (f) => f.delete('model.safetensors'), 'model.safetensors', FormatError, /not found, and there is no model\.safetensors\.index\.json either \(found: config\.json, tokenizer\.json/],
  ['only PyTorch pickles', (f) => (f.delete('model.safetensors'), f.set('pytorch_model.bin', new Uint8Array(8))), 'model.safetensors', UnsupportedError, /not found; m.* has only PyTorch pickle weights/],
  ['an index that is not JSON', sharded((f) => f.set(INDEX, enc('{"weight_map": {'))), INDEX, FormatError, /not valid JSON/],
  ['an index without weight_map', sharded((f) => f.set(INDEX, json({ metadata: {} }))), INDEX, FormatError, /"weight_map" is missing or not an object/],
  ['an empty weight_map', sharded((f) => setIndex(f, () => ({ weight_map: {} }))), INDEX, FormatError, /"weight_map" is empty/],
  ['a shard name with ".."', sharded((f) => setIndex(f, (i) => void (i.weight_map['model.norm.weight'] = '../../etc/model.safetensors'))), INDEX, FormatError, /shard "\.\.\/\.\.\/etc\/model\.safetensors", which is not a plain file name/],
  ['an absolute shard path', sharded((f) => setIndex(f, (i) => void (i.weight_map['model.norm.weight'] = '/tmp/x.safetensors'))), INDEX, FormatError, /"\/tmp\/x\.safetensors", which is not a plain file name/],
  ['a shard that is not safetensors', sharded((f) => setIndex(f, (i) => void (i.weight_map['model.norm.weight'] = 'pytorch_model.bin'))), INDEX, FormatError, /shards must be \.safetensors files/],
  ['a missing shard', sharded((f) => f.delete(SHARD2)), INDEX, FormatError, /lists the shard "model-00002-of-00002\.safetensors", which is not in m/],
  ['an index that misplaces a tensor', sharded((f) => setIndex(f, (i) => void (i.weight_map['model.norm.weight'] = SHARD1))), INDEX, FormatError, /says model\.norm\.weight is in model-00001-of-00002\.safetensors, but it is in model-00002/],
  ['an index naming a tensor no shard has', sharded((f) => setIndex(f, (i) => void (i.weight_map['model.extra.weight'] = SHARD1))), INDEX, FormatError, /says model\.extra\.weight is in .* but no shard has it/],
  ['a "__proto__" key in the index', sharded((f) => f.set(INDEX, enc(new TextDecoder().decode(f.get(INDEX)).replace('{', '{"__proto__": {},')))), INDEX, FormatError, /"__proto__" key/],
  ['a tensor in two shards', sharded((f) => f.set(SHARD2, writeSafetensors({ 'model.norm.weight': { shape: [32], data: new Float32Array(32) }, 'model.embed_tokens.weight': { shape: [TOKENIZER_VOCAB, 32], data: new Float32Array(TOKENIZER_VOCAB * 32) } }))), SHARD2, FormatError, /model-00002-of-00002\.safetensors: has model\.embed_tokens\.weight, which model-00001-of-00002\.safetensors also has/],
  // Weights we cannot use as a base, and quantized checkpoints: refused with the tensor or the format, and what to use
  ['an F64 base weight', storedAs({ 'model.norm.weight': 'F64' }), 'model.safetensors', UnsupportedError, /model\.norm\.weight is stored as F64, and LoRA Studio takes base weights as BF16, F16 or F32\. Use the model's bf16, f16 or f32 checkpoint/],
  ['an I32 base weight', storedAs({ [`${Q}.weight`]: 'I32' }), 'model.safetensors', UnsupportedError, /q_proj\.weight is stored as I32, and LoRA Studio takes base weights as BF16, F16 or F32/],
  ['an I8 base weight', storedAs({ [`${Q}.weight`]: 'I8' }), 'model.safetensors', UnsupportedError, /tensor "model\.layers\.0\.self_attn\.q_proj\.weight" has dtype I8, which LoRA Studio does not load .* Convert the checkpoint to F16, BF16 or F32 first/],
  ['a GPTQ config.json', setConfig({ quantization_config: { quant_method: 'gptq', bits: 4, group_size: 128, desc_act: false } }), 'config.json', UnsupportedError, /this checkpoint is quantized with GPTQ \("quant_method": "gptq"\), which LoRA Studio does not read\. Use the model's unquantized checkpoint instead: its bf16, f16 or f32 safetensors/],
  ['an AWQ config.json', setConfig({ quantization_config: { quant_method: 'awq', bits: 4, version: 'gemm' } }), 'config.json', UnsupportedError, /quantized with AWQ \("quant_method": "awq"\)/],
  ['a bitsandbytes-saved config.json', setConfig({ quantization_config: { quant_method: 'bitsandbytes', load_in_4bit: true, bnb_4bit_quant_type: 'nf4' } }), 'config.json', UnsupportedError, /quantized with bitsandbytes 4-bit \(nf4\) \("quant_method": "bitsandbytes"\)/],
  ['a bitsandbytes 8-bit config.json', setConfig({ quantization_config: { load_in_8bit: true } }), 'config.json', UnsupportedError, /quantized with bitsandbytes 8-bit \(LLM\.int8\)/],
  ['another quant_method', setConfig({ quantization_config: { quant_method: 'fbgemm_fp8' } }), 'config.json', UnsupportedError, /quantized with FBGEMM FP8 \("quant_method": "fbgemm_fp8"\)/],
  ['an unknown quant_method', setConfig({ quantization_config: { quant_method: 'squeeze9' } }), 'config.json', UnsupportedError, /quantized with "squeeze9" \("quant_method": "squeeze9"\)/],
  ['an MLX quantized config.json', setConfig({ quantization: { group_size: 64, bits: 4 } }), 'config.json', UnsupportedError, /quantized with MLX 4-bit \("quantization"\)/],
  ['an AutoGPTQ quantize_config.json', (f) => f.set('quantize_config.json', json({ bits: 4, group_size: 128 })), 'quantize_config.json', UnsupportedError, /quantized with GPTQ \(AutoGPTQ's quantize_config\.json\).*unquantized checkpoint/],
  ['GPTQ tensors with no word in config.json', storedAs({}, [[`${Q}.qweight`, 'I32', [4, 32], new Uint8Array(512)], [`${Q}.qzeros`, 'I32', [1, 4], new Uint8Array(16)], [`${Q}.scales`, 'F16', [1, 32], new Uint8Array(64)], [`${Q}.g_idx`, 'I32', [32], new Uint8Array(128)]]), 'model.safetensors', UnsupportedError, /quantized with GPTQ \(qweight\/qzeros\/scales\/g_idx tensors\), which LoRA Studio does not read/],
  ['bitsandbytes tensors with no word in config.json', storedAs({ [`${Q}.weight`]: 'U8' }, [[`${Q}.weight.absmax`, 'F32', [16], new Uint8Array(64)], [`${Q}.weight.quant_map`, 'F32', [16], new Uint8Array(64)], [`${Q}.weight.quant_state.bitsandbytes__nf4`, 'U8', [8], new Uint8Array(8)]]), 'model.safetensors', UnsupportedError, /quantized with bitsandbytes 4-bit \(absmax\/quant_map\/quant_state tensors\)/],
  // Tokenizer files in the model folder
  ['a tokenizer.json that does not parse', (f) => f.set('tokenizer.json', enc('{"model": {"type": "BPE", ')), 'tokenizer.json', FormatError, /tokenizer\.json: not valid JSON/],
  ['a tokenizer.json without a model', (f) => f.set('tokenizer.json', json({ added_tokens: [] })), 'tokenizer.json', FormatError, /has no "model" section/],
  ['an unknown tokenizer model type', (f) => f.set('tokenizer.json', json({ model: { type: 'SentencePieceMagic', vocab: { a: 0 } } })), 'tokenizer.json', UnsupportedError, /tokenizer model type "SentencePieceMagic" is not one LoRA Studio can run/],
  ['a negative vocabulary id', (f) => f.set('tokenizer.json', json({ model: { type: 'BPE', vocab: { a: -1 }, merges: [] } })), 'tokenizer.json', FormatError, /gives token "a" the id -1/],
  ['added_tokens that is not a list', (f) => f.set('tokenizer.json', json({ ...JSON.parse(fixtureText('bytelevel', 'tokenizer.json')), added_tokens: {} })), 'tokenizer.json', FormatError, /"added_tokens" must be a list/],
  ['a broken pre-tokenizer regex', (f) => f.set('tokenizer.json', json({ ...JSON.parse(fixtureText('bytelevel', 'tokenizer.json')), pre_tokenizer: { type: 'Split', pattern: { Regex: '(unclosed' }, behavior: 'Isolated', invert: false } })), 'tokenizer.json', FormatError, /cannot be used as a tokenizer/],
  ['a tokenizer bigger than the model vocabulary', setConfig({ vocab_size: 300 }), 'tokenizer.json', ShapeError, /produces ids up to 378, but (m\/)+config\.json has vocab_size 300: the tokenizer belongs to another model/],
  ['a tokenizer_config.json that does not parse', (f) => f.set('tokenizer_config.json', enc('{"eos_token": ')), 'tokenizer_config.json', FormatError, /tokenizer_config\.json: not valid JSON/],
  ['an eos_token not in the vocabulary', (f) => f.set('tokenizer_config.json', json({ eos_token: '</s>' })), 'tokenizer_config.json', FormatError, /eos_token "<\/s>" is not in (m\/)+tokenizer\.json's vocabulary/],
  ['a "__proto__" key in tokenizer_config.json', (f) => f.set('tokenizer_config.json', enc('{"__proto__": {"eos_token": "x"}}')), 'tokenizer_config.json', FormatError, /"__proto__" key/],
  ['a bos_token that is a number', (f) => f.set('tokenizer_config.json', json({ bos_token: 1 })), 'tokenizer_config.json', FormatError, /"bos_token" must be a token string or \{"content": \.\.\.\}/],
];

function memoryCache(): HubCache & { store: Map<string, Uint8Array> } {
  const store = new Map<string, Uint8Array>();
  return { store, get: async (url) => store.get(url), put: async (url, bytes) => void store.set(url, bytes), delete: async (url) => void store.delete(url) };
}

/** A fetch that serves `files` in the Hub's URL layout, as repository m/m. */
const hubFetch = (files: Files) => async (url: string) => {
  if (url.includes('/api/models/')) return new Response(JSON.stringify({ siblings: [...files.keys()].map((rfilename) => ({ rfilename })) }));
  const bytes = files.get(decodeURIComponent(url.split('/resolve/main/')[1]));
  return bytes ? new Response(bytes.slice()) : new Response('Entry not found', { status: 404 });
};

async function rejection(p: Promise<unknown>): Promise<LoraStudioError> {
  try {
    await p;
  } catch (e) {
    return e as LoraStudioError;
  }
  throw new Error('expected a rejection, but it loaded');
}

describe('malformed model folders', () => {
  for (const [what, mutate, file, ErrorClass, problem] of modelCases) {
    it(`refuses ${what}`, async () => {
      const files = tinyRepo({ sharded: 'sharded' in mutate });
      mutate(files);
      const fromFolder = await rejection(loadModel(folderSource(files, 'm')));
      expect(fromFolder, fromFolder.message).toBeInstanceOf(ErrorClass);
      expect(fromFolder.file).toBe(`m/${file}`);
      expect(fromFolder.message.startsWith(`m/${file}: `), fromFolder.message).toBe(true);
      expect(fromFolder.message).toMatch(problem);

      const cache = memoryCache();
      const staging = memoryCache();
      const fromHub = await rejection(loadModel(await hubSource('m/m', { fetch: hubFetch(files), cache, staging })));
      expect(fromHub).toBeInstanceOf(ErrorClass);
      expect(fromHub.file).toBe(`m/m/${file}`);
      expect(fromHub.message.startsWith(`m/m/${file}: `), fromHub.message).toBe(true);
      expect(fromHub.message).toMatch(problem);
      expect(cache.store.size, 'nothing cached').toBe(0);
      expect(staging.store.size, 'nothing left in staging').toBe(0);
    });
  }
});

// ── Adapters ────────────────────────────────────────────────────────────────────────────────────────────

const MODEL: ModelConfig = parseModelConfig(JSON.stringify(REPO_CONFIG));
const ADAPTER: AdapterConfig = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false, baseModel: 'tiny' };
const NAMES = { config: 'ad/adapter_config.json', weights: 'ad/adapter_model.safetensors' };

function adapterFor(model: ModelConfig, cfg = ADAPTER) {
  const weights = new Map<string, Float32Array>();
  for (let l = 0; l < model.layers; l++) {
    for (const target of cfg.targetModules) {
      const { inFeatures, outFeatures } = projectionDims(model, target);
      weights.set(loraKey(l, target, 'A'), new Float32Array(cfg.r * inFeatures).fill(0.1));
      weights.set(loraKey(l, target, 'B'), new Float32Array(outFeatures * cfg.r));
    }
  }
  return writeAdapter(cfg, weights, expectation(model));
}

const good = adapterFor(MODEL);
const OTHER_MODEL = parseModelConfig(JSON.stringify({ ...REPO_CONFIG, hidden_size: 64, head_dim: 16 }));
const DEEPER_MODEL = parseModelConfig(JSON.stringify({ ...REPO_CONFIG, num_hidden_layers: 3 }));
const configWith = (change: Record<string, unknown>) => JSON.stringify({ ...JSON.parse(good.configJson), ...change });

type AdapterCase = [what: string, config: string, weights: Uint8Array, file: string, ErrorClass: typeof LoraStudioError, problem: RegExp];
const adapterCases: AdapterCase[] = [
  ['r = 0', configWith({ r: 0 }), good.weights, NAMES.config, ConfigError, /r must be a positive integer \(got 0\)/],
  ['an adapter for another model (other shapes)', good.configJson, adapterFor(OTHER_MODEL).weights, NAMES.weights, ShapeError, /has shape \[4, 64\] but this model's q_proj needs \[4, 32\].*trained for another model/],
  ['an adapter for a deeper model', good.configJson, adapterFor(DEEPER_MODEL).weights, NAMES.weights, ShapeError, /is for layer 1, but this model has only 1 layers/],
  ['an adapter_config.json that is not JSON', '{"r": 4,', good.weights, NAMES.config, ConfigError, /is not valid JSON/],
  ['a DoRA config whose weights lack the magnitude vectors', configWith({ use_dora: true }), good.weights, NAMES.weights, FormatError, /lora_magnitude_vector.*use_dora/],
  ['truncated adapter weights', good.configJson, good.weights.slice(0, 40), NAMES.weights, FormatError, /past the end of the (file|data section)/],
  ['weights missing lora_B', good.configJson, writeSafetensors([{ name: loraKey(0, 'q_proj', 'A'), shape: [4, 32], data: new Float32Array(128) }]), NAMES.weights, FormatError, /missing base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_B\.weight/],
];

describe('malformed adapters', () => {
  for (const [what, config, weights, file, ErrorClass, problem] of adapterCases) {
    it(`refuses ${what}`, () => {
      let caught: unknown;
      try {
        readAdapter(config, weights, expectation(MODEL), NAMES);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ErrorClass);
      const err = caught as LoraStudioError;
      expect(err.file).toBe(file);
      expect(err.message.startsWith(`${file}: `), err.message).toBe(true);
      expect(err.message).toMatch(problem);
    });
  }
});

// ── Tokenizer files given directly ──────────────────────────────────────────────────────────────────────

describe('malformed tokenizer files', () => {
  const names = { tokenizer: 'tok/tokenizer.json', config: 'tok/tokenizer_config.json' };
  const cases: [string, string, string | undefined, string, RegExp][] = [
    ['a tokenizer.json that is a string', '"tokenizer"', undefined, names.tokenizer, /must be a JSON object with a "model" section/],
    ['a tokenizer.json with an empty vocabulary', JSON.stringify({ model: { type: 'BPE', vocab: {}, merges: [] } }), undefined, names.tokenizer, /has an empty vocabulary/],
    ['a tokenizer_config.json that is a list', fixtureText('bytelevel', 'tokenizer.json'), '[]', names.config, /must be a JSON object of tokenizer settings/],
  ];
  for (const [what, tokenizerJson, configJson, file, problem] of cases) {
    it(`refuses ${what}`, () => {
      let caught: unknown;
      try {
        loadTokenizer(tokenizerJson, configJson, names);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(LoraStudioError);
      expect((caught as LoraStudioError).message.startsWith(`${file}: `), (caught as Error).message).toBe(true);
      expect((caught as LoraStudioError).message).toMatch(problem);
    });
  }
});

// ── Datasets ────────────────────────────────────────────────────────────────────────────────────────────

describe('malformed datasets', () => {
  const tok = loadTokenizer(fixtureText('bytelevel', 'tokenizer.json'), fixtureText('bytelevel', 'tokenizer_config.json'));
  const userFirst = loadTokenizer(
    fixtureText('bytelevel', 'tokenizer.json'),
    JSON.stringify({ chat_template: "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with a user message.') }}{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}" }),
  );
  const opts = (o: Partial<DatasetOptions> = {}): DatasetOptions => ({ seqLen: 16, pack: false, validationShare: 0, seed: 0, contextLength: 64, vocabSize: TOKENIZER_VOCAB, ...o });
  const rows = (...r: unknown[]) => r.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join('\n');
  const chat = (...messages: unknown[]) => ({ messages });
  const F = 'data/train.jsonl';

  const cases: [string, string, Partial<DatasetOptions>, RegExp, typeof tok | undefined][] = [
    ['a JSONL line that is not JSON', rows({ text: 'a' }, '{"text": "b"', { text: 'c' }), {}, /^data\/train\.jsonl:2: not valid JSON/, tok],
    ['a file that is one JSON array', '[{"text": "a"},\n{"text": "b"}]', {}, /^data\/train\.jsonl:1: not valid JSON.*looks like one JSON array/, tok],
    ['an empty dataset', '', {}, /^data\/train\.jsonl: the dataset is empty/, tok],
    ['a dataset of blank lines', '\n  \n\r\n', {}, /^data\/train\.jsonl: the dataset is empty/, tok],
    ['an unknown row shape', rows({ question: 'q', answer: 'a' }), {}, /^data\/train\.jsonl:1: unknown row shape with keys \["question", "answer"\]; accepted rows are \{"text"/, tok],
    ['a row that is a number', rows({ text: 'a' }, 5), {}, /^data\/train\.jsonl:2: must be a JSON object \(got 5\)/, tok],
    ['rows of mixed shapes', rows({ text: 'a' }, { prompt: 'p', completion: 'c' }), {}, /^data\/train\.jsonl:2: is a \{"prompt", "completion"\} row but line 1 is a \{"text"\} row/, tok],
    ['a row longer than the model\'s context', rows({ text: 'word '.repeat(80) }), {}, /^data\/train\.jsonl:1: \d+ tokens, longer than the model's context \(max_position_embeddings = 64\)/, tok],
    ['a sequence length longer than the context', rows({ text: 'a' }), { seqLen: 65 }, /^data\/train\.jsonl: the sequence length 65 is longer than the model's context \(max_position_embeddings = 64\)/, tok],
    ['a sequence length of 0', rows({ text: 'a' }), { seqLen: 0 }, /^data\/train\.jsonl: the sequence length must be a positive whole number/, tok],
    ['a text field that is not a string', rows({ text: ['a'] }), {}, /^data\/train\.jsonl:1: "text" must be a string \(got \["a"\]\)/, tok],
    ['a completion that is not a string', rows({ prompt: 'p', completion: null }), {}, /^data\/train\.jsonl:1: "completion" must be a string \(got null\)/, tok],
    ['a chat without an assistant turn', rows(chat({ role: 'user', content: 'hi' })), {}, /^data\/train\.jsonl:1: has no assistant message/, tok],
    ['a chat message with an unknown role', rows(chat({ role: 'tool', content: 'x' }, { role: 'assistant', content: 'y' })), {}, /^data\/train\.jsonl:1: message 1 has role "tool"; roles are system, user, assistant/, tok],
    ['chat content that is not a string', rows(chat({ role: 'user', content: 3 }, { role: 'assistant', content: 'y' })), {}, /^data\/train\.jsonl:1: message 1 has content 3, not a string/, tok],
    ['"messages" that is not a list', rows({ messages: 'hi' }), {}, /^data\/train\.jsonl:1: "messages" must be a non-empty list/, tok],
    ['a chat the model\'s template refuses', rows(chat({ role: 'user', content: 'x' }, { role: 'assistant', content: 'y' }), chat({ role: 'assistant', content: 'y' })), {}, /^data\/train\.jsonl:2: tokenizer_config\.json: the chat_template refuses this conversation: Conversations must start with a user message\.$/, userFirst],
    ['a token id outside the vocabulary', rows({ input_ids: [1, 2, 999] }), {}, /^data\/train\.jsonl:1: token id 999 is not an integer in \[0, 379\)/, undefined],
    ['input_ids with one token', rows({ input_ids: [1] }), {}, /^data\/train\.jsonl:1: "input_ids" must be an array of at least 2 token ids/, undefined],
    ['text rows without a tokenizer', rows({ text: 'a' }), {}, /^data\/train\.jsonl: \{"text"\} rows needs the model's tokenizer/, undefined],
    ['a validation share that leaves nothing to train on', rows({ text: 'a' }, { text: 'b' }), { validationShare: 0.9 }, /^data\/train\.jsonl: a validation share of 0\.9 of 2 row\(s\) leaves nothing to train on/, tok],
    ['a validation share of 1', rows({ text: 'a' }), { validationShare: 1 }, /^data\/train\.jsonl: the validation share must be a number from 0 up to \(not including\) 1/, tok],
  ];

  for (const [what, text, o, problem, tokenizer] of cases) {
    it(`refuses ${what}`, () => {
      let caught: unknown;
      try {
        parseDataset(text, F, tokenizer, opts(o));
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(LoraStudioError);
      expect((caught as LoraStudioError).file).toBe(F);
      expect((caught as LoraStudioError).message).toMatch(problem);
    });
  }

  it('the tables hold at least 40 distinct cases', () => {
    expect(modelCases.length + adapterCases.length + cases.length).toBeGreaterThanOrEqual(40);
  });
});
