// The adapter library: adapters saved in the browser, listed, renamed, deleted, exported as the two PEFT
// files (or a zip of them) and imported back, plus the training checkpoint that lets a closed tab resume
// where it stopped. Engine-side: no React, usable from the page and from the worker.
// This file is the library's API and the checks on what it is handed; how records are laid out and
// written without ever leaving the library half-changed is library_store.ts, and reading and writing
// the PEFT files is peft_files.ts. It is not the trainer: it stores the checkpoint it is handed.
// Names tell adapters apart: an import (or a run's new entry) whose name another adapter has gets a number,
// and a rename to another adapter's name is refused. Every write is announced to the other tabs
// (library_sync.ts); saveCheckpoint updates an entry by id and keeps the name it has now, whoever gave it.

import { LoraStudioError } from './errors.ts';
import { checkAdapterBytes, readPeftFiles, writePeftFiles, type ImportExpectation } from './peft_files.ts';
import {
  AdapterStore,
  findItem,
  ownBytes,
  ownCheckpoint,
  summaryOf,
  type AdapterEntry,
  type AdapterSummary,
  type IndexRecord,
  type KeyValueStore,
  type LossPoint,
  type StorageEstimateLike,
  type StoredAdapter,
  type TrainingCheckpoint,
} from './library_store.ts';
import type { ZipFile } from './zip.ts';

export { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, type ImportExpectation } from './peft_files.ts';
// The page builds the loaded model's identity and words the import's note with the worker's own functions.
export { baseIdentity, baseNameNote } from './base_identity.ts';
export { LIBRARY_CHANNEL, watchLibraryChanges, type LibraryChange } from './library_sync.ts';
export { idbStore, MissingAdapterError, type AdapterEntry, type AdapterSummary, type KeyValueStore, type LossPoint, type StorageEstimateLike, type TrainingCheckpoint } from './library_store.ts';

/** What save() takes: an entry without timestamps; with an id it overwrites that adapter. */
export type AdapterInput = Omit<AdapterEntry, 'id' | 'createdAt' | 'updatedAt'> & { id?: string };

/** What save() and importPeft() return: the entry, and the name asked for when another entry had it. */
export type SavedAdapter = AdapterEntry & { takenName?: string };

export interface LibraryOptions {
  /** Defaults to IndexedDB (idbStore()). */
  store?: KeyValueStore;
  /** Defaults to navigator.storage.estimate when the browser has it; otherwise no check before writing. */
  estimate?: () => Promise<StorageEstimateLike | undefined>;
  /** The BroadcastChannel its writes are announced on (library_sync.ts); null: not announced. */
  channel?: string | null;
}

export const MAX_NAME_LENGTH = 100;

export class AdapterLibrary {
  private readonly store: AdapterStore;

  constructor(options: LibraryOptions = {}) {
    this.store = new AdapterStore(options.store, options.estimate, options.channel);
  }

  /** Every adapter, most recently updated first, without loading any weights. */
  async list(): Promise<AdapterSummary[]> {
    const index = await this.store.readIndex();
    return index.adapters.map(summaryOf).sort((a, b) => b.updatedAt - a.updatedAt);
  }

  async get(id: string): Promise<AdapterEntry> {
    return this.store.exclusive(async () => {
      const index = await this.store.readIndex();
      const item = findItem(index, id);
      return { ...(await this.store.readRecord(item)), name: item.name };
    });
  }

