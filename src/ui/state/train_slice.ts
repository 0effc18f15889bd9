// The Train slice: a training run (start, pause, resume, stop, save; continue the held adapter; load one from
// the library; resume a checkpointed run after a closed tab). Per-step numbers go to train_live.ts, not
// here, so a step does not re-render the studio. The library entries it names (the run's, the loaded
// adapter's, the saved one) follow the library as it changes, here or in another tab (followLibrary).

import type { AdapterSummary } from '../../io/library';
import type { EngineEvent, EngineRequestBody, RunSettings } from '../../worker/protocol';
import { DEMO_DATA } from '../studio_defaults';
import { extendTrainLive, loadTrainLive, pushTrainProgress, resetTrainLive } from '../train_live';
import { sameModel } from '../../worker/identity';
import { engine, library, toFailure, type Failure } from './shared';
import type { HeldAdapter, SliceCreator, TrainSlice } from './studio_state';
import { emptyOutput } from './try_slice';

const ACTIVE = ['starting', 'running', 'paused', 'stopping'];

type TrainState = TrainSlice['train'];
type RunEvent = Omit<Extract<EngineEvent, { type: 'trainProgress' | 'trainPaused' }>, 'id'>;

/**
 * What the Train panel's library entries become when the list goes from `before` to `after`: a renamed one
 * shows its new name; a deleted one is no longer offered (no Resume of a run whose entry is gone) and the
 * panel says so. Only an entry seen in `before` counts as deleted, so a list read before a write landed
 * cannot undo it. Null when nothing changes.
 */
export function followLibrary(train: TrainState, before: readonly AdapterSummary[], after: readonly AdapterSummary[]): Partial<TrainState> | null {
  const now = new Map(after.map((a) => [a.id, a]));
  const was = new Map(before.map((a) => [a.id, a]));
  const gone = (id: string) => was.has(id) && !now.has(id);
  const p: Partial<TrainState> = {};
  if (train.runEntryId !== null && gone(train.runEntryId)) Object.assign(p, { runEntryId: null, resumable: false, entryDeleted: was.get(train.runEntryId)!.name });
  const from = train.adapter?.from;
  if (train.adapter && from && !from.deleted) {
    const name = now.get(from.id)?.name;
    if (name !== undefined && name !== from.name) p.adapter = { ...train.adapter, from: { ...from, name } };
    else if (gone(from.id)) p.adapter = { ...train.adapter, from: { ...from, deleted: true } };
  }
  if (train.saved) {
    const name = now.get(train.saved.id)?.name;
    if (name !== undefined && name !== train.saved.name) p.saved = { ...train.saved, name };
    else if (gone(train.saved.id)) p.saved = null;
  }
  return Object.keys(p).length > 0 ? p : null;
}

export const createTrainSlice: SliceCreator<TrainSlice> = (set, get) => {
  const patch = (p: Partial<TrainSlice['train']>) => set({ train: { ...get().train, ...p } });
  const libraryMessage = (error: Failure | null, notice: string | null) => set({ library: { ...get().library, error, notice } });
  const control = async (type: 'pause' | 'resume' | 'stop') => {
    try {
      const res = await engine().request({ type });
      if (res.state !== 'idle' && get().train.status !== 'finished') patch({ status: res.state, ...(res.state === 'running' ? { pausedAt: null } : {}) });
    } catch (err) {
      patch({ error: toFailure(err) });
    }
  };
  /** The run's entry and checkpoint, as its events tell them. */
  const follow = (ev: RunEvent) => {
    const t = get().train;
    if (ev.entryDeleted !== undefined) {
      if (t.entryDeleted === null) patch({ entryDeleted: ev.entryDeleted, runEntryId: null, checkpoint: null });
      return;
    }
    // An entry deleted under the run is not taken back from an event the engine sent before it noticed.
    if (ev.adapterId !== undefined && ev.adapterId !== t.runEntryId && t.entryDeleted === null) patch({ runEntryId: ev.adapterId });
    if (ev.checkpointStep !== undefined) {
      patch({ checkpoint: { step: ev.checkpointStep, error: null } });
      void get().refreshLibrary();
    } else if (ev.checkpointError !== undefined) {
      patch({ checkpoint: { step: t.checkpoint?.step ?? null, error: ev.checkpointError } });
    }
  };
  /** One run, whichever way it starts; `adapter` is what the engine will hold once it has begun. */
  const run = async (kind: TrainSlice['train']['kind'], body: EngineRequestBody<'train'> | EngineRequestBody<'resumeRun'>, adapter: HeldAdapter, steps: number) => {
    patch({
      status: 'starting', kind, stopped: null, error: null, saved: null, adapterSteps: steps, adapter, checkpoint: null, resumable: false,
      runEntryId: kind === 'resume' ? (body as { adapterId: string }).adapterId : null, entryDeleted: null, pausedAt: null,
    });
    try {
      const res = await engine().request(body, {
        onEvent: (ev) => {
          if (ev.type === 'trainPaused') {
            patch({ pausedAt: ev.step }); // the step the run waits after, the one its checkpoint holds
            return follow(ev);
          }
          const t = get().train;
          if (t.status === 'starting' || t.pausedAt !== null) patch({ status: t.status === 'starting' ? 'running' : t.status, pausedAt: null });
          pushTrainProgress(ev);
          follow(ev);
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
      checkpoint: null, runEntryId: null, resumable: false, saving: false, saved: null, entryDeleted: null, pausedAt: null,
    },
    libraryChanged: (before, after) => {
      const p = followLibrary(get().train, before, after);
      if (p) patch(p);
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
        patch({ saving: false, saved: { name: res.name, id: res.adapterId }, runEntryId: res.adapterId, entryDeleted: null });
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
        // The model loads (or is picked) as the base dtype it trained over, kept with its entry: the same weights again.
        const ranOver = (entry.run as Partial<RunSettings> | undefined)?.baseDtype;
        if (ranOver) get().setBaseDtype(ranOver);
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
