// The studio's one zustand store, built from typed slices (one per panel or concern). Actions live in the
// slices and may be called outside components (`useStudio.getState().initGpu()`). Every engine call goes
// through the EngineClient (the worker); nothing here imports src/gpu/gpu.ts or src/autograd.
// Values that change every training step will not live here as plain state (see STYLE.md: subscribe + ref).

import { create, type StateCreator } from 'zustand';
import { WEBGPU_MISSING_MESSAGE } from '../gpu/errors';
import { EngineClient, EngineError } from '../worker/client';
import type { EngineErrorCode, GpuInfo, ResponseFor } from '../worker/protocol';
import { TEACH_EXAMPLES, type TeachExample, type TeachExampleId } from './teachExamples';

export interface Failure {
  code: EngineErrorCode;
  message: string;
}

let client: EngineClient | null = null;

/** The engine worker, started on first use (so importing the store starts nothing). */
export function engine(): EngineClient {
  return (client ??= new EngineClient());
}

function toFailure(err: unknown): Failure {
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

export type LoraLinearResult = ResponseFor<'loraLinear'>;

export interface TeachSlice {
  teach: { example: TeachExample | null; result: LoraLinearResult | null; running: boolean; error: Failure | null };
  /** Show an example's inputs at once and its outputs when the GPU answers. */
  loadExample: (id: TeachExampleId) => Promise<void>;
}

export const createTeachSlice: StateCreator<StudioState, [], [], TeachSlice> = (set) => {
  // Only the latest click may write its result: an earlier, slower answer is dropped.
  let latest = 0;
  return {
    teach: { example: null, result: null, running: false, error: null },
    loadExample: async (id) => {
      const example = TEACH_EXAMPLES[id];
      const ticket = ++latest;
      set({ teach: { example, result: null, running: true, error: null } });
      try {
        const { W, A, B, x, alpha } = example;
        const result = await engine().request({ type: 'loraLinear', W, A, B, x, alpha });
        if (ticket === latest) set({ teach: { example, result, running: false, error: null } });
      } catch (err) {
        if (ticket === latest) set({ teach: { example, result: null, running: false, error: toFailure(err) } });
      }
    },
  };
};

// ---- the store -------------------------------------------------------------------------------------------

export type StudioState = GpuSlice & TeachSlice;

export const useStudio = create<StudioState>()((...a) => ({
  ...createGpuSlice(...a),
  ...createTeachSlice(...a),
}));
