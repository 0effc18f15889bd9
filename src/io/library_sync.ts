// Word that the adapter library changed, between every context that opens it on one origin: the tabs of the
// studio and their engine workers. IndexedDB is shared by all of them but tells none of them about another's
// writes, so each write (library_store.ts) is announced on a BroadcastChannel, and a page that shows the
// library listens and reads it again. The message says only which entry changed and how; the library itself
// stays the one truth, so a missed or repeated message costs a stale list until the next one, never data.
// This file does not read or write the library.

export const LIBRARY_CHANNEL = 'lora-studio-library';

export interface LibraryChange {
  kind: 'saved' | 'renamed' | 'deleted';
  id: string;
}

/** Tells every other context on this origin listening on `channel` (null: nobody) that the library changed. */
export function announceLibraryChange(change: LibraryChange, channel: string | null = LIBRARY_CHANNEL): void {
  if (channel === null || typeof BroadcastChannel === 'undefined') return;
  // A channel per message: posting queues the delivery at once, so closing it right after loses nothing,
  // and no open channel keeps a Node process alive.
  const c = new BroadcastChannel(channel);
  c.postMessage(change);
  c.close();
}

/**
 * Calls `onChange` for every change announced on `channel`, by this context's own library objects too (a
 * BroadcastChannel hears every other channel object of its name). Returns the function that stops listening.
 */
export function watchLibraryChanges(onChange: (change: LibraryChange) => void, channel: string = LIBRARY_CHANNEL): () => void {
  if (typeof BroadcastChannel === 'undefined') return () => {};
  const c = new BroadcastChannel(channel);
  c.onmessage = (ev: MessageEvent<LibraryChange>) => onChange(ev.data);
  return () => c.close();
}
