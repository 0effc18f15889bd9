// Taking a setting the memory estimate says would fit (src/ui/state/settings_slice.ts withAlternative): its
// run settings replace the current ones and the boxes it changes drop what was typed in them, so they show
// the new values; every other setting, and what was typed elsewhere, stays as it was.

import { describe, expect, it } from 'vitest';
import { withAlternative } from '../../src/ui/state/settings_slice';
import { DEFAULT_SETTINGS } from '../../src/ui/studio_defaults';

describe('taking a memory alternative', () => {
  it('sets a smaller batch with more accumulation, and the boxes show it', () => {
    const drafts = { batchSize: '8', gradAccum: '1', lr: '3e-4x' };
    const next = withAlternative(DEFAULT_SETTINGS, drafts, { optim: { batchSize: 2, gradAccum: 4 }, bytes: 1, label: 'use batch 2 with accumulation 4' });
    expect(next.settings.optim).toEqual({ ...DEFAULT_SETTINGS.optim, batchSize: 2, gradAccum: 4 });
    expect(next.settings.lora).toBe(DEFAULT_SETTINGS.lora);
    expect(next.drafts).toEqual({ lr: '3e-4x' }); // an unusable lr stays as typed, for its box to say so
    expect(drafts).toEqual({ batchSize: '8', gradAccum: '1', lr: '3e-4x' }); // the old state is not touched
  });

  it('turns recompute on, and leaves the base dtype of an NF4 alternative to the Model panel', () => {
    const next = withAlternative(DEFAULT_SETTINGS, {}, { optim: { recompute: true }, baseDtype: 'nf4', bytes: 1, label: 'reload the model with the NF4 base and turn on “Recompute activations”' });
    expect(next.settings).toEqual({ ...DEFAULT_SETTINGS, optim: { ...DEFAULT_SETTINGS.optim, recompute: true } });
    expect(next.drafts).toEqual({});
  });
});
