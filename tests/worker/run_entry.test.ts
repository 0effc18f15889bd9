// The library entry a run writes itself into (src/worker/run_entry.ts), over an in-memory library that
// another "tab" changes meanwhile: the first write makes the entry under a name no other adapter has; later
// writes update it by id and keep a rename made elsewhere; once it is deleted the run's own writes are
// refused with the reason and put nothing back (a run ending without a write notices it too), until the user
// saves under a name; a continued run is named after its source as it is called by then. No GPU: the
// contents are bytes made here.

import { describe, expect, it } from 'vitest';
import { AdapterLibrary } from '../../src/io/library';
import { memoryStore } from './memory_store';
import { loraKey, writeAdapter, type AdapterConfig } from '../../src/io/peft';
import { EntryDeletedError, RunEntry, type EntryContents } from '../../src/worker/run_entry';

const CONFIG: AdapterConfig = { r: 2, loraAlpha: 4, loraDropout: 0, targetModules: ['q_proj'], useRslora: false, baseModel: 'tiny' };

/** A one-layer q_proj adapter (hidden 8) after `steps` steps, with a checkpoint when asked. */
function contents(steps: number, withCheckpoint = true): EntryContents {
  const weights = new Map([
    [loraKey(0, 'q_proj', 'A'), new Float32Array(2 * 8).fill(steps)],
    [loraKey(0, 'q_proj', 'B'), new Float32Array(8 * 2).fill(-steps)],
  ]);
  return {
    baseModel: 'tiny',
    config: CONFIG,
    weights: writeAdapter(CONFIG, weights).weights,
    steps,
    lossHistory: Array.from({ length: steps }, (_, i) => ({ step: i + 1, loss: 3 - i / 10, split: 'train' as const })),
    ...(withCheckpoint ? { checkpoint: { step: steps, totalSteps: 10, optimizer: new Uint8Array(8), settings: {}, dataCursor: { epoch: 0, index: steps } } } : {}),
  };
}

function twoTabs() {
  const store = memoryStore();
  const estimate = async () => undefined;
  const engine = new AdapterLibrary({ store, estimate, channel: null });
  const other = new AdapterLibrary({ store, estimate, channel: null });
  return { entry: new RunEntry(() => engine), other };
}

describe('a run’s library entry', () => {
  it('is made by the first write under a free name, and later writes keep a rename made in another tab', async () => {
    const { entry, other } = twoTabs();
    await other.save({ ...contents(1, false), name: 'moby run 12:00' });
    entry.startNew('moby run 12:00');
    expect(entry.id).toBeNull();
    const first = await entry.write(async () => contents(2), undefined, 'fallback');
    expect(first.name).toBe('moby run 12:00 (2)');
    expect(entry.id).toBe(first.id);

    await other.rename(first.id, 'Pirate speak');
    const second = await entry.write(async () => contents(3), undefined, 'fallback');
    expect(second).toMatchObject({ id: first.id, name: 'Pirate speak', steps: 3 });
    expect(entry.name).toBe('Pirate speak');
    expect((await other.get(first.id)).checkpoint?.step).toBe(3);
    // The finished run's write drops the checkpoint, still under the name the other tab gave.
    await entry.write(async () => contents(4, false), undefined, 'fallback');
    expect((await other.list()).find((a) => a.id === first.id)).toMatchObject({ name: 'Pirate speak', steps: 4, hasCheckpoint: false });
    expect(await other.list()).toHaveLength(2);
  });

  it('is not put back once deleted elsewhere: the run’s writes say why, until the user saves under a name', async () => {
    const { entry, other } = twoTabs();
    entry.startNew('moby run');
    const made = await entry.write(async () => contents(1), undefined, 'fallback');
    await other.delete(made.id);

    let read = 0;
    const next = () => { read++; return Promise.resolve(contents(2)); };
    const err = await entry.write(next, undefined, 'fallback').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EntryDeletedError);
    expect((err as Error).message).toMatch(/^“moby run” was deleted from the library while this adapter trained, so the run no longer writes to it and nothing was put back; save the adapter to the library to keep it$/);
    expect(entry.deleted).toBe('moby run');
    expect(entry.id).toBeNull();
    expect(await other.list()).toEqual([]);
    // Later writes of the run are refused at once, without reading the adapter.
    await expect(entry.write(next, undefined, 'fallback')).rejects.toBeInstanceOf(EntryDeletedError);
    expect(read).toBe(1);
    expect(await other.list()).toEqual([]);

    expect(await entry.verify()).toBe('moby run');
    // Saving under a name is the user's choice: a new entry, which the run's writes then follow.
    const saved = await entry.write(async () => contents(3), 'kept', 'fallback');
    expect(saved.id).not.toBe(made.id);
    expect(entry.deleted).toBeNull();
    await entry.write(async () => contents(4), undefined, 'fallback');
    expect(await other.list()).toMatchObject([{ id: saved.id, name: 'kept', steps: 4 }]);
    expect(await entry.verify()).toBeNull();
  });

  it('notices a deletion without writing, for a run that ends with nothing new to write', async () => {
    const { entry, other } = twoTabs();
    entry.startNew('moby run');
    const made = await entry.write(async () => contents(2), undefined, 'fallback');
    expect(await entry.verify()).toBeNull();
    expect(entry.id).toBe(made.id);
    await other.delete(made.id);
    expect(await entry.verify()).toBe('moby run');
    expect(entry.id).toBeNull();
    await expect(entry.write(async () => contents(2), undefined, 'fallback')).rejects.toBeInstanceOf(EntryDeletedError);
    expect(await other.list()).toEqual([]);
  });

  it('names a continued run after its source as that is called when the first write comes', async () => {
    const { entry, other } = twoTabs();
    const source = await other.save({ ...contents(2, false), name: 'president' });
    entry.startNew('president (continued)', { id: source.id, suffix: ' (continued)' });
    await other.rename(source.id, 'speeches');
    expect((await entry.write(async () => contents(3), undefined, 'fallback')).name).toBe('speeches (continued)');
    // A source deleted meanwhile leaves the name planned at the start.
    const gone = await other.save({ ...contents(2, false), name: 'gone' });
    entry.startNew('gone (continued)', { id: gone.id, suffix: ' (continued)' });
    await other.delete(gone.id);
    expect((await entry.write(async () => contents(3), undefined, 'fallback')).name).toBe('gone (continued)');
    // No plan at all (a loaded adapter saved without a name): the fallback.
    entry.startNew(null);
    expect((await entry.write(async () => contents(1), undefined, 'moby run')).name).toBe('moby run');
  });
});
