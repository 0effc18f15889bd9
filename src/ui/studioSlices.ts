// The studio's main flow as zustand slices: the model (load with progress, facts), the run settings (LoRA
// and optimizer, with the engine's memory estimate), the data (demo or the user's, tokenized by the engine),
// the training run (start, pause, resume, stop, save) and "Try it" (base model and adapter side by side).
// Every engine call goes through the worker (store.ts: engine()); per-step numbers go to trainLive.ts, not
// here. Composed into the one store in store.ts, and imported at run time by store.ts only (the two import
// each other; panels take constants from studioDefaults.ts and only types from here).

import type { StateCreator } from 'zustand';
import type { LoraSettings, MemoryEstimate, ModelFacts, OptimSettings, ResponseFor, TrainableFacts } from '../worker/protocol';
import type { StudioSettings } from './studioDefaults';
import { engine, toFailure, type Failure, type StudioState } from './store';
import { DEFAULT_SETTINGS, DEMO_DATA } from './studioDefaults';
import { pushTrainProgress, resetTrainLive } from './trainLive';

type Creator<T> = StateCreator<StudioState, [], [], T>;

/** The page's base URL, where the embedded model and demo data are served (vite `base: './'`). */
const baseUrl = () => document.baseURI;

// ---- model -------------------------------------------------------------------------------------------

export type ModelChoice =
  | { kind: 'default' }
  | { kind: 'hub'; id: string; revision?: string }
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
  };
  loadModel: (choice: ModelChoice) => Promise<void>;
}

export const createModelSlice: Creator<ModelSlice> = (set, get) => {
  const patch = (p: Partial<ModelSlice['model']>) => set({ model: { ...get().model, ...p } });
  return {
    model: { status: 'idle', label: null, progress: null, facts: null, seconds: null, error: null },
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
          model: { status: 'ready', label: res.model.name, progress: null, facts: res.model, seconds: res.seconds, error: null },
          train: { ...get().train, status: 'idle', stopped: null, error: null, adapterSteps: null, saved: null },
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

export interface TrainSlice {
  train: {
    status: 'idle' | 'starting' | 'running' | 'paused' | 'stopping' | 'finished' | 'error';
    stopped: TrainStopped | null;
    error: Failure | null;
    /** Steps of the adapter the engine holds; null while there is none. */
    adapterSteps: number | null;
    saving: boolean;
    saved: { name: string; id: string } | null;
  };
  startTraining: () => Promise<void>;
  pauseTraining: () => Promise<void>;
  resumeTraining: () => Promise<void>;
  stopTraining: () => Promise<void>;
  saveAdapter: (name: string) => Promise<boolean>;
}

export const createTrainSlice: Creator<TrainSlice> = (set, get) => {
  const patch = (p: Partial<TrainSlice['train']>) => set({ train: { ...get().train, ...p } });
  const control = async (type: 'pause' | 'resume' | 'stop') => {
    try {
      const res = await engine().request({ type });
      if (res.state !== 'idle' && get().train.status !== 'finished') patch({ status: res.state });
    } catch (err) {
      patch({ error: toFailure(err) });
    }
  };
  return {
    train: { status: 'idle', stopped: null, error: null, adapterSteps: null, saving: false, saved: null },
    startTraining: async () => {
      const { status } = get().train;
      if (status === 'starting' || status === 'running' || status === 'paused' || status === 'stopping') return;
      const { lora, optim } = get().settings;
      resetTrainLive(optim.steps);
      patch({ status: 'starting', stopped: null, error: null, saved: null, adapterSteps: 0 });
      try {
        const res = await engine().request({ type: 'train', lora, optim }, {
          onEvent: (ev) => {
            if (get().train.status === 'starting') patch({ status: 'running' });
            pushTrainProgress(ev);
          },
        });
        const { id: _id, ...stopped } = res;
        patch({ status: 'finished', stopped, adapterSteps: res.steps });
      } catch (err) {
        patch({ status: 'error', error: toFailure(err), adapterSteps: get().train.adapterSteps || null });
      }
      get().estimateMemory(); // the trainer's measured activations replace the formula
    },
    pauseTraining: () => control('pause'),
    resumeTraining: () => control('resume'),
    stopTraining: () => control('stop'),
    saveAdapter: async (name) => {
      patch({ saving: true, error: null });
      try {
        const res = await engine().request({ type: 'saveAdapter', name });
        patch({ saving: false, saved: { name: res.name, id: res.adapterId } });
        await get().refreshLibrary();
        return true;
      } catch (err) {
        patch({ saving: false, error: toFailure(err) });
        return false;
      }
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
}

const emptyOutput = (): GenerationOutput => ({ status: 'idle', prompt: '', text: '', tokens: 0, seconds: null, error: null });

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
  /** Continue the prompt with the base model and, when there is an adapter, with it too. */
  generate: () => Promise<void>;
}

export const createTrySlice: Creator<TrySlice> = (set, get) => {
  const output = (which: 'base' | 'adapted', p: Partial<GenerationOutput>) =>
    set({ tryIt: { ...get().tryIt, [which]: { ...get().tryIt[which], ...p } } });
  const run = async (which: 'base' | 'adapted') => {
    const { prompt, maxTokens, temperature, topK, alphaScale } = get().tryIt;
    output(which, { status: 'running', prompt, text: '', tokens: 0, seconds: null, error: null });
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
    generate: async () => {
      const hasAdapter = get().train.adapterSteps !== null;
      if (!hasAdapter) output('adapted', emptyOutput());
      // One after the other: they share the GPU, and the base model's answer is worth seeing first.
      await run('base');
      if (hasAdapter) await run('adapted');
    },
  };
};
