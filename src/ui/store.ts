// The studio's one zustand store, built from typed slices (one per panel or concern). Actions live in the
// slices and may be called outside components (`useStudio.getState().initGpu()`). Every engine call goes
// through the EngineClient (the worker); nothing here imports src/gpu/gpu.ts or src/autograd.
// Values that change every training step will not live here as plain state (see STYLE.md: subscribe + ref).

import { create, type StateCreator } from 'zustand';
import { WEBGPU_MISSING_MESSAGE } from '../gpu/errors';
import { LoraStudioError } from '../io/errors';
import { AdapterLibrary, type AdapterSummary, type ImportExpectation, type StorageEstimateLike } from '../io/library';
import { EngineClient, EngineError } from '../worker/client';
import type { EngineErrorCode, GpuInfo, LoraTarget, ModelFacts, ResponseFor } from '../worker/protocol';
import { TEACH_EXAMPLES, type TeachExample, type TeachExampleId } from './teachExamples';
import {
  createDataSlice,
  createModelSlice,
  createSettingsSlice,
  createTrainSlice,
  createTrySlice,
  type DataSlice,
  type ModelSlice,
  type SettingsSlice,
  type TrainSlice,
  type TrySlice,
} from './studioSlices';
import { clampSettings, DEFAULT_PLAYGROUND, playgroundLayer, sameSettings, type PlaygroundSettings } from './teach/playground';
import { readTeachUrl, writeTeachUrl, type TeachMode } from './teach/url';

export interface Failure {
  code: EngineErrorCode;
  message: string;
}

let client: EngineClient | null = null;

/** The engine worker, started on first use (so importing the store starts nothing). */
export function engine(): EngineClient {
  return (client ??= new EngineClient());
}

export function toFailure(err: unknown): Failure {
  if (err instanceof EngineError) return { code: err.code, message: err.message };
  return { code: 'internal', message: err instanceof Error ? err.message : String(err) };
}

// ---- GPU -------------------------------------------------------------------------------------------------

export interface GpuSlice {
  gpu: { status: 'idle' | 'starting' | 'ready' | 'error'; info: GpuInfo | null; error: Failure | null };
  /** Open the device in the worker; does nothing while starting or once ready. */
  initGpu: () => Promise<void>;
}

/** Opening a device can take a while on a cold driver; requestAdapter itself times out in the worker at 10 s. */
const INIT_TIMEOUT_MS = 30_000;

export const createGpuSlice: StateCreator<StudioState, [], [], GpuSlice> = (set, get) => ({
  gpu: { status: 'idle', info: null, error: null },
  initGpu: async () => {
    const { status } = get().gpu;
    if (status === 'starting' || status === 'ready') return;
    // Checked here too, not only in the worker: a page without navigator.gpu need not start a worker to learn it.
    if (!(navigator as { gpu?: GPU }).gpu) {
      set({ gpu: { status: 'error', info: null, error: { code: 'webgpu-missing', message: WEBGPU_MISSING_MESSAGE } } });
      return;
    }
    set({ gpu: { status: 'starting', info: null, error: null } });
    try {
      const res = await engine().request({ type: 'init' }, { timeoutMs: INIT_TIMEOUT_MS });
      set({ gpu: { status: 'ready', info: res.gpu, error: null } });
    } catch (err) {
      set({ gpu: { status: 'error', info: null, error: toFailure(err) } });
    }
  },
});

// ---- Teach -----------------------------------------------------------------------------------------------
// Three modes: the two worked examples and the playground (a seeded 16×16 layer with r, α and seed
// controls; src/ui/teach/playground.ts). Mode and settings live in the URL hash (src/ui/teach/url.ts): they
// are read once here, when the store is made, and again on hashchange; every change writes them back.

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

const exampleOf = (mode: TeachMode): TeachExample | null =>
  mode === 'example1' ? TEACH_EXAMPLES[1] : mode === 'example2' ? TEACH_EXAMPLES[2] : null;

