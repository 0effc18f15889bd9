// The studio's one zustand store, built from typed slices, one per panel or concern (src/ui/state/: their
// types in studio_state.ts, each slice in its own file). Actions live in the slices and may be called
// outside components (`useStudio.getState().initGpu()`). Every engine call goes through the EngineClient
// (the worker); nothing here imports src/gpu, src/autograd, src/model or src/train. Values that change
// every training step do not live here as plain state (train_live.ts; ARCHITECTURE.md, The studio's state).

import { create } from 'zustand';
import { createDataSlice } from './state/data_slice';
import { createGpuSlice } from './state/gpu_slice';
import { createLibrarySlice } from './state/library_slice';
import { createModelSlice } from './state/model_slice';
import { createSettingsSlice } from './state/settings_slice';
import type { StudioState } from './state/studio_state';
import { createTeachSlice } from './state/teach_slice';
import { createTrainSlice } from './state/train_slice';
import { createTrySlice } from './state/try_slice';

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