  /**
   * Adds an adapter (a new id) or overwrites the one with `input.id` (creating it if unknown), keeping its
   * creation date. The entry is stored as given: leaving out `checkpoint` drops any stored one. With
   * `distinctName`, a name another entry has gets a number ("pirate (2)"), so no two rows read alike.
   */
  async save(input: AdapterInput, { distinctName = false } = {}): Promise<SavedAdapter> {
    const asked = checkName(input.name);
    checkProgress(input.steps, input.lossHistory);
    const config = { ...input.config, baseModel: input.baseModel };
    checkAdapterBytes(config, input.weights);
    return this.store.exclusive(async () => {
      const index = await this.store.readIndex();
      const id = input.id ?? crypto.randomUUID();
      const name = distinctName ? freeName(index, asked, id) : asked;
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
        ...(input.run ? { run: structuredClone(input.run) } : {}),
      };
      await this.store.commit(index, name, record);
      return { ...record, name, ...(name !== asked ? { takenName: asked } : {}) };
    });
  }

  /** Renames an adapter; a name another adapter has is refused (names tell adapters apart in the list and in downloads). */
  async rename(id: string, newName: string): Promise<AdapterSummary> {
    const name = checkName(newName);
    return this.store.exclusive(async () => {
      const index = await this.store.readIndex();
      const item = { ...findItem(index, id), name };
      if (freeName(index, name, id) !== name) {
        throw new LoraStudioError('bad-input', `Another adapter in the library is already called “${name}”; choose another name.`);
      }
      const next: IndexRecord = { version: 1, adapters: index.adapters.map((a) => (a.id === id ? item : a)) };
      await this.store.writeIndex(next, name, id);
      return summaryOf(item);
    });
  }

  /** Removes an adapter; deleting one that is already gone does nothing. */
  async delete(id: string): Promise<void> {
    await this.store.exclusive(async () => {
      const index = await this.store.readIndex();
      const item = index.adapters.find((a) => a.id === id);
      if (item !== undefined) await this.store.remove(index, item);
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
    return this.store.exclusive(async () => {
      const index = await this.store.readIndex();
      const item = findItem(index, id);
      const old = await this.store.readRecord(item);
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
      await this.store.commit(index, item.name, record);
      return { ...record, name: item.name };
    });
  }

  /** The two PEFT files, and a stored zip of both, ready for `PeftModel.from_pretrained`. */
  async exportPeft(id: string): Promise<{ files: ZipFile[]; zip: Uint8Array }> {
    const entry = await this.get(id);
    return writePeftFiles(entry, new Date(entry.updatedAt));
  }

  /**
   * Imports a PEFT adapter from its two files (by name; a folder prefix is fine) or from a zip of them,
   * checked as readPeftFiles says: against `expected` when a model is loaded, on their own otherwise.
   * The name is `options.name`, else the zip's name, else one from the base model; when another adapter has
   * it, the import gets a distinct one ("pirate (2)") and `takenName` says which was taken. `notes`: what the
   * import read that the user should know (PEFT's default lora_alpha, layers_to_transform), not stored.
   */
  async importPeft(
    input: Map<string, Uint8Array> | Uint8Array,
    expected?: ImportExpectation,
    options: { name?: string; fileName?: string } = {},
  ): Promise<SavedAdapter & { notes: string[] }> {
    const source = options.fileName ?? (input instanceof Map ? 'the selected files' : 'adapter.zip');
    const { baseModel, config, weights, notes } = readPeftFiles(input, expected, source);
    const name = options.name ?? defaultImportName(options.fileName, baseModel);
    return { ...(await this.save({ name, baseModel, config, weights, steps: 0, lossHistory: [] }, { distinctName: true })), notes };
  }
}

// ---- checks on what the library is handed ----------------------------------------------------------------

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

/** `name`, else `name (2)`, `name (3)`, …: the first that no adapter but `ownId` has, case aside. */
function freeName(index: IndexRecord, name: string, ownId: string): string {
  const taken = new Set(index.adapters.filter((a) => a.id !== ownId).map((a) => a.name.toLowerCase()));
  if (!taken.has(name.toLowerCase())) return name;
  const stem = name.replace(/ \(\d+\)$/, '');
  for (let n = 2; ; n++) {
    const suffix = ` (${n})`;
    const candidate = stem.slice(0, MAX_NAME_LENGTH - suffix.length).trimEnd() + suffix;
    if (!taken.has(candidate.toLowerCase())) return candidate;
  }
}

function defaultImportName(fileName: string | undefined, baseModel: string): string {
  const stem = fileName?.replace(/\.zip$/i, '').trim();
  if (stem) return stem.slice(0, MAX_NAME_LENGTH);
  const model = baseModel.split('/').pop();
  return (model ? `Imported adapter for ${model}` : 'Imported adapter').slice(0, MAX_NAME_LENGTH);
}