export const createTeachSlice: StateCreator<StudioState, [], [], TeachSlice> = (set, get) => {
  const patch = (p: Partial<TeachSlice['teach']>) => set({ teach: { ...get().teach, ...p } });
  const patchPlayground = (p: Partial<PlaygroundState>) => patch({ playground: { ...get().teach.playground, ...p } });
  const saveUrl = () => writeTeachUrl({ mode: get().teach.mode, ...get().teach.playground.settings });

  // Only the latest example click may write its result: an earlier, slower answer is dropped.
  let latest = 0;

  // The playground keeps at most one request in flight. Changes made meanwhile only update `settings`;
  // when the answer comes back, the latest settings (if they moved) go next, so a dragged slider costs a
  // handful of GPU calls, not one per pixel.
  let inFlight = false;
  let sent: PlaygroundSettings | undefined;
  const computePlayground = async (): Promise<void> => {
    const { settings } = get().teach.playground;
    if (inFlight || get().gpu.status !== 'ready' || sameSettings(sent, settings)) return;
    inFlight = true;
    sent = settings;
    patchPlayground({ running: true });
    let outcome: Partial<PlaygroundState>;
    try {
      const { W, A, B, x } = playgroundLayer(settings.seed, settings.r);
      const res = await engine().request({ type: 'loraLinear', W, A, B, x, alpha: settings.alpha });
      outcome = { result: { ...res, settings }, error: null };
    } catch (err) {
      outcome = { error: toFailure(err) };
    }
    inFlight = false;
    const moved = !sameSettings(settings, get().teach.playground.settings);
    patchPlayground({ ...outcome, running: moved });
    if (moved) void computePlayground();
  };

  const fromUrl = readTeachUrl();
  const mode = fromUrl?.mode ?? 'playground';
  return {
    teach: {
      mode,
      example: exampleOf(mode),
      result: null,
      running: false,
      error: null,
      playground: { settings: fromUrl ? clampSettings(fromUrl) : DEFAULT_PLAYGROUND, result: null, running: false, error: null },
    },
    loadExample: async (id) => {
      const example = TEACH_EXAMPLES[id];
      const ticket = ++latest;
      patch({ mode: `example${id}`, example, result: null, running: true, error: null });
      saveUrl();
      try {
        const { W, A, B, x, alpha } = example;
        const result = await engine().request({ type: 'loraLinear', W, A, B, x, alpha });
        if (ticket === latest) patch({ result, running: false, error: null });
      } catch (err) {
        if (ticket === latest) patch({ result: null, running: false, error: toFailure(err) });
      }
    },
    openPlayground: () => {
      latest++; // an example still computing must not write over the panel
      patch({ mode: 'playground', example: null, result: null, running: false, error: null });
      saveUrl();
      void computePlayground();
    },
    setPlayground: (p) => {
      const settings = clampSettings({ ...get().teach.playground.settings, ...p });
      if (sameSettings(get().teach.playground.settings, settings)) return;
      patchPlayground({ settings });
      saveUrl();
      void computePlayground();
    },
    restoreTeach: () => {
      const state = readTeachUrl();
      if (!state) return;
      const { mode: next, ...settings } = state;
      const { teach } = get();
      if (!sameSettings(teach.playground.settings, settings)) patchPlayground({ settings });
      if (next !== teach.mode) {
        latest++;
        patch({ mode: next, example: exampleOf(next), result: null, running: false, error: null });
      }
      get().syncTeach();
    },
    syncTeach: () => {
      const { teach, gpu, loadExample } = get();
      if (gpu.status !== 'ready') return;
      if (teach.mode === 'playground') void computePlayground();
      else if (!teach.result && !teach.running && !teach.error) void loadExample(teach.mode === 'example1' ? 1 : 2);
    },
  };
};

// ---- Library ---------------------------------------------------------------------------------------------
// The adapter library lives in IndexedDB, not on the GPU, so the page talks to it directly (src/io/library.ts
// serialises page and worker writes with Web Locks). Downloads are the panel's job: these actions only
// return the bytes.

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

