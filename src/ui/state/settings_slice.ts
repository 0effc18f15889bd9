// The Settings slice: the run's LoRA and optimizer settings, sequence length and split, and the engine's
// memory estimate for them (asked again, debounced, on every change).

import { DEFAULT_SETTINGS } from '../studio_defaults';
import { engine, toFailure } from './shared';
import type { SettingsSlice, SliceCreator } from './studio_state';

export const createSettingsSlice: SliceCreator<SettingsSlice> = (set, get) => {
  let estimateTimer: ReturnType<typeof setTimeout> | null = null;
  let dataTimer: ReturnType<typeof setTimeout> | null = null;
  let ticket = 0;
  const settings = (p: Partial<SettingsSlice['settings']>) => set({ settings: { ...get().settings, ...p } });
  return {
    settings: DEFAULT_SETTINGS,
    memory: { estimate: null, trainable: null, error: null },
    setLora: (p) => {
      settings({ lora: { ...get().settings.lora, ...p } });
      get().estimateMemory();
    },
    setOptim: (p) => {
      settings({ optim: { ...get().settings.optim, ...p } });
      get().estimateMemory();
    },
    setDataSettings: (p) => {
      settings(p);
      get().estimateMemory();
      if (dataTimer) clearTimeout(dataTimer);
      dataTimer = setTimeout(() => void get().loadData(), 300);
    },
    // Debounced: typing a number asks once, and only the latest answer is kept.
    estimateMemory: () => {
      if (estimateTimer) clearTimeout(estimateTimer);
      estimateTimer = setTimeout(async () => {
        if (get().model.status !== 'ready') return;
        const { lora, optim, seqLen } = get().settings;
        const mine = ++ticket;
        try {
          const res = await engine().request({ type: 'estimateMemory', lora, optim, seqLen });
          if (mine === ticket) set({ memory: { estimate: res, trainable: res.trainable, error: null } });
        } catch (err) {
          if (mine === ticket) set({ memory: { ...get().memory, estimate: null, error: toFailure(err) } });
        }
      }, 150);
    },
  };
};
