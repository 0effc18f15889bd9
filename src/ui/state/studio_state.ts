// The shape of the studio's one zustand store: each slice's state and actions, and StudioState, all of them
// together. Types only. The slices (the *_slice.ts files beside this one) implement them and store.ts
// combines them; a slice reaches the others only through get() and set() over StudioState, so the slices
// import this file and no slice imports another's store code: no import cycle.

import type { StateCreator } from 'zustand';
import type { AdapterLibrary, AdapterSummary, ImportExpectation, StorageEstimateLike } from '../../io/library';
import type {
  AttachedAdapter, BaseDtype, GpuInfo, LoraSettings, MemoryAlternative, MemoryEstimate, ModelFacts, ModelIdentity, OptimSettings, RanAdapter, ResponseFor,
  TrainableFacts,
} from '../../worker/protocol';
import type { SettingField, TryField } from '../settings_check';
import type { StudioSettings } from '../studio_defaults';
import type { TeachExample, TeachExampleId } from '../teach_examples';
import type { PlaygroundSettings } from '../teach/playground';
import type { TeachMode } from '../teach/url';
import type { Failure } from './shared';

/** How each slice is made: with set and get over the whole store, returning its own part. */
export type SliceCreator<T> = StateCreator<StudioState, [], [], T>;

export type StudioState = GpuSlice & TeachSlice & LibrarySlice & ModelSlice & SettingsSlice & DataSlice & TrainSlice & TrySlice;

// ---- GPU -------------------------------------------------------------------------------------------------

export interface GpuSlice {
  gpu: { status: 'idle' | 'starting' | 'ready' | 'error'; info: GpuInfo | null; error: Failure | null };
  /** Open the device in the worker; does nothing while starting or once ready. */
  initGpu: () => Promise<void>;
}

// ---- Teach -----------------------------------------------------------------------------------------------

export type LoraLinearResult = ResponseFor<'loraLinear'>;

export interface PlaygroundState {
  settings: PlaygroundSettings;
  /** The GPU's answer for `result.settings`, which trail `settings` while a newer request is on its way. */
  result: (LoraLinearResult & { settings: PlaygroundSettings }) | null;
  /** A request is in flight or waiting for one to return. */
  running: boolean;
  error: Failure | null;
}

export interface TeachSlice {
  teach: {
    mode: TeachMode;
    /** The worked example on show (mode example1/example2) and its GPU result. */
    example: TeachExample | null;
    result: LoraLinearResult | null;
    running: boolean;
    error: Failure | null;
    playground: PlaygroundState;
  };
  /** Show an example's inputs at once and its outputs when the GPU answers. */
  loadExample: (id: TeachExampleId) => Promise<void>;
  openPlayground: () => void;
  /** Change r, α or seed (clamped to their ranges); the GPU recomputes, coalescing a dragged slider. */
  setPlayground: (patch: Partial<PlaygroundSettings>) => void;
  /** Take mode and settings from the URL hash, if it is a teach link, and compute what they show. */
  restoreTeach: () => void;
  /** Compute what the current mode shows if nothing has been asked of the GPU for it yet (call when it is ready). */
  syncTeach: () => void;
}

// ---- Library ---------------------------------------------------------------------------------------------

export interface LibrarySlice {
  library: {
    status: 'idle' | 'loading' | 'ready' | 'error';
    items: AdapterSummary[];
    /** Browser storage in use and available to this site, when the browser says. */
    storage: StorageEstimateLike | null;
    importing: boolean;
    error: Failure | null;
    /** The last thing that went right, for a polite live region ("Imported …"). */
    notice: string | null;
  };
  refreshLibrary: () => Promise<void>;
  /** Re-read the library whenever a tab or worker of this origin changes it; returns the function that stops. */
  watchLibrary: () => () => void;
  /**
   * Imports a .zip or the two PEFT files. With a model loaded (or `expected` given) an adapter for another
   * base model or with shapes that do not fit it is refused with the reason; with none loaded the files are
   * only checked against themselves, and their shapes are checked when the adapter is loaded into a model.
   */
  importAdapter: (files: File[], expected?: ImportExpectation) => Promise<void>;
  renameAdapter: (id: string, name: string) => Promise<boolean>;
  deleteAdapter: (id: string) => Promise<void>;
  exportAdapter: (id: string) => Promise<Awaited<ReturnType<AdapterLibrary['exportPeft']>> | null>;
  dismissLibraryMessage: () => void;
}

// ---- model -----------------------------------------------------------------------------------------------

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
    /** How the next load holds the frozen base weights (the Model panel's choice); null: the checkpoint's own dtype. */
    baseDtype: BaseDtype | null;
    /** The choice the loaded model was loaded with: when it differs from `baseDtype`, the panel offers a reload. */
    loadedBaseDtype: BaseDtype | null;
  };
  /** Load a model, its base held as `model.baseDtype` says. */
  loadModel: (choice: ModelChoice) => Promise<void>;
  /** Load the last model loaded again, with the base dtype now chosen (what it held goes with it, as with any load). */
  reloadModel: () => Promise<void>;
  setHubToken: (token: string) => void;
  setBaseDtype: (dtype: BaseDtype | null) => void;
}

// ---- settings and memory ---------------------------------------------------------------------------------

