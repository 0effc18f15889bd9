// The library entry an adapter's run writes itself into (src/io/library.ts), for the session (session.ts):
// which entry it is, and how each write reaches it. The first write creates the entry, under a name no other
// adapter has; every later write updates it by id and keeps the name it has then, so a rename made meanwhile
// (in this tab's Library panel or another tab's) survives the run's checkpoints. An entry deleted meanwhile
// stays deleted: the run's own writes stop, each refused with EntryDeletedError saying so, until the user
// saves the adapter under a name, which makes a new entry. Writes go one at a time, so a checkpoint and a
// save never both create an entry.
// The session decides what to write and when; this file holds no adapter and touches no GPU.

import { LoraStudioError } from '../io/errors';
import { MAX_NAME_LENGTH, MissingAdapterError, type AdapterEntry, type AdapterInput, type AdapterLibrary } from '../io/library';

/** What a write stores: everything but the id and the name, which are the entry's business. */
export type EntryContents = Omit<AdapterInput, 'id' | 'name'>;

/** A run's own write, refused because its entry was deleted from the library while it ran. */
export class EntryDeletedError extends LoraStudioError {
  override name = 'EntryDeletedError';
  constructor(readonly entryName: string) {
    super('bad-input', `“${entryName}” was deleted from the library while this adapter trained, so the run no longer writes to it and nothing was put back; save the adapter to the library to keep it`);
  }
}

export class RunEntry {
  /** The entry the writes go to, once a write has made it (or a resumed run named it). */
  private entry: { id: string; name: string } | null = null;
  /** The first write's name, or the entry whose name (as it is then) it extends with `suffix`. */
  private planned: { name: string; from?: { id: string; suffix: string } } | null = null;
  private deletedName: string | null = null;
  private writes: Promise<unknown> = Promise.resolve();

  constructor(private readonly library: () => AdapterLibrary) {}

  /** The entry written to, or null while there is none. */
  get id(): string | null {
    return this.entry?.id ?? null;
  }

  get name(): string | null {
    return this.entry?.name ?? null;
  }

  /** The name of the entry deleted under the run, until the adapter is saved again. */
  get deleted(): string | null {
    return this.deletedName;
  }

  /**
   * The next write makes a new entry: named `name` (null: the write's fallback), or, with `from`, named
   * after that entry as it is called by then, plus `from.suffix` ("… (continued)").
   */
  startNew(name: string | null, from?: { id: string; suffix: string }): void {
    this.entry = null;
    this.deletedName = null;
    this.planned = name === null ? null : { name, from };
  }

  /** The writes go on into an existing entry (a resumed run). */
  resume(entry: { id: string; name: string }): void {
    this.entry = { ...entry };
    this.planned = null;
    this.deletedName = null;
  }

  /**
   * Stores `contents()` into the entry: under `name` when the user gave one (renaming the entry, or making
   * one if there is none), else keeping the entry's current name (or, for a new entry, the planned name,
   * else `fallback`). Throws EntryDeletedError, without calling `contents`, once the entry is deleted.
   */
  write(contents: () => Promise<EntryContents>, name: string | undefined, fallback: string): Promise<AdapterEntry> {
    const go = async (): Promise<AdapterEntry> => {
      if (name === undefined && this.deletedName !== null) throw new EntryDeletedError(this.deletedName);
      const library = this.library();
      const c = await contents();
      if (this.entry && name === undefined) {
        try {
          const saved = await library.saveCheckpoint(this.entry.id, c.checkpoint ?? null, { weights: c.weights, steps: c.steps, lossHistory: c.lossHistory });
          this.entry = { id: saved.id, name: saved.name };
          return saved;
        } catch (e) {
          if (!(e instanceof MissingAdapterError)) throw e;
          this.deletedName = this.entry.name;
          this.entry = null;
          throw new EntryDeletedError(this.deletedName);
        }
      }
      const saved = await library.save({ ...c, id: this.entry?.id, name: name ?? (await this.plannedName(library)) ?? fallback }, { distinctName: true });
      this.entry = { id: saved.id, name: saved.name };
      this.planned = null;
      this.deletedName = null;
      return saved;
    };
    const result = this.writes.then(go, go);
    this.writes = result.catch(() => {});
    return result;
  }

  /**
   * Whether the entry is still in the library, for a run that ends without writing (a deletion elsewhere
   * shows only at the next write): the name it had if it was deleted, else null. Unreadable: no news.
   */
  verify(): Promise<string | null> {
    const check = async (): Promise<string | null> => {
      const entry = this.entry;
      if (entry && !(await this.library().list().catch(() => [{ id: entry.id }])).some((a) => a.id === entry.id)) {
        this.deletedName = entry.name;
        this.entry = null;
      }
      return this.deletedName;
    };
    const result = this.writes.then(check, check);
    this.writes = result.catch(() => {});
    return result;
  }

  private async plannedName(library: AdapterLibrary): Promise<string | null> {
    const p = this.planned;
    if (!p?.from) return p?.name ?? null;
    const from = (await library.list()).find((a) => a.id === p.from!.id);
    return from ? `${from.name}${p.from.suffix}`.slice(0, MAX_NAME_LENGTH) : p.name;
  }
}
