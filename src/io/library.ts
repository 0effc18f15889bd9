// The adapter library: adapters saved in the browser (IndexedDB through idb-keyval), listed, renamed,
// deleted, exported as the two PEFT files (or a zip of them) and imported back, plus the training
// checkpoint that lets a closed tab resume where it stopped. Engine-side: no React, usable from the
// page and from the worker (Web Locks keep the two from interleaving their writes).
//
// Storage layout (one key-value store, injectable for tests):
//   'index'                  { version: 1, adapters: IndexItem[] }: names, sizes and the summary list()
//                            shows, so listing never loads weights; each item names its record's key
//   'adapter/<id>/<rev>'     StoredAdapter: config, the adapter_model.safetensors bytes exactly as PEFT
//                            reads them, steps, loss history, and the optional checkpoint
// Every write puts the record under a NEW key, then the index pointing at it, then deletes the old
// record. A failure at any point leaves the old index pointing at old, intact data; the half-written
// new key is deleted at once, or swept as an orphan by the next write.
//
// Before each write we ask navigator.storage.estimate() whether the bytes fit in 95% of the quota, and
// refuse with a message that says the library is unchanged; a QuotaExceededError that gets through
// anyway ends the same way. This file is not the trainer: it stores the checkpoint it is handed.

import { createStore, del as idbDel, get as idbGet, keys as idbKeys, set as idbSet } from 'idb-keyval';
import { FormatError, LoraStudioError } from './errors.ts';
import {
  adapterConfigToJson,
  parseAdapterConfig,
  parseLoraKey,
  readAdapter,
  sameBaseModel,
  type AdapterConfig,
  type AdapterExpectation,
  type AdapterFileNames,
  type LoraTarget,
} from './peft.ts';
import { parseSafetensors } from './safetensors.ts';
import { readZip, writeZip, type ZipFile } from './zip.ts';

export interface LossPoint {
  step: number;
  loss: number;
  split?: 'train' | 'validation';
}

/** What resuming a run needs beyond the weights, written together with them (see saveCheckpoint). */
export interface TrainingCheckpoint {
  /** Optimizer steps taken; the weights stored beside this checkpoint are the ones after this step. */
  step: number;
  /** The step the run means to reach, for "step 40 of 200" in the list (absent in older checkpoints). */
  totalSteps?: number;
  /** AdamW first and second moments (m and v) of every LoRA weight, as safetensors bytes. */
  optimizer: Uint8Array;
  /** The run's settings (learning rate, schedule, batch, seed, …) as free-form JSON. */
  settings: Record<string, unknown>;
  /** Where the data stream stopped: the epoch and the position of the next example in its (seeded) order. */
  dataCursor: { epoch: number; index: number };
}

export interface AdapterEntry {
  id: string;
  name: string;
  /** The base model's Hub id (or path), also written as base_model_name_or_path on export. */
  baseModel: string;
  config: AdapterConfig;
  /** adapter_model.safetensors, byte for byte. */
  weights: Uint8Array;
  steps: number;
  lossHistory: LossPoint[];
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
  checkpoint?: TrainingCheckpoint;
}

/** What save() takes: an entry without timestamps; with an id it overwrites that adapter. */
export type AdapterInput = Omit<AdapterEntry, 'id' | 'createdAt' | 'updatedAt'> & { id?: string };

/** One row of list(): everything but the weights, loss history and checkpoint. */
export interface AdapterSummary {
  id: string;
  name: string;
  baseModel: string;
  r: number;
  targetModules: LoraTarget[];
  steps: number;
  /** The last training loss (validation points skipped), or null before the first step. */
  lastLoss: number | null;
  /** Stored bytes: weights plus optimizer state. */
  bytes: number;
  hasCheckpoint: boolean;
  /** The step an unfinished run means to reach; null without a checkpoint, or when it did not say. */
  plannedSteps: number | null;
  createdAt: number;
  updatedAt: number;
}

