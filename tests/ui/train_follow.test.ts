// The Train panel following the adapter library (src/ui/state/train_slice.ts followLibrary): when the list
// read from IndexedDB changes, here or in another tab, the run's entry, the loaded adapter's entry and the
// saved one show a rename, and a deleted one stops being offered (no Resume for a run whose entry is gone)
// and is said to be deleted. An entry the previous list never showed is not taken for deleted.

import { describe, expect, it } from 'vitest';
import type { AdapterSummary } from '../../src/io/library';
import { followLibrary } from '../../src/ui/state/train_slice';
import type { TrainSlice } from '../../src/ui/state/studio_state';

type Train = TrainSlice['train'];

const LORA = { targets: ['q_proj' as const, 'v_proj' as const], r: 8, alpha: 16, dropout: 0, rslora: false };

function row(id: string, name: string): AdapterSummary {
  return { id, name, baseModel: 'moby-llama', r: 8, targetModules: ['q_proj', 'v_proj'], steps: 3, lastLoss: 2, bytes: 10, hasCheckpoint: true, plannedSteps: 5, createdAt: 0, updatedAt: 0 };
}

const IDLE: Train = {
  status: 'finished', kind: 'fresh', stopped: null, error: null, adapterSteps: 3, adapter: { lora: LORA, from: null, note: null },
  checkpoint: null, runEntryId: null, resumable: false, saving: false, saved: null, entryDeleted: null, pausedAt: null,
};

describe('the Train panel follows the library', () => {
  it('drops the Resume of a run whose entry was deleted, and says which', () => {
    const train: Train = { ...IDLE, runEntryId: 'run', resumable: true };
    expect(followLibrary(train, [row('run', 'moby run'), row('x', 'x')], [row('x', 'x')])).toEqual({ runEntryId: null, resumable: false, entryDeleted: 'moby run' });
    // A rename changes nothing the panel holds by id; an unrelated deletion neither.
    expect(followLibrary(train, [row('run', 'moby run'), row('x', 'x')], [row('run', 'Pirate speak')])).toBeNull();
    // A list that never showed the entry (read before its first write landed) does not count as a deletion.
    expect(followLibrary(train, [row('x', 'x')], [row('x', 'x')])).toBeNull();
  });

  it('shows a loaded adapter’s new name, and marks it deleted when its entry goes', () => {
    const train: Train = { ...IDLE, adapter: { lora: LORA, from: { id: 'a', name: 'two steps' }, note: null } };
    expect(followLibrary(train, [row('a', 'two steps')], [row('a', 'speeches')])).toEqual({ adapter: { lora: LORA, from: { id: 'a', name: 'speeches' }, note: null } });
    expect(followLibrary(train, [row('a', 'two steps')], [])).toEqual({ adapter: { lora: LORA, from: { id: 'a', name: 'two steps', deleted: true }, note: null } });
    const deleted: Train = { ...IDLE, adapter: { lora: LORA, from: { id: 'a', name: 'two steps', deleted: true }, note: null } };
    expect(followLibrary(deleted, [], [])).toBeNull();
  });

  it('renames the “Saved” notice with its entry, and drops it when the entry is deleted', () => {
    const train: Train = { ...IDLE, saved: { id: 's', name: 'kept' } };
    expect(followLibrary(train, [row('s', 'kept')], [row('s', 'kept for good')])).toEqual({ saved: { id: 's', name: 'kept for good' } });
    expect(followLibrary(train, [row('s', 'kept')], [])).toEqual({ saved: null });
    expect(followLibrary(train, [row('s', 'kept')], [row('s', 'kept')])).toBeNull();
  });
});
