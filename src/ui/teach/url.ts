// The Teach panel's state in the URL hash, so a lesson can link to exactly what it shows:
//   #teach?r=4&alpha=8&seed=1                   the playground (the default mode)
//   #teach?mode=example1&r=4&alpha=8&seed=1     a worked example; the playground settings ride along
// Reading accepts any order and clamps bad values (playground.ts: clampSettings). Writing replaces the
// current history entry, never pushes one, and is throttled: a dragged slider must not fill the history
// or trip the browser's limit on history calls (Firefox and Safari throw after ~100 in 10 s).
// A hash that is not `#teach…` (e.g. the skip link's #main) belongs to someone else and is left alone.

import { clampSettings, type PlaygroundSettings } from './playground';

export type TeachMode = 'playground' | 'example1' | 'example2';

export interface TeachUrlState extends PlaygroundSettings {
  mode: TeachMode;
}

const MODES: readonly TeachMode[] = ['playground', 'example1', 'example2'];

export function parseTeachHash(hash: string): TeachUrlState | null {
  const m = /^#teach(?:\?(.*))?$/.exec(hash);
  if (!m) return null;
  const q = new URLSearchParams(m[1] ?? '');
  const mode = q.get('mode');
  return {
    mode: MODES.includes(mode as TeachMode) ? (mode as TeachMode) : 'playground',
    ...clampSettings({ r: q.get('r') ?? undefined, alpha: q.get('alpha') ?? undefined, seed: q.get('seed') ?? undefined }),
  };
}

export function formatTeachHash(s: TeachUrlState): string {
  const q = new URLSearchParams();
  if (s.mode !== 'playground') q.set('mode', s.mode);
  q.set('r', String(s.r));
  q.set('alpha', String(s.alpha));
  q.set('seed', String(s.seed));
  return `#teach?${q}`;
}

/** The teach state in this page's URL, or null when the hash is not a teach link (or there is no page). */
export function readTeachUrl(): TeachUrlState | null {
  return typeof location === 'undefined' ? null : parseTeachHash(location.hash);
}

const WRITE_EVERY_MS = 250;
let pending: string | null = null;
let timer: ReturnType<typeof setTimeout> | null = null;

function flush(): void {
  if (pending === null) return;
  const hash = pending;
  pending = null;
  if (location.hash === hash) return;
  try {
    history.replaceState(history.state, '', `${location.pathname}${location.search}${hash}`);
  } catch {
    // A browser that refuses (too many calls) keeps the old link; the panel itself is unaffected.
  }
}

/** Puts the state in the URL now, or at the end of the current throttle window (only the latest state). */
export function writeTeachUrl(s: TeachUrlState): void {
  if (typeof location === 'undefined') return;
  pending = formatTeachHash(s);
  if (timer) return;
  flush();
  // While writes keep coming, one per window: at most 4 a second, 40 in 10 s.
  const tick = () => {
    timer = pending === null ? null : setTimeout(tick, WRITE_EVERY_MS);
    flush();
  };
  timer = setTimeout(tick, WRITE_EVERY_MS);
}