/** The base model an import must fit; omit it when no model is loaded (see importPeft). */
export interface ImportExpectation extends AdapterExpectation {
  baseModel: string;
}

/** The subset of idb-keyval the library uses, so tests can pass a Map-backed store. */
export interface KeyValueStore {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown): Promise<void>;
  del(key: string): Promise<void>;
  keys(): Promise<string[]>;
}

export interface StorageEstimateLike {
  usage?: number;
  quota?: number;
}

export interface LibraryOptions {
  store?: KeyValueStore;
  /** Defaults to navigator.storage.estimate when the browser has it; otherwise no check before writing. */
  estimate?: () => Promise<StorageEstimateLike | undefined>;
}

export const PEFT_CONFIG_FILE = 'adapter_config.json';
export const PEFT_WEIGHTS_FILE = 'adapter_model.safetensors';
export const MAX_NAME_LENGTH = 100;
/** Share of the quota we let the library fill: browsers start refusing writes a little before 100%. */
const QUOTA_SHARE = 0.95;
const INDEX_KEY = 'index';
const RECORD_PREFIX = 'adapter/';
const LOCK_NAME = 'lora-studio-library';

interface IndexItem extends AdapterSummary {
  key: string;
}

interface IndexRecord {
  version: 1;
  adapters: IndexItem[];
}

/** The record under 'adapter/<id>/<rev>'; the name lives in the index, so renaming rewrites no weights. */
type StoredAdapter = Omit<AdapterEntry, 'name'>;

/**
 * The default store. idb-keyval's createStore can make only one object store per database (it creates it
 * on the database's first open), so the library has a database of its own rather than sharing 'lora-studio'.
 */
export function idbStore(dbName = 'lora-studio-adapters', storeName = 'adapters'): KeyValueStore {
  const store = createStore(dbName, storeName);
  return {
    get: (key) => idbGet(key, store),
    set: (key, value) => idbSet(key, value, store),
    del: (key) => idbDel(key, store),
    keys: async () => (await idbKeys(store)).filter((k): k is string => typeof k === 'string'),
  };
}

function defaultEstimate(): Promise<StorageEstimateLike | undefined> {
  const storage = (globalThis.navigator as Navigator | undefined)?.storage;
  return typeof storage?.estimate === 'function' ? storage.estimate() : Promise.resolve(undefined);
}

export class AdapterLibrary {
  private readonly store: KeyValueStore;
  private readonly estimate: () => Promise<StorageEstimateLike | undefined>;
  private queue: Promise<unknown> = Promise.resolve();
  private askedToPersist = false;

  constructor(options: LibraryOptions = {}) {
    this.store = options.store ?? idbStore();
    this.estimate = options.estimate ?? defaultEstimate;
  }

  /** Every adapter, most recently updated first, without loading any weights. */
  async list(): Promise<AdapterSummary[]> {
    const index = await this.readIndex();
    return index.adapters.map(summaryOf).sort((a, b) => b.updatedAt - a.updatedAt);
  }

  async get(id: string): Promise<AdapterEntry> {
    return this.exclusive(async () => {
      const index = await this.readIndex();
      const item = findItem(index, id);
      return { ...(await this.readRecord(item)), name: item.name };
    });
  }

  /**
   * Adds an adapter (a new id) or overwrites the one with `input.id` (creating it if unknown), keeping its
   * creation date. The entry is stored as given: leaving out `checkpoint` drops any stored one.
   */
  async save(input: AdapterInput): Promise<AdapterEntry> {
    const name = checkName(input.name);
    checkProgress(input.steps, input.lossHistory);
    const config = { ...input.config, baseModel: input.baseModel };
    checkAdapterBytes(config, input.weights);
    return this.exclusive(async () => {
      const index = await this.readIndex();
      const id = input.id ?? crypto.randomUUID();
      const old = index.adapters.find((a) => a.id === id);
      const now = Date.now();
      const record: StoredAdapter = {
        id,
        baseModel: input.baseModel,
        config,
        weights: ownBytes(input.weights),
        steps: input.steps,
        lossHistory: input.lossHistory.map((p) => ({ ...p })),
        createdAt: old?.createdAt ?? now,
        updatedAt: now,
        ...(input.checkpoint ? { checkpoint: ownCheckpoint(input.checkpoint) } : {}),
      };
      await this.commit(index, name, record);
      return { ...record, name };
    });
  }

