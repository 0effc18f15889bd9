// The Settings slice: the run's LoRA and optimizer settings, sequence length and split, what the user typed
// in their boxes (kept as typed: settings_check.ts says what is wrong, and Start waits), and the engine's
// memory estimate for them (asked again, debounced, on every change), and taking a setting that estimate
// says would fit.

import { checkNumber, DEFAULT_CONTEXT, settingRules, settingValues, type SettingField } from '../settings_check';
import { DEFAULT_SETTINGS, type StudioSettings } from '../studio_defaults';
import type { MemoryAlternative } from '../../worker/protocol';
import { engine, toFailure } from './shared';
import type { SettingsSlice, SliceCreator } from './studio_state';

const LORA_FIELDS: SettingField[] = ['r', 'alpha', 'dropout'];

/**
 * The settings and typed texts once alternative `a` is taken: its run settings replace the current ones, and
 * the texts of the boxes it changes go, so the boxes show the new values (not what was typed before).
 */
export function withAlternative(
  settings: StudioSettings, drafts: SettingsSlice['drafts'], a: MemoryAlternative,
): { settings: StudioSettings; drafts: SettingsSlice['drafts'] } {
  const rest = { ...drafts };
  for (const f of Object.keys(a.optim)) delete rest[f as SettingField];
  return { settings: { ...settings, optim: { ...settings.optim, ...a.optim } }, drafts: rest };
}

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
    applyMemoryAlternative: (a) => {
      set(withAlternative(get().settings, get().drafts, a));
      if (a.baseDtype) get().setBaseDtype(a.baseDtype);
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