/** What an imported adapter must fit: the loaded model's name, layers and projection shapes (as config.ts's projectionDims). */
export function importExpectation(m: ModelFacts): ImportExpectation {
  const q = m.heads * m.headDim, kv = m.kvHeads * m.headDim;
  const shapes: Record<LoraTarget, { inFeatures: number; outFeatures: number }> = {
    q_proj: { inFeatures: m.hidden, outFeatures: q },
    k_proj: { inFeatures: m.hidden, outFeatures: kv },
    v_proj: { inFeatures: m.hidden, outFeatures: kv },
    o_proj: { inFeatures: q, outFeatures: m.hidden },
    gate_proj: { inFeatures: m.hidden, outFeatures: m.intermediate },
    up_proj: { inFeatures: m.hidden, outFeatures: m.intermediate },
    down_proj: { inFeatures: m.intermediate, outFeatures: m.hidden },
  };
  return { baseModel: m.name, numLayers: m.layers, shapes: (t) => shapes[t] };
}

let adapterLibrary: AdapterLibrary | null = null;

/** The page's handle on the IndexedDB library, opened on first use. */
export function library(): AdapterLibrary {
  return (adapterLibrary ??= new AdapterLibrary());
}

function libraryFailure(err: unknown): Failure {
  if (err instanceof LoraStudioError) return { code: err.code, message: err.message };
  return toFailure(err);
}

export const createLibrarySlice: StateCreator<StudioState, [], [], LibrarySlice> = (set, get) => {
  const patch = (p: Partial<LibrarySlice['library']>) => set({ library: { ...get().library, ...p } });
  /** Re-reads the list and the storage estimate; failures of the estimate are not worth a message. */
  const reload = async () => {
    const items = await library().list();
    const storage = (await navigator.storage?.estimate?.().catch(() => null)) ?? null;
    patch({ status: 'ready', items, storage });
  };
  const attempt = async (what: () => Promise<string | null>): Promise<boolean> => {
    try {
      const notice = await what();
      patch({ error: null, notice });
      return true;
    } catch (err) {
      patch({ error: libraryFailure(err), notice: null });
      return false;
    }
  };
  return {
    library: { status: 'idle', items: [], storage: null, importing: false, error: null, notice: null },
    refreshLibrary: async () => {
      if (get().library.status === 'idle') patch({ status: 'loading' });
      try {
        await reload();
      } catch (err) {
        patch({ status: 'error', error: libraryFailure(err) });
      }
    },
    importAdapter: async (files, given) => {
      const facts = get().model.facts;
      const expected = given ?? (facts ? importExpectation(facts) : undefined);
      patch({ importing: true });
      await attempt(async () => {
        const zip = files.length === 1 && /\.zip$/i.test(files[0].name) ? files[0] : null;
        const entry = zip
          ? await library().importPeft(new Uint8Array(await zip.arrayBuffer()), expected, { fileName: zip.name })
          : await library().importPeft(new Map(await Promise.all(files.map(async (f) => [f.name, new Uint8Array(await f.arrayBuffer())] as const))), expected);
        await reload();
        return `Imported “${entry.name}”.`;
      });
      patch({ importing: false });
    },
    renameAdapter: (id, name) =>
      attempt(async () => {
        const renamed = await library().rename(id, name);
        await reload();
        return `Renamed to “${renamed.name}”.`;
      }),
    deleteAdapter: async (id) => {
      const name = get().library.items.find((a) => a.id === id)?.name ?? 'the adapter';
      await attempt(async () => {
        await library().delete(id);
        await reload();
        return `Deleted “${name}”.`;
      });
    },
    exportAdapter: async (id) => {
      try {
        return await library().exportPeft(id);
      } catch (err) {
        patch({ error: libraryFailure(err), notice: null });
        return null;
      }
    },
    dismissLibraryMessage: () => patch({ error: null, notice: null }),
  };
};

// ---- the store -------------------------------------------------------------------------------------------

export type StudioState = GpuSlice & TeachSlice & LibrarySlice & StudioFlowState;

/** The main flow's slices (studioSlices.ts): model, settings, data, training, "Try it". */
type StudioFlowState = ModelSlice & SettingsSlice & DataSlice & TrainSlice & TrySlice;

export const useStudio = create<StudioState>()((...a) => ({
  ...createGpuSlice(...a),
  ...createTeachSlice(...a),
  ...createLibrarySlice(...a),
  ...createModelSlice(...a),
  ...createSettingsSlice(...a),
  ...createDataSlice(...a),
  ...createTrainSlice(...a),
  ...createTrySlice(...a),
}));