  async rename(id: string, newName: string): Promise<AdapterSummary> {
    const name = checkName(newName);
    return this.exclusive(async () => {
      const index = await this.readIndex();
      const item = { ...findItem(index, id), name };
      const next: IndexRecord = { version: 1, adapters: index.adapters.map((a) => (a.id === id ? item : a)) };
      await this.checkQuota(name, jsonBytes(next));
      try {
        await this.store.set(INDEX_KEY, next);
      } catch (e) {
        throw await this.writeFailed(name, jsonBytes(next), e);
      }
      return summaryOf(item);
    });
  }

  /** Removes an adapter; deleting one that is already gone does nothing. */
  async delete(id: string): Promise<void> {
    await this.exclusive(async () => {
      const index = await this.readIndex();
      const item = index.adapters.find((a) => a.id === id);
      if (item === undefined) return;
      // Index first: a failure after it leaves an orphaned record (swept later), never a dangling entry.
      try {
        await this.store.set(INDEX_KEY, { version: 1, adapters: index.adapters.filter((a) => a.id !== id) });
      } catch (e) {
        throw new LoraStudioError('storage', `Could not delete “${item.name}” (${errorText(e)}). Your library is unchanged.`, { cause: e });
      }
      await this.store.del(item.key).catch(() => {});
    });
  }

  /**
   * Stores a checkpoint, and with `progress` the weights, steps and loss history of the same step, in one
   * record so that a resumed run never pairs optimizer state with weights from another step. Pass null to
   * drop the checkpoint (training finished).
   */
  async saveCheckpoint(
    id: string,
    checkpoint: TrainingCheckpoint | null,
    progress: Partial<Pick<AdapterEntry, 'weights' | 'steps' | 'lossHistory'>> = {},
  ): Promise<AdapterEntry> {
    return this.exclusive(async () => {
      const index = await this.readIndex();
      const item = findItem(index, id);
      const old = await this.readRecord(item);
      const { checkpoint: _dropped, ...rest } = old;
      const record: StoredAdapter = {
        ...rest,
        weights: progress.weights ? ownBytes(progress.weights) : old.weights,
        steps: progress.steps ?? old.steps,
        lossHistory: progress.lossHistory ? progress.lossHistory.map((p) => ({ ...p })) : old.lossHistory,
        updatedAt: Date.now(),
        ...(checkpoint ? { checkpoint: ownCheckpoint(checkpoint) } : {}),
      };
      checkProgress(record.steps, record.lossHistory);
      if (progress.weights) checkAdapterBytes(record.config, record.weights);
      await this.commit(index, item.name, record);
      return { ...record, name: item.name };
    });
  }

  /** The two PEFT files, and a stored zip of both, ready for `PeftModel.from_pretrained`. */
  async exportPeft(id: string): Promise<{ files: ZipFile[]; zip: Uint8Array }> {
    const entry = await this.get(id);
    const configJson = `${JSON.stringify(adapterConfigToJson({ ...entry.config, baseModel: entry.baseModel }), null, 2)}\n`;
    const files: ZipFile[] = [
      { name: PEFT_CONFIG_FILE, bytes: new TextEncoder().encode(configJson) },
      { name: PEFT_WEIGHTS_FILE, bytes: entry.weights },
    ];
    return { files, zip: writeZip(files, { date: new Date(entry.updatedAt) }) };
  }

