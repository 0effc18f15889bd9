// The Library slice. The adapter library lives in IndexedDB, not on the GPU, so the page talks to it directly
// (src/io/library.ts serialises page and worker writes with Web Locks). Downloads are the panel's job: these
// actions only return the bytes. Other tabs' writes arrive as announcements (io/library_sync.ts), and each
// list read tells the Train slice what changed (libraryChanged), so a renamed or deleted entry shows there.

import { baseIdentity, baseNameNote, watchLibraryChanges, type ImportExpectation } from '../../io/library';
import type { ModelFacts } from '../../worker/protocol';
import { library, libraryFailure } from './shared';
import type { LibrarySlice, SliceCreator } from './studio_state';

/** What an imported adapter must fit: the loaded model's identity, as the worker builds it for Load (io/base_identity.ts). */
export function importExpectation(m: ModelFacts): ImportExpectation {
  return baseIdentity(m, m.name);
}

export const createLibrarySlice: SliceCreator<LibrarySlice> = (set, get) => {
  const patch = (p: Partial<LibrarySlice['library']>) => set({ library: { ...get().library, ...p } });
  let reads = 0;
  /** Re-reads the list and the storage estimate; failures of the estimate are not worth a message. */
  const reload = async () => {
    const read = ++reads;
    const items = await library().list();
    const storage = (await navigator.storage?.estimate?.().catch(() => null)) ?? null;
    if (read !== reads) return; // a later read is on its way: an older list must not land after it
    const before = get().library.items;
    patch({ status: 'ready', items, storage });
    get().libraryChanged(before, items);
  };
  const attempt = async (what: () => Promise<string | null>): Promise<boolean> => {
    try {
      const notice = await what();
      patch({ error: null, notice });
      return true;
    } catch (err) {
      patch({ error: libraryFailure(err), notice: null });
      return false;
    }
  };
  return {
    library: { status: 'idle', items: [], storage: null, importing: false, error: null, notice: null },
    refreshLibrary: async () => {
      if (get().library.status === 'idle') patch({ status: 'loading' });
      try {
        await reload();
      } catch (err) {
        patch({ status: 'error', error: libraryFailure(err) });
      }
    },
    watchLibrary: () => watchLibraryChanges(() => void get().refreshLibrary()),
    importAdapter: async (files, given) => {
      const facts = get().model.facts;
      const expected = given ?? (facts ? importExpectation(facts) : undefined);
      patch({ importing: true });
      await attempt(async () => {
        const zip = files.length === 1 && /\.zip$/i.test(files[0].name) ? files[0] : null;
        const entry = zip
          ? await library().importPeft(new Uint8Array(await zip.arrayBuffer()), expected, { fileName: zip.name })
          : await library().importPeft(new Map(await Promise.all(files.map(async (f) => [f.name, new Uint8Array(await f.arrayBuffer())] as const))), expected);
        await reload();
        const note = expected ? baseNameNote(entry.baseModel, expected) : null;
        const taken = entry.takenName !== undefined ? ` (another adapter is called “${entry.takenName}”)` : '';
        // What the import read that the user should know (PEFT's default lora_alpha, layers_to_transform); the
        // base-name note is among them when a model is loaded, and said once.
        const read = entry.notes.filter((n) => note === null || !n.endsWith(note));
        return [`Imported “${entry.name}”${taken}.`, ...(note ? [note] : []), ...read].join(' ');
      });
      patch({ importing: false });
    },
    renameAdapter: (id, name) =>
      attempt(async () => {
        const renamed = await library().rename(id, name);
        await reload();
        return `Renamed to “${renamed.name}”.`;
      }),
    deleteAdapter: async (id) => {
      const name = get().library.items.find((a) => a.id === id)?.name ?? 'the adapter';
      await attempt(async () => {
        await library().delete(id);
        await reload();
        return `Deleted “${name}”.`;
      });
    },
    exportAdapter: async (id) => {
      try {
        return await library().exportPeft(id);
      } catch (err) {
        patch({ error: libraryFailure(err), notice: null });
        return null;
      }
    },
    dismissLibraryMessage: () => patch({ error: null, notice: null }),
  };
};
