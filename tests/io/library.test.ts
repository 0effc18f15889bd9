// Tests for the adapter library (src/io/library.ts, library_store.ts, peft_files.ts) over an in-memory
// key-value store (structured-cloned like IndexedDB) and a fake storage estimate: save/list/get/rename/
// delete/checkpoint round trips, PEFT export → import, the import refusals, and the promise that a
// refused or failed write leaves the library exactly as it was.

import { zipSync } from 'fflate';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, FormatError, LoraStudioError, ShapeError } from '../../src/io/errors.ts';
import {
  AdapterLibrary,
  MissingAdapterError,
  watchLibraryChanges,
  type AdapterInput,
  type LibraryChange,
  type ImportExpectation,
  type KeyValueStore,
  type StorageEstimateLike,
  type TrainingCheckpoint,
} from '../../src/io/library.ts';
import { adapterConfigToJson, loraKey, readAdapter, writeAdapter, type AdapterConfig, type LoraTarget } from '../../src/io/peft.ts';
import { sameBaseModel } from '../../src/io/peft_fit.ts';
import { parseSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { readZip, writeZip } from '../../src/io/zip.ts';

/** A Map behind the KeyValueStore interface; values are structured-cloned in and out, as IndexedDB does. */
class MemoryStore implements KeyValueStore {
  readonly data = new Map<string, unknown>();
  /** Called before each set; throw from it to make that set fail. */
  beforeSet: (key: string) => void = () => {};
  async get(key: string) {
    return structuredClone(this.data.get(key));
  }
  async set(key: string, value: unknown) {
    this.beforeSet(key);
    this.data.set(key, structuredClone(value));
  }
  async del(key: string) {
    this.data.delete(key);
  }
  async keys() {
    return [...this.data.keys()];
  }
  snapshot(): Map<string, unknown> {
    return structuredClone(this.data);
  }
}

// A tiny Llama: hidden 32, k/v project to 16, MLP 48, 2 layers.
const SHAPES: Record<LoraTarget, { inFeatures: number; outFeatures: number }> = {
  q_proj: { inFeatures: 32, outFeatures: 32 },
  k_proj: { inFeatures: 32, outFeatures: 16 },
  v_proj: { inFeatures: 32, outFeatures: 16 },
  o_proj: { inFeatures: 32, outFeatures: 32 },
  gate_proj: { inFeatures: 32, outFeatures: 48 },
  up_proj: { inFeatures: 32, outFeatures: 48 },
  down_proj: { inFeatures: 48, outFeatures: 32 },
};
const BASE = 'HuggingFaceTB/SmolLM2-135M';
const MODEL: ImportExpectation = { baseModel: BASE, numLayers: 2, shapes: (t) => SHAPES[t] };

const CONFIG: AdapterConfig = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false, baseModel: BASE };

/** adapter_model.safetensors bytes for config on MODEL, values depending on seed. */
function weightsFor(config: AdapterConfig = CONFIG, seed = 1, numLayers = MODEL.numLayers): Uint8Array {
  const weights = new Map<string, Float32Array>();
  for (let layer = 0; layer < numLayers; layer++) {
    for (const target of config.targetModules) {
      const { inFeatures, outFeatures } = SHAPES[target];
      weights.set(loraKey(layer, target, 'A'), Float32Array.from({ length: config.r * inFeatures }, (_, i) => Math.sin(seed + i)));
      weights.set(loraKey(layer, target, 'B'), Float32Array.from({ length: outFeatures * config.r }, (_, i) => Math.cos(seed * 7 + i)));
    }
  }
  return writeAdapter(config, weights).weights;
}

function input(overrides: Partial<AdapterInput> = {}): AdapterInput {
  return {
    name: 'Pirate speak',
    baseModel: BASE,
    config: CONFIG,
    weights: weightsFor(),
    steps: 120,
    lossHistory: [
      { step: 100, loss: 2.5 },
      { step: 110, loss: 2.25, split: 'train' },
      { step: 110, loss: 2.4, split: 'validation' },
    ],
    ...overrides,
  };
}

function checkpoint(step = 120): TrainingCheckpoint {
  return {
    step,
    optimizer: writeSafetensors({ [`${loraKey(0, 'q_proj', 'A')}.m`]: { shape: [2], data: new Float32Array([0.5, -0.25]) } }),
    settings: { lr: 2e-4, batch: 4, seed: 7, schedule: { kind: 'cosine', warmup: 10 } },
    dataCursor: { epoch: 1, index: 37 },
  };
}