  /**
   * Imports a PEFT adapter from its two files (by name; a folder prefix is fine) or from a zip of them.
   * With `expected` (a model is loaded), refuses an adapter whose base_model_name_or_path names another
   * model (an empty one is allowed) or whose shapes do not fit. Without it, checks only that the config
   * parses and the weights agree with it and with each other; the shapes are checked again when the
   * adapter is applied to a model.
   */
  async importPeft(
    input: Map<string, Uint8Array> | Uint8Array,
    expected?: ImportExpectation,
    options: { name?: string; fileName?: string } = {},
  ): Promise<AdapterEntry> {
    const source = options.fileName ?? (input instanceof Map ? 'the selected files' : 'adapter.zip');
    const files = input instanceof Map ? input : readZip(input, source);
    const { configBytes, weights, names } = pickPeftFiles(files, source);
    let configText: string;
    try {
      configText = new TextDecoder('utf-8', { fatal: true }).decode(configBytes);
    } catch (e) {
      throw new FormatError(names.config, `${names.config}: is not UTF-8 text, so it is not a PEFT adapter config.`, e);
    }
    const config = parseAdapterConfig(configText, names.config);
    if (expected !== undefined) {
      if (config.baseModel !== '' && !sameBaseModel(config.baseModel, expected.baseModel)) {
        throw new LoraStudioError(
          'bad-config',
          `${names.config}: this adapter was trained on “${config.baseModel}”, but the loaded model is “${expected.baseModel}”. ` +
            `Load ${config.baseModel} to use it, or import an adapter made for ${expected.baseModel}.`,
          { file: names.config },
        );
      }
      readAdapter(configText, weights, expected, names);
    } else {
      checkAdapterBytes(config, weights, names);
    }
    const baseModel = config.baseModel !== '' ? config.baseModel : (expected?.baseModel ?? '');
    const name = options.name ?? defaultImportName(options.fileName, baseModel);
    return this.save({ name, baseModel, config: { ...config, baseModel }, weights, steps: 0, lossHistory: [] });
  }

  // ---- internals --------------------------------------------------------------------------------------

