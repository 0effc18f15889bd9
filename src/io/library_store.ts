// The storage under the adapter library (library.ts): the records it keeps in a key-value store (IndexedDB
// through idb-keyval in the browser, a Map in tests), written so that a crash, a closed tab or a full disk
// never leaves the library half-changed, and one writer at a time across the page and the worker.
// This file is not the library's API (library.ts checks what it is given and decides what to store) and
// knows nothing of PEFT files (peft_files.ts).
//
// Storage layout (one key-value store):
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
// anyway ends the same way.
//
// Every write that changed the library is announced (library_sync.ts), so other tabs show it.

import { createStore, del as idbDel, get as idbGet, keys as idbKeys, set as idbSet } from 'idb-keyval';
import { LoraStudioError } from './errors.ts';
import { announceLibraryChange, LIBRARY_CHANNEL } from './library_sync.ts';
import type { AdapterConfig, LoraTarget } from './peft.ts';

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
  /**
   * The settings of the run that trained it (the run's settings as free JSON, plus its data's format), kept
   * after the run finishes, unlike the checkpoint: what its training recipe (io/recipe.ts) is written from.
   */
  run?: Record<string, unknown>;
}

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

export interface IndexItem extends AdapterSummary {
  key: string;
}

export interface IndexRecord {
  version: 1;
  adapters: IndexItem[];
}

/** The record under 'adapter/<id>/<rev>'; the name lives in the index, so renaming rewrites no weights. */
export type StoredAdapter = Omit<AdapterEntry, 'name'>;

/** Share of the quota we let the library fill: browsers start refusing writes a little before 100%. */
const QUOTA_SHARE = 0.95;
const INDEX_KEY = 'index';
const RECORD_PREFIX = 'adapter/';
const LOCK_NAME = 'lora-studio-library';

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

/** The index and records in a KeyValueStore, read and written as the header describes. */
export class AdapterStore {
  private readonly store: KeyValueStore;
  private readonly estimate: () => Promise<StorageEstimateLike | undefined>;
  private queue: Promise<unknown> = Promise.resolve();
  private askedToPersist = false;
  private readonly channel: string | null;

  /**
   * `estimate` defaults to navigator.storage.estimate when the browser has it; otherwise no check before
   * writing. Writes are announced on `channel` (null: not announced).
   */
  constructor(store: KeyValueStore = idbStore(), estimate: () => Promise<StorageEstimateLike | undefined> = defaultEstimate, channel: string | null = LIBRARY_CHANNEL) {
    this.store = store;
    this.estimate = estimate;
    this.channel = channel;
  }

  /**
   * Runs fn alone among this library's writers: across the page and the worker through the Web Locks API
   * where there is one, and within this instance through a promise chain.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const locks = (globalThis.navigator as Navigator | undefined)?.locks;
    const run = locks ? () => locks.request(LOCK_NAME, fn) as Promise<T> : fn;
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => {});
    return result;
  }

  async readIndex(): Promise<IndexRecord> {
    const value = await this.store.get(INDEX_KEY);
    if (value === undefined) return { version: 1, adapters: [] };
    const index = value as IndexRecord;
    if (index.version !== 1 || !Array.isArray(index.adapters)) {
      throw new LoraStudioError('storage', 'The adapter library in this browser was written by a newer LoRA Studio; update the page (reload it) to open it.');
    }
    return index;
  }

  async readRecord(item: IndexItem): Promise<StoredAdapter> {
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
  async commit(index: IndexRecord, name: string, record: StoredAdapter): Promise<void> {
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
    announceLibraryChange({ kind: 'saved', id: record.id }, this.channel);
    if (old !== undefined) await this.store.del(old.key).catch(() => {});
    await this.sweep(next);
    this.persist();
  }

  /** Replaces the index alone (a rename of entry `id`), refused like any write that does not fit; `name` is the one the user sees. */
  async writeIndex(next: IndexRecord, name: string, id: string): Promise<void> {
    await this.checkQuota(name, jsonBytes(next));
    try {
      await this.store.set(INDEX_KEY, next);
    } catch (e) {
      throw await this.writeFailed(name, jsonBytes(next), e);
    }
    announceLibraryChange({ kind: 'renamed', id }, this.channel);
  }

  /** Drops an item: index first, so a failure after it leaves an orphaned record (swept later), never a dangling entry. */
  async remove(index: IndexRecord, item: IndexItem): Promise<void> {
    try {
      await this.store.set(INDEX_KEY, { version: 1, adapters: index.adapters.filter((a) => a.id !== item.id) });
    } catch (e) {
      throw new LoraStudioError('storage', `Could not delete “${item.name}” (${errorText(e)}). Your library is unchanged.`, { cause: e });
    }
    announceLibraryChange({ kind: 'deleted', id: item.id }, this.channel);
    await this.store.del(item.key).catch(() => {});
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

/** The entry asked for is not in the library: deleted, in this tab or another. */
export class MissingAdapterError extends LoraStudioError {
  override name = 'MissingAdapterError';
  constructor(readonly id: string) {
    super('bad-input', `There is no adapter with id ${id} in the library; it may have been deleted in another tab. Reload the list.`);
  }
}

export function findItem(index: IndexRecord, id: string): IndexItem {
  const item = index.adapters.find((a) => a.id === id);
  if (item === undefined) throw new MissingAdapterError(id);
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

export function summaryOf(item: IndexItem): AdapterSummary {
  const { key: _key, ...summary } = item;
  return { ...summary, plannedSteps: summary.plannedSteps ?? null }; // index items written before the field existed
}

/**
 * The bytes themselves, not a view into a larger buffer: IndexedDB's structured clone stores a view's
 * WHOLE underlying buffer, so a weights file sliced out of a zip would otherwise store the zip.
 */
export function ownBytes(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer
    ? bytes
    : new Uint8Array(bytes); // a copy of just these bytes (Buffer.slice would return a view into Node's pool)
}

export function ownCheckpoint(c: TrainingCheckpoint): TrainingCheckpoint {
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
