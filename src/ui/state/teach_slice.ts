// The Teach slice. Three modes: the two worked examples and the playground (a seeded 16×16 layer with r, α
// and seed controls; src/ui/teach/playground.ts). Mode and settings live in the URL hash
// (src/ui/teach/url.ts): they are read once here, when the store is made, and again on hashchange; every
// change writes them back.

import { TEACH_EXAMPLES, type TeachExample } from '../teach_examples';
import { clampSettings, DEFAULT_PLAYGROUND, playgroundLayer, sameSettings, type PlaygroundSettings } from '../teach/playground';
import { readTeachUrl, writeTeachUrl, type TeachMode } from '../teach/url';
import { engine, toFailure } from './shared';
import type { PlaygroundState, SliceCreator, TeachSlice } from './studio_state';

const exampleOf = (mode: TeachMode): TeachExample | null =>
  mode === 'example1' ? TEACH_EXAMPLES[1] : mode === 'example2' ? TEACH_EXAMPLES[2] : null;

export const createTeachSlice: SliceCreator<TeachSlice> = (set, get) => {
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