  /**
   * Runs fn alone among this library's writers: across the page and the worker through the Web Locks API
   * where there is one, and within this instance through a promise chain.
   */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const locks = (globalThis.navigator as Navigator | undefined)?.locks;
    const run = locks ? () => locks.request(LOCK_NAME, fn) as Promise<T> : fn;
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => {});
    return result;
  }

  private async readIndex(): Promise<IndexRecord> {
    const value = await this.store.get(INDEX_KEY);
    if (value === undefined) return { version: 1, adapters: [] };
    const index = value as IndexRecord;
    if (index.version !== 1 || !Array.isArray(index.adapters)) {
      throw new LoraStudioError('storage', 'The adapter library in this browser was written by a newer LoRA Studio; update the page (reload it) to open it.');
    }
    return index;
  }

  private async readRecord(item: IndexItem): Promise<StoredAdapter> {
    const record = (await this.store.get(item.key)) as StoredAdapter | undefined;
    if (record === undefined) {
      throw new LoraStudioError(
        'storage',
        `The weights of “${item.name}” are missing from browser storage (the browser may have cleared site data). ` +
          'Delete this entry and import the adapter again from a download.',
      );
    }
    return record;
  }

  /** Writes record under a new key, then the index pointing at it, then drops the old record (see the header). */
  private async commit(index: IndexRecord, name: string, record: StoredAdapter): Promise<void> {
    const key = `${RECORD_PREFIX}${record.id}/${crypto.randomUUID()}`;
    const old = index.adapters.find((a) => a.id === record.id);
    const item: IndexItem = { ...summarize(record, name), key };
    const next: IndexRecord = { version: 1, adapters: [...index.adapters.filter((a) => a.id !== record.id), item] };
    const bytes = recordBytes(record) + jsonBytes(next);
    await this.checkQuota(name, bytes);
    try {
      await this.store.set(key, record);
      await this.store.set(INDEX_KEY, next);
    } catch (e) {
      await this.store.del(key).catch(() => {});
      throw await this.writeFailed(name, bytes, e);
    }
    if (old !== undefined) await this.store.del(old.key).catch(() => {});
    await this.sweep(next);
    this.persist();
  }

  /** Deletes records no index item points at: leftovers of a write that died between its two steps. */
  private async sweep(index: IndexRecord): Promise<void> {
    const live = new Set(index.adapters.map((a) => a.key));
    try {
      for (const key of await this.store.keys()) {
        if (key.startsWith(RECORD_PREFIX) && !live.has(key)) await this.store.del(key);
      }
    } catch {
      // Best effort: an orphan costs space, not correctness, and the next write tries again.
    }
  }

  /** Usable free bytes (below QUOTA_SHARE of the quota), or undefined when the browser cannot tell. */
  private async freeBytes(): Promise<number | undefined> {
    const estimate = await this.estimate().catch(() => undefined);
    if (estimate?.usage === undefined || estimate.quota === undefined) return undefined;
    return Math.max(0, estimate.quota * QUOTA_SHARE - estimate.usage);
  }

  /** Refuses a write that would not fit; without an estimate the write goes ahead and commit() rolls back a refusal. */
  private async checkQuota(name: string, bytes: number): Promise<void> {
    const free = await this.freeBytes();
    if (free !== undefined && bytes > free) throw quotaError(name, bytes, free);
  }

  /** The error for a write that failed after it was rolled back. */
  private async writeFailed(name: string, bytes: number, e: unknown): Promise<LoraStudioError> {
    if (e instanceof LoraStudioError) return e;
    if (isQuotaError(e)) return quotaError(name, bytes, await this.freeBytes(), e);
    return new LoraStudioError('storage', `Could not save “${name}” to browser storage (${errorText(e)}). Your library is unchanged.`, { cause: e });
  }

  /** Asks once that the browser not evict the library under storage pressure; it may say no. */
  private persist(): void {
    if (this.askedToPersist) return;
    this.askedToPersist = true;
    const storage = (globalThis.navigator as Navigator | undefined)?.storage;
    if (typeof storage?.persist === 'function') void storage.persist().catch(() => {});
  }
}

// ---- checks and helpers ---------------------------------------------------------------------------------

function checkName(name: string): string {
  const trimmed = typeof name === 'string' ? name.trim() : '';
  if (trimmed === '') throw new LoraStudioError('bad-input', 'An adapter needs a name: type at least one character.');
  if (trimmed.length > MAX_NAME_LENGTH) {
    throw new LoraStudioError('bad-input', `Adapter names can be at most ${MAX_NAME_LENGTH} characters (this one has ${trimmed.length}); shorten it.`);
  }
  return trimmed;
}

function checkProgress(steps: number, lossHistory: LossPoint[]): void {
  if (!Number.isSafeInteger(steps) || steps < 0) {
    throw new LoraStudioError('bad-input', `steps must be a whole number ≥ 0 (got ${String(steps)}).`);
  }
  if (!Array.isArray(lossHistory)) throw new LoraStudioError('bad-input', 'lossHistory must be a list of {step, loss} points.');
}

/**
 * Checks that safetensors bytes hold a complete LoRA for `config` on SOME model: every tensor a LoRA key,
 * A as [r, in] and B as [out, r] with r from the config, the same in/out for a target in every layer,
 * both factors of every target in every layer from 0 up. The model itself is inferred from layer shapes.
 */
function checkAdapterBytes(config: AdapterConfig, weights: Uint8Array, names: AdapterFileNames = { config: PEFT_CONFIG_FILE, weights: PEFT_WEIGHTS_FILE }): void {
  const configText = JSON.stringify(adapterConfigToJson(config)); // throws ConfigError first, for r = 0 and the like
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
  return { configBytes: files.get(config)!, weights: ownBytes(files.get(weights)!), names: { config, weights } };
}


