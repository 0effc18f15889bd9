// The Data slice: the training text (the demo data or the user's), tokenized by the engine with the loaded
// model's tokenizer and the current sequence length; only the latest request's answer is kept.

import { DEMO_DATA } from '../studio_defaults';
import { baseUrl, engine, toFailure } from './shared';
import type { DataSlice, SliceCreator } from './studio_state';

export const createDataSlice: SliceCreator<DataSlice> = (set, get) => {
  const patch = (p: Partial<DataSlice['data']>) => set({ data: { ...get().data, ...p } });
  let ticket = 0;
  return {
    data: { status: 'idle', source: null, result: null, error: null },
    setDataText: async (name, text) => {
      patch({ source: { name, text, demo: false } });
      await get().loadData();
    },
    useDemoData: async () => {
      patch({ status: 'loading', error: null });
      try {
        const res = await fetch(new URL(DEMO_DATA.path, baseUrl()));
        if (!res.ok) throw new Error(`the demo data could not be fetched (HTTP ${res.status}); reload the page`);
        patch({ source: { name: DEMO_DATA.name, text: await res.text(), demo: true } });
      } catch (err) {
        patch({ status: 'error', error: toFailure(err) });
        return;
      }
      await get().loadData();
    },
    loadData: async () => {
      if (!get().data.source) return get().useDemoData();
      if (get().model.status !== 'ready') return;
      const { name, text } = get().data.source!;
      const { seqLen, validationShare, pack } = get().settings;
      const mine = ++ticket;
      patch({ status: 'loading', error: null });
      try {
        const { id: _id, type: _type, ...result } = await engine().request({ type: 'loadDataset', text, fileName: name, seqLen, validationShare, pack, seed: get().settings.optim.seed });
        if (mine === ticket) patch({ status: 'ready', result, error: null });
      } catch (err) {
        if (mine === ticket) patch({ status: 'error', result: null, error: toFailure(err) });
      }
    },
  };
};
