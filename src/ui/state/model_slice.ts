// The Model slice: loading a model in the engine (the built-in one, a Hub id, a picked folder) with
// progress, its frozen base held in the dtype chosen (default: the checkpoint's own), the facts the engine
// reports of it, and which model it is, as a checkpoint names it. A new model clears what belonged to the
// old one (the run, the outputs) and tokenizes the data again; so does a reload for another base dtype.

import { modelIdentity } from '../../worker/identity';
import { resetTrainLive } from '../train_live';
import { baseUrl, engine, toFailure } from './shared';
import type { ModelChoice, ModelSlice, SliceCreator } from './studio_state';
import { tryAfterModelLoad } from './try_slice';

export const createModelSlice: SliceCreator<ModelSlice> = (set, get) => {
  const patch = (p: Partial<ModelSlice['model']>) => set({ model: { ...get().model, ...p } });
  /** The model loaded last, for a reload with another base dtype (a folder's files are Blobs: references, not copies). */
  let loaded: ModelChoice | null = null;
  return {
    model: {
      status: 'idle', label: null, progress: null, facts: null, seconds: null, error: null, identity: null, hubToken: '', baseDtype: null, loadedBaseDtype: null,
    },
    setHubToken: (hubToken) => patch({ hubToken }),
    setBaseDtype: (baseDtype) => patch({ baseDtype }),
    reloadModel: async () => {
      if (loaded) await get().loadModel(loaded);
    },
    loadModel: async (choice) => {
      if (get().model.status === 'loading' || get().train.status === 'running' || get().train.status === 'paused') return;
      const label = choice.kind === 'default' ? 'moby-llama' : choice.kind === 'hub' ? choice.id : choice.label;
      patch({ status: 'loading', label, progress: null, error: null });
      const source =
        choice.kind === 'default' ? { kind: 'default' as const, baseUrl: baseUrl() } : choice;
      const baseDtype = get().model.baseDtype;
      try {
        const res = await engine().request(
          { type: 'loadModel', source, lora: get().settings.lora, ...(baseDtype ? { baseDtype } : {}) },
          { onEvent: (ev) => patch({ progress: { file: ev.file, loaded: ev.loaded, total: ev.total, percent: ev.percent } }) },
        );
        // The old model's data, adapter and outputs went with it.
        loaded = choice;
        set({
          model: {
            ...get().model, status: 'ready', label: res.model.name, progress: null, facts: res.model, seconds: res.seconds, error: null, identity: modelIdentity(choice),
            loadedBaseDtype: baseDtype,
          },
          train: { ...get().train, status: 'idle', stopped: null, error: null, adapterSteps: null, saved: null, adapter: null, checkpoint: null, runEntryId: null, resumable: false },
          tryIt: { ...get().tryIt, ...tryAfterModelLoad() },
          memory: { ...get().memory, trainable: res.trainable },
        });
        resetTrainLive(0);
        get().estimateMemory();
        await get().loadData();
      } catch (err) {
        // A failed load leaves the previous model in place (the engine replaces it only once the new one has loaded).
        patch({ status: get().model.facts ? 'ready' : 'error', progress: null, error: toFailure(err), label: get().model.facts?.name ?? null });
      }
    },
  };
};