function defaultImportName(fileName: string | undefined, baseModel: string): string {
  const stem = fileName?.replace(/\.zip$/i, '').trim();
  if (stem) return stem.slice(0, MAX_NAME_LENGTH);
  const model = baseModel.split('/').pop();
  return (model ? `Imported adapter for ${model}` : 'Imported adapter').slice(0, MAX_NAME_LENGTH);
}

function findItem(index: IndexRecord, id: string): IndexItem {
  const item = index.adapters.find((a) => a.id === id);
  if (item === undefined) {
    throw new LoraStudioError('bad-input', `There is no adapter with id ${id} in the library; it may have been deleted in another tab. Reload the list.`);
  }
  return item;
}

function summarize(record: StoredAdapter, name: string): AdapterSummary {
  const train = record.lossHistory.filter((p) => p.split !== 'validation');
  return {
    id: record.id,
    name,
    baseModel: record.baseModel,
    r: record.config.r,
    targetModules: [...record.config.targetModules],
    steps: record.steps,
    lastLoss: train.length > 0 ? train[train.length - 1].loss : null,
    bytes: record.weights.byteLength + (record.checkpoint?.optimizer.byteLength ?? 0),
    hasCheckpoint: record.checkpoint !== undefined,
    plannedSteps: record.checkpoint?.totalSteps ?? null,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
  };
}

function summaryOf(item: IndexItem): AdapterSummary {
  const { key: _key, ...summary } = item;
  return { ...summary, plannedSteps: summary.plannedSteps ?? null }; // index items written before the field existed
}

/**
 * The bytes themselves, not a view into a larger buffer: IndexedDB's structured clone stores a view's
 * WHOLE underlying buffer, so a weights file sliced out of a zip would otherwise store the zip.
 */
function ownBytes(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer
    ? bytes
    : new Uint8Array(bytes); // a copy of just these bytes (Buffer.slice would return a view into Node's pool)
}

function ownCheckpoint(c: TrainingCheckpoint): TrainingCheckpoint {
  return {
    step: c.step,
    ...(c.totalSteps !== undefined ? { totalSteps: c.totalSteps } : {}),
    optimizer: ownBytes(c.optimizer),
    settings: c.settings,
    dataCursor: { ...c.dataCursor },
  };
}

function jsonBytes(value: unknown): number {
  return new TextEncoder().encode(JSON.stringify(value)).length;
}

/** What a record costs on disk, roughly: its byte arrays plus its other fields as JSON. */
function recordBytes(record: StoredAdapter): number {
  const { weights, checkpoint, ...rest } = record;
  return weights.byteLength + (checkpoint ? checkpoint.optimizer.byteLength + jsonBytes({ ...checkpoint, optimizer: 0 }) : 0) + jsonBytes(rest);
}

function mb(bytes: number, roundUp: boolean): string {
  const v = bytes / 1e6;
  return (roundUp ? Math.ceil(v * 10) / 10 : Math.floor(v * 10) / 10).toFixed(1);
}

function quotaError(name: string, needs: number, free: number | undefined, cause?: unknown): LoraStudioError {
  const numbers = free === undefined ? `needs ${mb(needs, true)} MB` : `needs ${mb(needs, true)} MB, ${mb(free, false)} MB free`;
  return new LoraStudioError(
    'storage',
    `Not enough browser storage to save “${name}” (${numbers}). Delete old adapters or download this one instead; your library is unchanged.`,
    { cause },
  );
}

function isQuotaError(e: unknown): boolean {
  const name = (e as { name?: unknown } | null)?.name;
  // Old Firefox said NS_ERROR_DOM_QUOTA_REACHED; every current browser says QuotaExceededError.
  return name === 'QuotaExceededError' || name === 'NS_ERROR_DOM_QUOTA_REACHED';
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
