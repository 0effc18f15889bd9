// The adapter library's key-value store in memory, for Node tests of the worker (the studio's is IndexedDB):
// values are cloned on the way in and out, as IndexedDB's structured clone does.
import type { KeyValueStore } from '../../src/io/library';

export function memoryStore(): KeyValueStore {
  const m = new Map<string, unknown>();
  return {
    get: async (k) => structuredClone(m.get(k)),
    set: async (k, v) => void m.set(k, structuredClone(v)),
    del: async (k) => void m.delete(k),
    keys: async () => [...m.keys()],
  };
}