export interface SettingsSlice {
  /** The values the engine is asked with: the last of each field that was a number in its range. */
  settings: StudioSettings;
  /**
   * What the user typed in each numeric field, kept as typed (never clamped); settings_check.ts judges it.
   * Whatever replaces the settings wholesale (a loaded adapter's, a resumed run's) empties it.
   */
  drafts: Partial<Record<SettingField, string>>;
  memory: { estimate: MemoryEstimate | null; trainable: TrainableFacts | null; error: Failure | null };
  /** Keep the text of a numeric field; its value reaches `settings` when it is a number in the field's own range. */
  setField: (field: SettingField, text: string) => void;
  setLora: (p: Partial<LoraSettings>) => void;
  setOptim: (p: Partial<OptimSettings>) => void;
  /** Sequence length, validation share, packing: the data is tokenized again. */
  setDataSettings: (p: Partial<Pick<SettingsSlice['settings'], 'seqLen' | 'validationShare' | 'pack'>>) => void;
  /** Take a setting the memory estimate says would fit: its run settings at once; an NF4 base as the Model panel's choice, to reload. */
  applyMemoryAlternative: (a: MemoryAlternative) => void;
  estimateMemory: () => void;
}

// ---- data ------------------------------------------------------------------------------------------------

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

// ---- training --------------------------------------------------------------------------------------------

export type TrainStopped = Omit<ResponseFor<'train'>, 'id'>;

/** The adapter the engine holds: its settings, and where it came from when it came from the library. */
export interface HeldAdapter {
  lora: LoraSettings;
  /** The library entry it was loaded from (Load), or null for one trained here; `deleted` once it is gone from the library. */
  from: { id: string; name: string; deleted?: boolean } | null;
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
    /** The name of the run's library entry, deleted (here or in another tab) since the run wrote to it. */
    entryDeleted: string | null;
    /** The step a paused run waits after, once the engine has stopped there (null while the step in flight finishes). */
    pausedAt: number | null;
  };
  /** The library list went from `before` to `after`: the entries named here follow (renamed, or gone). */
  libraryChanged: (before: AdapterSummary[], after: AdapterSummary[]) => void;
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

// ---- try it ----------------------------------------------------------------------------------------------

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
  /** The sampling seed and temperature it was generated with (the seed matters only above temperature 0). */
  seed: number;
  temperature: number;
  /** What it ran, as the engine said once it answered ([]: the base model); null before. */
  ran: RanAdapter[] | null;
  /** What the pane was asked to run (its label until the engine answers). */
  choice: PaneChoice;
}

/**
 * What a comparison pane of Try it runs: the held adapter at the α slider, one attached library adapter as
 * trained (weight 1), or the live blend of every attached adapter at its slider's weight.
 */
export type PaneChoice = 'held' | 'blend' | `adapter:${string}`;

/** A library adapter attached to the loaded model for Try it, with its blend slider's weight. */
export interface TryAdapter extends AttachedAdapter {
  weight: number;
}

export interface TrySlice {
  tryIt: {
    prompt: string;
    maxTokens: number;
    temperature: number;
    topK: number;
    /** The sampling generator's seed: the same seed, prompt and settings give the same text. */
    seed: number;
    /** What the user typed in Try it's numeric fields, kept as typed; settings_check.ts checkTry judges it. */
    drafts: Partial<Record<TryField, string>>;
    /** Multiplies the adapter's α while generating (0: the base model, 1: as trained). */
    alphaScale: number;
    base: GenerationOutput;
    /** The two comparison panes beside the base model's, and what each runs. */
    adapted: GenerationOutput;
    second: GenerationOutput;
    panes: Record<TryPane, PaneChoice>;
    /** Library adapters attached to the loaded model (their A and B on the GPU beside the base weights). */
    attached: TryAdapter[];
    /** While attaching or detaching or saving a blend; and the last refusal or notice about it. */
    attaching: boolean;
    attachError: Failure | null;
    blendNotice: string | null;
  };
  setTry: (p: Partial<Pick<TrySlice['tryIt'], 'prompt'>>) => void;
  /** Keep the text of a numeric Try field; its value is used when it is a number in range. */
  setTryField: (field: TryField, text: string) => void;
  /**
   * Move the α slider (a multiple of the adapter's α: 0 the base model, 1 as trained, up to 2) and continue
   * the prompt again with the adapter at that scale, so the change shows at once. A dragged slider costs at
   * most one generation in flight and one queued (the latest value).
   */
  setAlphaScale: (scale: number) => void;
  /** Continue the prompt with the base model and, when there is an adapter, with it too (nothing while a field is invalid). */
  generate: () => Promise<void>;
  /** The next seed, then generate: another sample of the same prompt (the same text at temperature 0). */
  resample: () => Promise<void>;
  /** Attach a library adapter to the loaded model (the engine refuses one of another base, saying why). */
  attachAdapter: (adapterId: string) => Promise<void>;
  detachAdapter: (adapterId: string) => Promise<void>;
  /** Move an attached adapter's blend weight (any finite number; negative subtracts) and regenerate the panes that show the blend. */
  setBlendWeight: (adapterId: string, weight: number) => void;
  /** Choose what a comparison pane runs. */
  choosePane: (pane: TryPane, choice: PaneChoice) => void;
  /** Save the live blend as a new library entry (PEFT's cat, exact). */
  saveBlend: (name: string) => Promise<void>;
}

/** The comparison panes: `adapted` (the held adapter by default) and `second` (the blend by default). */
export type TryPane = 'adapted' | 'second';