function fresh(estimate?: () => Promise<StorageEstimateLike | undefined>) {
  const store = new MemoryStore();
  return { store, library: new AdapterLibrary({ store, estimate: estimate ?? (async () => ({ usage: 0, quota: 1e9 })) }) };
}

async function caught(p: Promise<unknown>): Promise<LoraStudioError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(LoraStudioError);
    return e as LoraStudioError;
  }
  throw new Error('expected the promise to reject');
}

const recordKeys = (store: MemoryStore) => [...store.data.keys()].filter((k) => k.startsWith('adapter/'));
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('save, list, get', () => {
  it('stores only the bytes of a view into a larger buffer (a pooled Node Buffer), not the buffer around them', async () => {
    const { library } = fresh();
    const weights = input().weights;
    const pool = Buffer.alloc(weights.byteLength + 4096, 0xab);
    pool.set(weights, 1001);
    const view = pool.subarray(1001, 1001 + weights.byteLength); // byteOffset 1001 into a 4 kB larger buffer
    const saved = await library.save({ ...input(), weights: view });
    const got = await library.get(saved.id);
    expect(got.weights.byteLength).toBe(weights.byteLength);
    expect(got.weights.buffer.byteLength).toBe(weights.byteLength);
    expect(same(got.weights, weights)).toBe(true);
  });

  it('stores the weights byte for byte and lists a summary without them', async () => {
    const { store, library } = fresh();
    const saved = await library.save(input());
    expect(saved.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(saved.createdAt).toBe(saved.updatedAt);

    const list = await library.list();
    expect(list).toEqual([
      {
        id: saved.id,
        name: 'Pirate speak',
        baseModel: BASE,
        r: 4,
        targetModules: ['q_proj', 'v_proj'],
        steps: 120,
        lastLoss: 2.25, // the validation point after it does not count
        bytes: saved.weights.byteLength,
        hasCheckpoint: false,
        plannedSteps: null,
        createdAt: saved.createdAt,
        updatedAt: saved.updatedAt,
      },
    ]);
    // The index alone answers list(): it holds no byte arrays.
    expect(JSON.stringify(store.data.get('index'))).not.toContain('"weights"');

    const got = await library.get(saved.id);
    expect(same(got.weights, input().weights)).toBe(true);
    expect(got).toEqual({ ...saved, weights: got.weights });
    expect(got.config).toEqual(CONFIG);
    expect(recordKeys(store)).toHaveLength(1);
  });

  it('overwrites by id, keeping the creation date and leaving one record', async () => {
    const { store, library } = fresh();
    const first = await library.save(input());
    await new Promise((r) => setTimeout(r, 5));
    const second = await library.save(input({ id: first.id, weights: weightsFor(CONFIG, 2), steps: 200 }));
    expect(second.createdAt).toBe(first.createdAt);
    expect(second.updatedAt).toBeGreaterThan(first.updatedAt);
    const list = await library.list();
    expect(list.map((a) => [a.id, a.steps])).toEqual([[first.id, 200]]);
    expect(same((await library.get(first.id)).weights, weightsFor(CONFIG, 2))).toBe(true);
    expect(recordKeys(store)).toHaveLength(1);
  });

  it('lists the most recently updated first', async () => {
    const { library } = fresh();
    const a = await library.save(input({ name: 'a' }));
    await new Promise((r) => setTimeout(r, 5));
    const b = await library.save(input({ name: 'b' }));
    expect((await library.list()).map((x) => x.id)).toEqual([b.id, a.id]);
  });

  it('does not store a view’s whole underlying buffer', async () => {
    const { store, library } = fresh();
    const weights = weightsFor();
    const big = new Uint8Array(weights.length + 1_000_000);
    big.set(weights, 500_000);
    const saved = await library.save(input({ weights: big.subarray(500_000, 500_000 + weights.length) }));
    const record = store.data.get(recordKeys(store)[0]) as { weights: Uint8Array };
    expect(record.weights.buffer.byteLength).toBe(weights.length);
    expect(same((await library.get(saved.id)).weights, weights)).toBe(true);
  });

  it('refuses bad names, bad configs and weights that do not match the config', async () => {
    const { store, library } = fresh();
    expect((await caught(library.save(input({ name: '   ' })))).code).toBe('bad-input');
    expect((await caught(library.save(input({ name: 'x'.repeat(101) })))).message).toMatch(/at most 100 characters \(this one has 101\)/);
    await library.save(input({ name: `  ${'x'.repeat(100)}  ` })); // trimmed to 100: fine
    expect(await caught(library.save(input({ config: { ...CONFIG, r: 0 } })))).toBeInstanceOf(ConfigError);
    const wrongR = await caught(library.save(input({ config: { ...CONFIG, r: 8 } })));
    expect(wrongR).toBeInstanceOf(FormatError);
    expect(wrongR.message).toMatch(/has shape \[4, 32\], but adapter_config\.json says r = 8/);
    expect(recordKeys(store)).toHaveLength(1);
  });
});

describe('rename and delete', () => {
  it('renames without rewriting the weights', async () => {
    const { store, library } = fresh();
    const saved = await library.save(input());
    const before = recordKeys(store);
    const renamed = await library.rename(saved.id, '  Shakespeare  ');
    expect(renamed.name).toBe('Shakespeare');
    expect((await library.list())[0].name).toBe('Shakespeare');
    expect((await library.get(saved.id)).name).toBe('Shakespeare');
    expect(recordKeys(store)).toEqual(before);
    expect((await caught(library.rename(saved.id, ''))).code).toBe('bad-input');
    expect((await caught(library.rename('no-such-id', 'x'))).message).toMatch(/no adapter with id no-such-id/);
  });

  it('deletes the entry and its record, and deleting twice is harmless', async () => {
    const { store, library } = fresh();
    const keep = await library.save(input({ name: 'keep' }));
    const gone = await library.save(input({ name: 'gone' }));
    await library.delete(gone.id);
    await library.delete(gone.id);
    expect((await library.list()).map((a) => a.name)).toEqual(['keep']);
    expect(recordKeys(store)).toHaveLength(1);
    expect((await caught(library.get(gone.id))).code).toBe('bad-input');
    expect((await library.get(keep.id)).name).toBe('keep');
  });
});

describe('names and other tabs', () => {
  it('gives an import whose name another adapter has a distinct one, and refuses a rename to a taken name', async () => {
    const { library } = fresh();
    const zip = writeZip([
      { name: 'adapter_config.json', bytes: new TextEncoder().encode(JSON.stringify(adapterConfigToJson(CONFIG))) },
      { name: 'adapter_model.safetensors', bytes: weightsFor() },
    ]);
    const first = await library.importPeft(zip, MODEL, { fileName: 'pirate.zip' });
    expect(first.name).toBe('pirate');
    expect(first.takenName).toBeUndefined();
    const second = await library.importPeft(zip, MODEL, { fileName: 'pirate.zip' });
    expect(second).toMatchObject({ name: 'pirate (2)', takenName: 'pirate' });
    // Case aside, and counting past a numbered name rather than numbering it again.
    expect((await library.importPeft(zip, MODEL, { fileName: 'Pirate.zip' })).name).toBe('Pirate (3)');
    expect((await library.importPeft(zip, MODEL, { fileName: 'pirate (2).zip' })).name).toBe('pirate (4)');
    // A name at the length limit keeps the number within it.
    const long = 'x'.repeat(100);
    await library.importPeft(zip, MODEL, { name: long });
    const longer = await library.importPeft(zip, MODEL, { name: long });
    expect(longer.name).toBe(`${'x'.repeat(96)} (2)`);
    expect(new Set((await library.list()).map((a) => a.name.toLowerCase())).size).toBe(6);
    // A plain save stores the name as given (a run's entry is made with distinctName, as imports are).
    expect((await library.save(input({ name: 'pirate' }))).name).toBe('pirate');
    expect((await library.save(input({ name: 'pirate' }), { distinctName: true })).name).toBe('pirate (5)');

    const err = await caught(library.rename(second.id, 'PIRATE'));
    expect(err.message).toBe('Another adapter in the library is already called “PIRATE”; choose another name.');
    expect((await library.get(second.id)).name).toBe('pirate (2)');
    // Its own name in another case is fine.
    expect((await library.rename(second.id, 'Pirate (2)')).name).toBe('Pirate (2)');
  });

  it('keeps a rename made in another tab when a run checkpoints into the entry by id, and does not bring back a deleted one', async () => {
    const store = new MemoryStore();
    const estimate = async () => ({ usage: 0, quota: 1e9 });
    const channel = `library-test-${crypto.randomUUID()}`;
    const worker = new AdapterLibrary({ store, estimate, channel }); // the training tab's engine
    const page = new AdapterLibrary({ store, estimate, channel }); // the other tab
    const heard: LibraryChange[] = [];
    const stop = watchLibraryChanges((c) => heard.push(c), channel);
    const entry = await worker.save(input({ name: 'run 1' }));
    await page.rename(entry.id, 'Pirate speak');
    const written = await worker.saveCheckpoint(entry.id, checkpoint(130), { weights: weightsFor(CONFIG, 5), steps: 130 });
    expect(written.name).toBe('Pirate speak');
    expect((await page.list())[0]).toMatchObject({ id: entry.id, name: 'Pirate speak', steps: 130, hasCheckpoint: true });
    await page.delete(entry.id);
    const err = await caught(worker.saveCheckpoint(entry.id, checkpoint(140), { steps: 140 }));
    expect(err).toBeInstanceOf(MissingAdapterError);
    expect(await page.list()).toEqual([]);
    expect(recordKeys(store)).toEqual([]);
    // Every change was announced to the other contexts, in order.
    await expect.poll(() => heard.length).toBe(4);
    expect(heard).toEqual([
      { kind: 'saved', id: entry.id },
      { kind: 'renamed', id: entry.id },
      { kind: 'saved', id: entry.id },
      { kind: 'deleted', id: entry.id },
    ]);
    stop();
  });
});

describe('checkpoints', () => {
  it('stores optimizer state, settings and the data cursor with the weights of the same step', async () => {
    const { store, library } = fresh();
    const saved = await library.save(input({ steps: 0, lossHistory: [] }));
    const ckpt = checkpoint(50);
    const weights = weightsFor(CONFIG, 3);
    await library.saveCheckpoint(saved.id, ckpt, { weights, steps: 50, lossHistory: [{ step: 50, loss: 1.75 }] });

    const got = await library.get(saved.id);
    expect(got.steps).toBe(50);
    expect(same(got.weights, weights)).toBe(true);
    expect(got.checkpoint!.step).toBe(50);
    expect(same(got.checkpoint!.optimizer, ckpt.optimizer)).toBe(true);
    expect(got.checkpoint!.settings).toEqual(ckpt.settings);
    expect(got.checkpoint!.dataCursor).toEqual({ epoch: 1, index: 37 });
    expect(parseSafetensors(got.checkpoint!.optimizer).readF32(`${loraKey(0, 'q_proj', 'A')}.m`)).toEqual(new Float32Array([0.5, -0.25]));

    const [summary] = await library.list();
    expect(summary).toMatchObject({ hasCheckpoint: true, steps: 50, lastLoss: 1.75, bytes: weights.byteLength + ckpt.optimizer.byteLength, plannedSteps: null });
    // A checkpoint that says where its run is going shows it in the list.
    await library.saveCheckpoint(saved.id, { ...ckpt, totalSteps: 200 });
    expect((await library.get(saved.id)).checkpoint!.totalSteps).toBe(200);
    expect((await library.list())[0]).toMatchObject({ hasCheckpoint: true, plannedSteps: 200 });
    expect(recordKeys(store)).toHaveLength(1);

    // Finished: drop the checkpoint, keep the weights.
    await library.saveCheckpoint(saved.id, null);
    const done = await library.get(saved.id);
    expect(done.checkpoint).toBeUndefined();
    expect(same(done.weights, weights)).toBe(true);
    expect((await library.list())[0]).toMatchObject({ hasCheckpoint: false, plannedSteps: null });
  });

  it('refuses checkpoint weights that do not fit the adapter’s config', async () => {
    const { library } = fresh();
    const saved = await library.save(input());
    const other = weightsFor({ ...CONFIG, r: 2 });
    expect(await caught(library.saveCheckpoint(saved.id, checkpoint(), { weights: other }))).toBeInstanceOf(FormatError);
    expect((await library.get(saved.id)).checkpoint).toBeUndefined();
  });
});

describe('PEFT export and import', () => {
  it('exports the two files and a zip of them, and imports them back with identical weights', async () => {
    const { library } = fresh();
    const saved = await library.save(input());
    const { files, zip } = await library.exportPeft(saved.id);
    expect(files.map((f) => f.name)).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const configJson = JSON.parse(new TextDecoder().decode(files[0].bytes));
    expect(configJson).toEqual(adapterConfigToJson(CONFIG));
    expect(same(files[1].bytes, saved.weights)).toBe(true);

    const unzipped = readZip(zip, 'pirate.zip');
    expect(same(unzipped.get('adapter_model.safetensors')!, saved.weights)).toBe(true);
    const { weights } = readAdapter(new TextDecoder().decode(unzipped.get('adapter_config.json')), unzipped.get('adapter_model.safetensors')!, MODEL);
    expect(weights.size).toBe(8);

    const fromZip = await library.importPeft(zip, MODEL, { fileName: 'pirate.zip' });
    expect(fromZip.id).not.toBe(saved.id);
    expect(fromZip.name).toBe('pirate');
    expect(fromZip.baseModel).toBe(BASE);
    expect(fromZip.config).toEqual(CONFIG);
    expect(same((await library.get(fromZip.id)).weights, saved.weights)).toBe(true);

    // The two files, inside a folder as `zip -r` or a Hub download leaves them, without a model loaded.
    const fromFiles = await library.importPeft(
      new Map([['pirate/adapter_config.json', files[0].bytes], ['pirate/adapter_model.safetensors', files[1].bytes]]),
      undefined,
      { name: 'From files' },
    );
    expect(same((await library.get(fromFiles.id)).weights, saved.weights)).toBe(true);
    expect((await library.list()).map((a) => a.name).sort()).toEqual(['From files', 'Pirate speak', 'pirate']);
  });

  it('imports a Deflate-compressed zip, as plain `zip` and macOS "Compress" make them', async () => {
    const { library } = fresh();
    const weights = weightsFor(CONFIG, 4);
    const configJson = new TextEncoder().encode(JSON.stringify(adapterConfigToJson(CONFIG)));
    const zip = zipSync({ 'pirate/adapter_config.json': configJson, 'pirate/adapter_model.safetensors': weights }, { level: 9 });
    const entry = await library.importPeft(zip, MODEL, { fileName: 'deflated.zip' });
    expect(entry.name).toBe('deflated');
    expect(entry.config).toEqual(CONFIG);
    expect(same((await library.get(entry.id)).weights, weights)).toBe(true);
  });

  it('takes the loaded model as the base when the config names none', async () => {
    const { library } = fresh();
    const config = { ...CONFIG, baseModel: '' };
    const files = new Map([
      ['adapter_config.json', new TextEncoder().encode(JSON.stringify(adapterConfigToJson(config)))],
      ['adapter_model.safetensors', weightsFor(config)],
    ]);
    expect((await library.importPeft(files, MODEL)).baseModel).toBe(BASE);
    expect((await library.importPeft(files)).baseModel).toBe('');
  });

  describe('refusals', () => {
    const filesFor = (config: AdapterConfig, weights = weightsFor(config), configOverrides: Record<string, unknown> = {}) =>
      new Map([
        ['adapter_config.json', new TextEncoder().encode(JSON.stringify({ ...adapterConfigToJson(config), ...configOverrides }))],
        ['adapter_model.safetensors', weights],
      ]);

    async function refused(files: Map<string, Uint8Array> | Uint8Array, expected?: ImportExpectation, fileName?: string) {
      const { store, library } = fresh();
      const before = store.snapshot();
      const err = await caught(library.importPeft(files, expected, { fileName }));
      expect(store.data).toEqual(before);
      return err;
    }

    // The reasons are judgeAdapterBase's (io/base_identity.ts), the ones Load gives: every misfit, once per kind.
    it('refuses shapes that do not fit the loaded model', async () => {
      const wider: ImportExpectation = { ...MODEL, shapes: (t) => ({ ...SHAPES[t], inFeatures: 64 }) };
      const err = await refused(filesFor(CONFIG), wider);
      expect(err).toBeInstanceOf(ShapeError);
      expect(err.file).toBe('adapter_model.safetensors');
      expect(err.message).toMatch(/lora_A of q_proj has in_features 32 \(shape \[4, 32\]\), but “HuggingFaceTB\/SmolLM2-135M”'s q_proj has in_features 64/);
      expect(err.message).toMatch(/lora_A of v_proj has in_features 32 \(shape \[4, 32\]\), but .*'s v_proj has in_features 64/);
      const deeper = await refused(filesFor(CONFIG), { ...MODEL, numLayers: 3 });
      expect(deeper.message).toMatch(/has weights for only 2 layers, but “HuggingFaceTB\/SmolLM2-135M” has 3 \(num_hidden_layers\)/);
    });

    it('takes an adapter named for another base model whose shapes fit (issue 17: the shapes decide, as at Load)', async () => {
      const { library } = fresh();
      const entry = await library.importPeft(filesFor({ ...CONFIG, baseModel: 'Qwen/Qwen2.5-0.5B' }), MODEL);
      expect(entry.baseModel).toBe('Qwen/Qwen2.5-0.5B');
    });

    it('refuses an adapter for a model of other shapes whatever its name says', async () => {
      const err = await refused(filesFor({ ...CONFIG, baseModel: BASE }), { ...MODEL, shapes: (t) => ({ ...SHAPES[t], outFeatures: SHAPES[t].outFeatures * 2 }) });
      expect(err).toBeInstanceOf(ShapeError);
      expect(err.message).toMatch(/lora_B of q_proj has out_features 32 \(shape \[32, 4\]\), but “HuggingFaceTB\/SmolLM2-135M”'s q_proj has out_features 64/);
    });

    it('accepts a local path that ends in the loaded model’s name', () => {
      expect(sameBaseModel('/home/me/models/SmolLM2-135M/', BASE)).toBe(true);
      expect(sameBaseModel('huggingfacetb/smollm2-135m', BASE)).toBe(true);
      expect(sameBaseModel('HuggingFaceTB/SmolLM2-360M', BASE)).toBe(false);
    });

    it('refuses an r = 0 config', async () => {
      const err = await refused(filesFor(CONFIG, weightsFor(CONFIG), { r: 0 }), MODEL);
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.message).toMatch(/adapter_config\.json: r must be a positive integer \(got 0\)/);
    });

    it('refuses a broken zip, naming it', async () => {
      const zip = writeZip([...filesFor(CONFIG)].map(([name, bytes]) => ({ name, bytes })));
      const cut = await refused(zip.subarray(0, zip.length - 10), MODEL, 'pirate.zip');
      expect(cut).toBeInstanceOf(FormatError);
      expect(cut.message).toMatch(/^pirate\.zip: .*cut short/);
      const flipped = zip.slice();
      flipped[200] ^= 0xff;
      expect((await refused(flipped, MODEL, 'pirate.zip')).message).toMatch(/CRC-32/);
      expect((await refused(new TextEncoder().encode('not a zip at all, just some text here'), MODEL, 'x.zip')).message).toMatch(/not a zip archive/);
    });

    it('refuses a zip without the two PEFT files, with a hint for adapter_model.bin', async () => {
      const onlyConfig = writeZip([{ name: 'adapter_config.json', bytes: new TextEncoder().encode('{}') }, { name: 'adapter_model.bin', bytes: new Uint8Array(8) }]);
      expect((await refused(onlyConfig, MODEL, 'old.zip')).message).toMatch(/old\.zip: has no adapter_model\.safetensors\. It has adapter_model\.bin.*safe_serialization=True/);
      const two = new Map([...filesFor(CONFIG), ['copy/adapter_config.json', new Uint8Array(2)]]);
      expect((await refused(two)).message).toMatch(/2 files named adapter_config\.json/);
    });

    it('without a model, refuses weights that disagree with their config or each other', async () => {
      const wrongR = await refused(filesFor(CONFIG, weightsFor({ ...CONFIG, r: 2 })));
      expect(wrongR.message).toMatch(/says r = 4/);
      const file = parseSafetensors(weightsFor(CONFIG));
      const holed = writeSafetensors(
        [...file.tensors.keys()].filter((k) => k !== loraKey(0, 'v_proj', 'B')).map((name) => ({ name, shape: file.tensors.get(name)!.shape, data: file.readF32(name) })),
      );
      const missing = await refused(filesFor(CONFIG, holed));
      expect(missing).toBeInstanceOf(FormatError);
      expect(missing.message).toMatch(/missing base_model\.model\.model\.layers\.0\.self_attn\.v_proj\.lora_B\.weight/);
      // A one-layer adapter is complete on its own: without a model there is nothing to say it needs two.
      const { library } = fresh();
      await library.importPeft(filesFor(CONFIG, weightsFor(CONFIG, 1, 1)));
      const extraTarget = await refused(filesFor({ ...CONFIG, targetModules: ['q_proj'] }, weightsFor(CONFIG)));
      expect(extraTarget.message).toMatch(/adapts v_proj, which target_modules in the adapter config does not list/);
    });
  });
});

describe('storage quota', () => {
  it('refuses a write that does not fit and leaves the library unchanged', async () => {
    let estimate: StorageEstimateLike = { usage: 0, quota: 1e9 };
    const { store, library } = fresh(async () => estimate);
    const saved = await library.save(input());
    const listBefore = await library.list();
    const getBefore = await library.get(saved.id);
    const dataBefore = store.snapshot();

    // 2 MB quota: 95% of it is 1.9 MB, of which all but 1 kB are used.
    estimate = { usage: 1_899_000, quota: 2_000_000 };
    const big = input({ name: 'Big one', weights: weightsFor({ ...CONFIG, r: 64 }), config: { ...CONFIG, r: 64 } });
    const err = await caught(library.save(big));
    expect(err.code).toBe('storage');
    expect(err.message).toMatch(/^Not enough browser storage to save “Big one” \(needs 0\.\d MB, 0\.0 MB free\)\. Delete old adapters or download this one instead; your library is unchanged\.$/);
    const overwrite = await caught(library.saveCheckpoint(saved.id, checkpoint(), { weights: weightsFor(CONFIG, 9) }));
    expect(overwrite.message).toMatch(/Not enough browser storage to save “Pirate speak”/);

    expect(store.data).toEqual(dataBefore);
    expect(await library.list()).toEqual(listBefore);
    expect(await library.get(saved.id)).toEqual(getBefore);
  });

  it('reads navigator.storage.estimate by default', async () => {
    const estimate = vi.fn(async () => ({ usage: 999_000, quota: 1_000_000 }));
    vi.stubGlobal('navigator', { storage: { estimate } });
    const store = new MemoryStore();
    const library = new AdapterLibrary({ store });
    const err = await caught(library.save(input()));
    expect(err.message).toMatch(/needs 0\.\d MB, 0\.0 MB free/);
    expect(estimate).toHaveBeenCalled();
    expect(store.data.size).toBe(0);
  });

  it('rolls back when IndexedDB throws QuotaExceededError midway, keeping the previous version', async () => {
    for (const failOn of ['record', 'index'] as const) {
      const { store, library } = fresh();
      const saved = await library.save(input());
      const getBefore = await library.get(saved.id);
      const listBefore = await library.list();
      const dataBefore = store.snapshot();

      store.beforeSet = (key) => {
        if ((failOn === 'index') === (key === 'index')) throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      };
      const err = await caught(library.saveCheckpoint(saved.id, checkpoint(), { weights: weightsFor(CONFIG, 5), steps: 500 }));
      expect(err.code).toBe('storage');
      expect(err.message).toMatch(/^Not enough browser storage to save “Pirate speak” \(needs .* MB free\)\. .*your library is unchanged\.$/);
      expect((err.cause as DOMException).name).toBe('QuotaExceededError');
      if (failOn === 'index') {
        expect((await caught(library.rename(saved.id, 'New name'))).message).toMatch(/Not enough browser storage to save “New name”/);
        expect((await caught(library.delete(saved.id))).message).toMatch(/Could not delete “Pirate speak”.*Your library is unchanged/);
      }

      expect(store.data, failOn).toEqual(dataBefore);
      expect(await library.get(saved.id)).toEqual(getBefore);
      expect(await library.list()).toEqual(listBefore);
    }
  });

  it('says what failed for other write errors, still rolled back', async () => {
    const { store, library } = fresh();
    const saved = await library.save(input());
    const before = store.snapshot();
    store.beforeSet = (key) => {
      if (key === 'index') throw new Error('The database connection is closing.');
    };
    const err = await caught(library.save(input({ id: saved.id, steps: 1 })));
    expect(err.message).toBe('Could not save “Pirate speak” to browser storage (The database connection is closing.). Your library is unchanged.');
    expect(store.data).toEqual(before);
  });

  it('sweeps a record orphaned by a write that died between its two steps', async () => {
    const { store, library } = fresh();
    await library.save(input());
    store.data.set('adapter/dead/beef', { weights: new Uint8Array(10) });
    await library.save(input({ name: 'another' }));
    expect(recordKeys(store)).toHaveLength(2);
    expect(store.data.has('adapter/dead/beef')).toBe(false);
  });
});
