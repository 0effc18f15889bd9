// The GPU slice: opening the device in the engine worker, and what the page shows of it.

import { WEBGPU_MISSING_MESSAGE } from '../../worker/protocol';
import { engine, toFailure } from './shared';
import type { GpuSlice, SliceCreator } from './studio_state';

/** Opening a device can take a while on a cold driver; requestAdapter itself times out in the worker at 10 s. */
const INIT_TIMEOUT_MS = 30_000;

export const createGpuSlice: SliceCreator<GpuSlice> = (set, get) => ({
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
