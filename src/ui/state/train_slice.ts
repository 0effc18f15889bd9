// The Train slice: a training run (start, pause, resume, stop, save; continue the held adapter; load one from
// the library; resume a checkpointed run after a closed tab). Per-step numbers go to train_live.ts, not
// here, so a step does not re-render the studio.

import type { EngineRequestBody, RunSettings } from '../../worker/protocol';
import { DEMO_DATA } from '../studio_defaults';
import { extendTrainLive, loadTrainLive, pushTrainProgress, resetTrainLive } from '../train_live';
import { sameModel } from '../../worker/identity';
import { engine, library, toFailure, type Failure } from './shared';
import type { HeldAdapter, SliceCreator, TrainSlice } from './studio_state';
import { emptyOutput } from './try_slice';

const ACTIVE = ['starting', 'running', 'paused', 'stopping'];

export const createTrainSlice: SliceCreator<TrainSlice> = (set, get) => {
  const patch = (p: Partial<TrainSlice['train']>) => set({ train: { ...get().train, ...p } });
  const libraryMessage = (error: Failure | null, notice: string | null) => set({ library: { ...get().library, error, notice } });
  const control = async (type: 'pause' | 'resume' | 'stop') => {
    try {
      const res = await engine().request({ type });
      if (res.state !== 'idle' && get().train.status !== 'finished') patch({ status: res.state });
    } catch (err) {
      patch({ error: toFailure(err) });
    }
  };
  /** One run, whichever way it starts; `adapter` is what the engine will hold once it has begun. */
  const run = async (kind: TrainSlice['train']['kind'], body: EngineRequestBody<'train'> | EngineRequestBody<'resumeRun'>, adapter: HeldAdapter, steps: number) => {
    patch({ status: 'starting', kind, stopped: null, error: null, saved: null, adapterSteps: steps, adapter, checkpoint: null, resumable: false, runEntryId: kind === 'resume' ? (body as { adapterId: string }).adapterId : null });
    try {
      const res = await engine().request(body, {
        onEvent: (ev) => {
          if (get().train.status === 'starting') patch({ status: 'running' });
          pushTrainProgress(ev);
          if (ev.checkpointStep !== undefined) {
            patch({ checkpoint: { step: ev.checkpointStep, error: null } });
            void get().refreshLibrary();
          } else if (ev.checkpointError !== undefined) {
            patch({ checkpoint: { step: get().train.checkpoint?.step ?? null, error: ev.checkpointError } });
          }
        },
      });
      const { id: _id, ...stopped } = res;
      patch({ status: 'finished', stopped, adapterSteps: res.steps, runEntryId: res.adapterId, resumable: res.resumable });
    } catch (err) {
      patch({ status: 'error', error: toFailure(err), adapterSteps: get().train.adapterSteps || null });
    }
    void get().refreshLibrary();
    get().estimateMemory(); // the trainer's measured activations replace the formula
  };
  const busy = () => ACTIVE.includes(get().train.status);
  return {
    train: {
      status: 'idle', kind: 'fresh', stopped: null, error: null, adapterSteps: null, adapter: null,
      checkpoint: null, runEntryId: null, resumable: false, saving: false, saved: null,
    },
    startTraining: async () => {
      if (busy()) return;
      const { lora, optim } = get().settings;
      resetTrainLive(optim.steps);
      await run('fresh', { type: 'train', lora, optim }, { lora, from: null, note: null }, 0);
    },
    continueTraining: async () => {
      const { adapter, adapterSteps } = get().train;
      if (busy() || !adapter || adapterSteps === null) return;
      const { lora, optim } = get().settings;
      extendTrainLive(adapterSteps + optim.steps);
      // From here on the adapter is this run's, no longer the library entry it was loaded from.
      await run('continue', { type: 'train', lora, optim, continue: true }, { lora, from: null, note: null }, adapterSteps);
    },
    pauseTraining: () => control('pause'),
    resumeTraining: () => control('resume'),
    stopTraining: () => {
      // Said at once: before the first step the worker is still building the run and may answer late.
      if (busy() && get().train.status !== 'stopping') patch({ status: 'stopping' });
      return control('stop');
    },
    saveAdapter: async (name) => {
      patch({ saving: true, error: null });
      try {
        const res = await engine().request({ type: 'saveAdapter', name });
        patch({ saving: false, saved: { name: res.name, id: res.adapterId }, runEntryId: res.adapterId });
        await get().refreshLibrary();
        return true;
      } catch (err) {
        patch({ saving: false, error: toFailure(err) });
        return false;
      }
    },
    loadAdapter: async (id) => {
      if (busy() || get().model.status !== 'ready') return false;
      try {
        const res = await engine().request({ type: 'loadAdapter', adapterId: id });
        set({
          settings: { ...get().settings, lora: res.lora },
          drafts: {},
          train: {
            ...get().train, status: 'idle', kind: 'fresh', stopped: null, error: null, saved: null, adapterSteps: res.steps,
            adapter: { lora: res.lora, from: { id: res.adapterId, name: res.name }, note: res.note }, checkpoint: null, runEntryId: null, resumable: false,
          },
          tryIt: { ...get().tryIt, alphaScale: 1, base: emptyOutput(), adapted: emptyOutput() },
        });
        loadTrainLive(res.lossHistory, res.steps, res.checkpoint?.totalSteps ?? res.steps);
        get().estimateMemory();
        libraryMessage(null, `Loaded “${res.name}” into ${get().model.facts?.name ?? 'the model'}: try it, or continue training it.`);
        return true;
      } catch (err) {
        libraryMessage(toFailure(err), null);
        return false;
      }
    },
    resumeRun: async (id) => {
      if (busy() || get().model.status === 'loading') return;
      const fail = (message: string) => libraryMessage({ code: 'bad-input', message }, null);
      let entry;
      try {
        entry = await library().get(id);
      } catch (err) {
        return libraryMessage(toFailure(err), null);
      }
      const run_ = entry.checkpoint?.settings as RunSettings | undefined;
      if (!entry.checkpoint || run_?.version !== 1) return fail(`“${entry.name}” has no unfinished run this version of LoRA Studio can resume; load it and continue training it instead.`);
      const { lora, optim, model, data } = run_;
      // The run's settings, before model and data load: they tokenize the data with them.
      set({ settings: { ...get().settings, lora, optim, seqLen: data.seqLen, validationShare: data.validationShare, pack: data.pack }, drafts: {} });
      if (!sameModel(get().model.identity, model)) {
        if (model.kind === 'files') {
          return fail(`“${entry.name}” was training on the local folder “${model.label}”. Open that folder in the Model panel, then press Resume again.`);
        }
        await get().loadModel(model.kind === 'hub' ? { kind: 'hub', id: model.id, revision: model.revision, token: get().model.hubToken || undefined } : { kind: 'default' });
        if (!sameModel(get().model.identity, model)) {
          return fail(`“${entry.name}” needs ${model.kind === 'hub' ? model.id : 'the built-in model'}, which did not load: ${get().model.error?.message ?? 'see the Model panel'}.`);
        }
      }
      const source = get().data.source;
      if (source?.name !== data.name) {
        if (data.name !== DEMO_DATA.name) return fail(`“${entry.name}” was training on “${data.name}”. Load that file in the Data panel, then press Resume again.`);
        await get().useDemoData();
      } else {
        await get().loadData();
      }
      if (get().data.status !== 'ready') return fail(`The data for “${entry.name}” did not load: ${get().data.error?.message ?? 'see the Data panel'}.`);
      libraryMessage(null, `Resuming “${entry.name}” at step ${entry.checkpoint.step}.`);
      loadTrainLive(entry.lossHistory, entry.checkpoint.step, run_.origin + optim.steps);
      await run('resume', { type: 'resumeRun', adapterId: id }, { lora, from: null, note: null }, entry.checkpoint.step);
    },
  };
};
