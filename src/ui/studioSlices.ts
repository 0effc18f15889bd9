// The studio's main flow as zustand slices: the model (load with progress, facts), the run settings (LoRA
// and optimizer, with the engine's memory estimate), the data (demo or the user's, tokenized by the engine),
// the training run (start, pause, resume, stop, save; continue a loaded adapter; resume a checkpointed run
// from the library, after a closed tab) and "Try it" (base model and adapter side by side, α live).
// Every engine call goes through the worker (store.ts: engine()); per-step numbers go to trainLive.ts, not
// here. Composed into the one store in store.ts, and imported at run time by store.ts only (the two import
// each other; panels take constants from studioDefaults.ts and only types from here).

import type { StateCreator } from 'zustand';
import type { EngineRequestBody, LoraSettings, MemoryEstimate, ModelFacts, ModelIdentity, OptimSettings, ResponseFor, RunSettings, TrainableFacts } from '../worker/protocol';
import type { StudioSettings } from './studioDefaults';
import { engine, library, toFailure, type Failure, type StudioState } from './store';
import { DEFAULT_SETTINGS, DEMO_DATA } from './studioDefaults';
import { extendTrainLive, loadTrainLive, pushTrainProgress, resetTrainLive } from './trainLive';
import { modelIdentity, sameModel } from '../worker/identity';

type Creator<T> = StateCreator<StudioState, [], [], T>;

/** The page's base URL, where the embedded model and demo data are served (vite `base: './'`). */
const baseUrl = () => document.baseURI;

// ---- model -------------------------------------------------------------------------------------------

export type ModelChoice =
  | { kind: 'default' }
  | { kind: 'hub'; id: string; revision?: string; token?: string }
  | { kind: 'files'; label: string; files: { path: string; blob: Blob }[] };

export interface ModelSlice {
  model: {
    status: 'idle' | 'loading' | 'ready' | 'error';
    /** What is loading or loaded, in words ("moby-llama", a Hub id, a folder name). */
    label: string | null;
    progress: { file: string; loaded: number; total?: number; percent?: number } | null;
    facts: ModelFacts | null;
    seconds: number | null;
    error: Failure | null;
    /** Which model is loaded, as a checkpoint names it. */
    identity: ModelIdentity | null;
    /**
     * The Hugging Face access token typed in the Model panel, for gated repositories: held in this store's
     * memory only (never in the URL, IndexedDB or a checkpoint), so it is gone after a reload.
     */
    hubToken: string;
  };
  loadModel: (choice: ModelChoice) => Promise<void>;
  setHubToken: (token: string) => void;
}

