// The Settings slice: the run's LoRA and optimizer settings, sequence length and split, what the user typed
// in their boxes (kept as typed: settings_check.ts says what is wrong, and Start waits), and the engine's
// memory estimate for them (asked again, debounced, on every change).

import { checkNumber, DEFAULT_CONTEXT, settingRules, settingValues, type SettingField } from '../settings_check';
import { DEFAULT_SETTINGS } from '../studio_defaults';
import { engine, toFailure } from './shared';
import type { SettingsSlice, SliceCreator } from './studio_state';

const LORA_FIELDS: SettingField[] = ['r', 'alpha', 'dropout'];

export const createSettingsSlice: SliceCreator<SettingsSlice> = (set, get) => {
  let estimateTimer: ReturnType<typeof setTimeout> | null = null;
  let dataTimer: ReturnType<typeof setTimeout> | null = null;
  let ticket = 0;
  const settings = (p: Partial<SettingsSlice['settings']>) => set({ settings: { ...get().settings, ...p } });
  return {
    settings: DEFAULT_SETTINGS,
    drafts: {},
    memory: { estimate: null, trainable: null, error: null },
    setField: (field, text) => {
      set({ drafts: { ...get().drafts, [field]: text } });
      const { value } = checkNumber(text, settingRules(get().model.facts?.contextLength ?? DEFAULT_CONTEXT)[field]);
      if (value === null || value === settingValues(get().settings)[field]) return;
      const { setLora, setOptim, setDataSettings } = get();
      if (LORA_FIELDS.includes(field)) setLora({ [field]: value });
      else if (field === 'seqLen' || field === 'validationShare') setDataSettings({ [field]: value });
      else setOptim({ [field]: value });
    },
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
