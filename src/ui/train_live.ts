// Per-step training numbers (loss, validation loss, tokens/s, ETA) for the Train panel, kept OUT of the
// studio store: a step must not re-render the app. The chart subscribes and redraws its canvas; the readout
// subscribes through useThrottled (a few renders a second at most). See ARCHITECTURE.md, The studio's state.
//
// The point arrays grow in place and `version` counts the changes, so a long run does not copy its whole
// history on every step; readers treat them as read-only.

import { useEffect, useState } from 'react';
import { createStore, type StoreApi } from 'zustand/vanilla';
import type { EngineEvent } from '../worker/protocol';

export type TrainProgress = Omit<Extract<EngineEvent, { type: 'trainProgress' }>, 'id' | 'type'>;

export interface LossPoint {
  step: number;
  loss: number;
}

export interface TrainLive {
  train: LossPoint[];
  validation: LossPoint[];
  last: TrainProgress | null;
  /** Steps the run will take (the chart's x range). */
  steps: number;
  /** Steps the adapter had before the points streamed in (a loaded adapter, a resumed run); the readout's count until `last`. */
  base: number;
  version: number;
}

export const trainLive: StoreApi<TrainLive> = createStore<TrainLive>()(() => ({ train: [], validation: [], last: null, steps: 0, base: 0, version: 0 }));

/** A new run of `steps` steps: the chart starts empty. */
export function resetTrainLive(steps: number): void {
  trainLive.setState({ train: [], validation: [], last: null, steps, base: 0, version: trainLive.getState().version + 1 });
}

/**
 * The chart of an adapter that already has a history (loaded from the library, or a run resuming): its
 * points, `done` steps so far, `steps` as the x range. New steps then append (pushTrainProgress).
 */
export function loadTrainLive(history: readonly { step: number; loss: number; split?: 'train' | 'validation' }[], done: number, steps: number): void {
  const train: LossPoint[] = [], validation: LossPoint[] = [];
  for (const p of history) (p.split === 'validation' ? validation : train).push({ step: p.step, loss: p.loss });
  trainLive.setState({ train, validation, last: null, steps: Math.max(steps, done), base: done, version: trainLive.getState().version + 1 });
}

/** A run continuing the current adapter up to step `steps`: the points stay, the x range grows. */
export function extendTrainLive(steps: number): void {
  const s = trainLive.getState();
  trainLive.setState({ steps, base: s.last?.step ?? s.base, last: null, version: s.version + 1 });
}

export function pushTrainProgress(p: TrainProgress): void {
  const s = trainLive.getState();
  s.train.push({ step: p.step, loss: p.loss });
  if (p.valLoss !== undefined && Number.isFinite(p.valLoss)) s.validation.push({ step: p.step, loss: p.valLoss });
  trainLive.setState({ last: p, steps: p.steps, version: s.version + 1 });
}

/** A value derived from a store, re-rendered at most every `ms` (the last change always lands). */
export function useThrottled<S, T>(store: StoreApi<S>, select: (s: S) => T, ms = 250): T {
  const [value, setValue] = useState(() => select(store.getState()));
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | null = null;
    let last = 0;
    const flush = () => {
      timer = null;
      last = performance.now();
      setValue(select(store.getState()));
    };
    const unsubscribe = store.subscribe(() => {
      if (timer !== null) return;
      timer = setTimeout(flush, Math.max(0, ms - (performance.now() - last)));
    });
    flush();
    return () => {
      unsubscribe();
      if (timer !== null) clearTimeout(timer);
    };
    // `select` is expected to be stable (a module-level function).
  }, [store, select, ms]);
  return value;
}