export const createModelSlice: Creator<ModelSlice> = (set, get) => {
  const patch = (p: Partial<ModelSlice['model']>) => set({ model: { ...get().model, ...p } });
  return {
    model: { status: 'idle', label: null, progress: null, facts: null, seconds: null, error: null, identity: null, hubToken: '' },
    setHubToken: (hubToken) => patch({ hubToken }),
    loadModel: async (choice) => {
      if (get().model.status === 'loading' || get().train.status === 'running' || get().train.status === 'paused') return;
      const label = choice.kind === 'default' ? 'moby-llama' : choice.kind === 'hub' ? choice.id : choice.label;
      patch({ status: 'loading', label, progress: null, error: null });
      const source =
        choice.kind === 'default' ? { kind: 'default' as const, baseUrl: baseUrl() } : choice;
      try {
        const res = await engine().request(
          { type: 'loadModel', source, lora: get().settings.lora },
          { onEvent: (ev) => patch({ progress: { file: ev.file, loaded: ev.loaded, total: ev.total, percent: ev.percent } }) },
        );
        // The old model's data, adapter and outputs went with it.
        set({
          model: { ...get().model, status: 'ready', label: res.model.name, progress: null, facts: res.model, seconds: res.seconds, error: null, identity: modelIdentity(choice) },
          train: { ...get().train, status: 'idle', stopped: null, error: null, adapterSteps: null, saved: null, adapter: null, checkpoint: null, runEntryId: null, resumable: false },
          tryIt: { ...get().tryIt, base: emptyOutput(), adapted: emptyOutput() },
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

// ---- settings and memory -------------------------------------------------------------------------------

export interface SettingsSlice {
  settings: StudioSettings;
  memory: { estimate: MemoryEstimate | null; trainable: TrainableFacts | null; error: Failure | null };
  setLora: (p: Partial<LoraSettings>) => void;
  setOptim: (p: Partial<OptimSettings>) => void;
  /** Sequence length, validation share, packing: the data is tokenized again. */
  setDataSettings: (p: Partial<Pick<SettingsSlice['settings'], 'seqLen' | 'validationShare' | 'pack'>>) => void;
  estimateMemory: () => void;
}

export const createSettingsSlice: Creator<SettingsSlice> = (set, get) => {
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

// ---- data --------------------------------------------------------------------------------------------

export type DatasetResult = Omit<ResponseFor<'loadDataset'>, 'id' | 'type'>;

export interface DataSlice {
  data: {
    status: 'idle' | 'loading' | 'ready' | 'error';
    /** The text the user chose (or the demo), kept so a new model or sequence length can tokenize it again. */
    source: { name: string; text: string; demo: boolean } | null;
    result: DatasetResult | null;
    error: Failure | null;
  };
  /** Use this text as the training data (a dropped file, a pasted text). */
  setDataText: (name: string, text: string) => Promise<void>;
  useDemoData: () => Promise<void>;
  /** Tokenize the current text with the loaded model (the demo when none was chosen). */
  loadData: () => Promise<void>;
}

export const createDataSlice: Creator<DataSlice> = (set, get) => {
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

// ---- training ----------------------------------------------------------------------------------------

export type TrainStopped = Omit<ResponseFor<'train'>, 'id'>;

/** The adapter the engine holds: its settings, and where it came from when it came from the library. */
export interface HeldAdapter {
  lora: LoraSettings;
  /** The library entry it was loaded from (Load), or null for one trained here. */
  from: { id: string; name: string } | null;
  /** Said when it fits the model but names another base model. */
  note: string | null;
}

export interface TrainSlice {
  train: {
    status: 'idle' | 'starting' | 'running' | 'paused' | 'stopping' | 'finished' | 'error';
    /** What the current (or last) run does: a fresh adapter, the held one further, or a checkpoint resumed. */
    kind: 'fresh' | 'continue' | 'resume';
    stopped: TrainStopped | null;
    error: Failure | null;
    /** Steps of the adapter the engine holds; null while there is none. */
    adapterSteps: number | null;
    adapter: HeldAdapter | null;
    /** The latest checkpoint of the running run that reached the library, or why the latest one did not. */
    checkpoint: { step: number | null; error: string | null } | null;
    /** The library entry the run writes to, once it has written; and whether it can resume from there. */
    runEntryId: string | null;
    resumable: boolean;
    saving: boolean;
    saved: { name: string; id: string } | null;
  };
  startTraining: () => Promise<void>;
  /** Train the held adapter for settings.optim.steps more steps (fresh optimizer and schedule). */
  continueTraining: () => Promise<void>;
  pauseTraining: () => Promise<void>;
  resumeTraining: () => Promise<void>;
  stopTraining: () => Promise<void>;
  saveAdapter: (name: string) => Promise<boolean>;
  /** Put a library adapter into the loaded model (the engine checks that it fits); its settings and history come along. */
  loadAdapter: (id: string) => Promise<boolean>;
  /**
   * Resume the unfinished run of a library entry: load the model and data it trained on when they are not
   * loaded (a local folder or file must be picked again: the message says which), take its settings, show
   * its loss history, and go on to its planned step.
   */
  resumeRun: (id: string) => Promise<void>;
}

const ACTIVE = ['starting', 'running', 'paused', 'stopping'];

export const createTrainSlice: Creator<TrainSlice> = (set, get) => {
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
    stopTraining: () => control('stop'),
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
      set({ settings: { ...get().settings, lora, optim, seqLen: data.seqLen, validationShare: data.validationShare, pack: data.pack } });
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

// ---- try it ------------------------------------------------------------------------------------------

export interface GenerationOutput {
  status: 'idle' | 'running' | 'done' | 'error';
  /** The prompt this output continues. */
  prompt: string;
  /** The continuation so far. */
  text: string;
  tokens: number;
  seconds: number | null;
  error: Failure | null;
  /** The α multiplier this output was generated with (the adapted column). */
  alphaScale: number;
}

const emptyOutput = (): GenerationOutput => ({ status: 'idle', prompt: '', text: '', tokens: 0, seconds: null, error: null, alphaScale: 1 });

export interface TrySlice {
  tryIt: {
    prompt: string;
    maxTokens: number;
    temperature: number;
    topK: number;
    /** Multiplies the adapter's α while generating (0: the base model, 1: as trained). */
    alphaScale: number;
    base: GenerationOutput;
    adapted: GenerationOutput;
  };
  setTry: (p: Partial<Pick<TrySlice['tryIt'], 'prompt' | 'maxTokens' | 'temperature' | 'topK' | 'alphaScale'>>) => void;
  /**
   * Move the α slider (a multiple of the adapter's α: 0 the base model, 1 as trained, up to 2) and continue
   * the prompt again with the adapter at that scale, so the change shows at once. A dragged slider costs at
   * most one generation in flight and one queued (the latest value).
   */
  setAlphaScale: (scale: number) => void;
  /** Continue the prompt with the base model and, when there is an adapter, with it too. */
  generate: () => Promise<void>;
}

export const createTrySlice: Creator<TrySlice> = (set, get) => {
  const output = (which: 'base' | 'adapted', p: Partial<GenerationOutput>) =>
    set({ tryIt: { ...get().tryIt, [which]: { ...get().tryIt[which], ...p } } });
  // Generations go one at a time: they share the GPU, and two on one cached generator would share its buffers.
  let lane: Promise<void> = Promise.resolve();
  const queue = (fn: () => Promise<void>): Promise<void> => (lane = lane.then(fn, fn));
  let alphaQueued = false;
  const canGenerate = () => {
    const { model, train, tryIt } = get();
    return model.status === 'ready' && !!model.facts?.hasTokenizer && train.adapterSteps !== null && tryIt.prompt.trim() !== '' &&
      !['starting', 'running', 'stopping'].includes(train.status);
  };
  const run = async (which: 'base' | 'adapted') => {
    const { prompt, maxTokens, temperature, topK, alphaScale } = get().tryIt;
    output(which, { status: 'running', prompt, text: '', tokens: 0, seconds: null, error: null, alphaScale });
    try {
      const res = await engine().request(
        { type: 'generate', prompt, maxTokens, temperature, topK, withAdapter: which === 'adapted', alphaScale, seed: 0 },
        { onEvent: (ev) => output(which, { text: ev.text }) },
      );
      output(which, { status: 'done', text: res.text, tokens: res.tokens, seconds: res.seconds });
    } catch (err) {
      output(which, { status: 'error', error: toFailure(err) });
    }
  };
  return {
    tryIt: { prompt: 'My fellow Americans,', maxTokens: 24, temperature: 0.7, topK: 40, alphaScale: 1, base: emptyOutput(), adapted: emptyOutput() },
    setTry: (p) => set({ tryIt: { ...get().tryIt, ...p } }),
    setAlphaScale: (scale) => {
      const alphaScale = Math.min(2, Math.max(0, Number.isFinite(scale) ? scale : 1));
      if (alphaScale === get().tryIt.alphaScale) return;
      set({ tryIt: { ...get().tryIt, alphaScale } });
      if (alphaQueued || !canGenerate()) return;
      alphaQueued = true;
      void queue(async () => {
        alphaQueued = false; // a move from here on queues the next run, which reads the latest value
        const { adapted, alphaScale: now } = get().tryIt;
        if (canGenerate() && (adapted.status !== 'done' || adapted.alphaScale !== now)) await run('adapted');
      });
    },
    generate: () =>
      queue(async () => {
        const hasAdapter = get().train.adapterSteps !== null;
        if (!hasAdapter) output('adapted', emptyOutput());
        // The base model's answer first: it is worth seeing while the adapter's is on its way.
        await run('base');
        if (hasAdapter) await run('adapted');
      }),
  };
};
