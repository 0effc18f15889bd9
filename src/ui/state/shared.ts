// What every slice of the studio store shares: the engine worker and the adapter library (one of each per
// page, opened on first use, so importing the store starts nothing), and Failure, how a slice holds an
// error for the view to show. No state lives here.

import { LoraStudioError } from '../../io/errors';
import { AdapterLibrary } from '../../io/library';
import { EngineClient, EngineError } from '../../worker/client';
import type { EngineErrorCode } from '../../worker/protocol';

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

let adapterLibrary: AdapterLibrary | null = null;

/** The page's handle on the IndexedDB library, opened on first use. */
export function library(): AdapterLibrary {
  return (adapterLibrary ??= new AdapterLibrary());
}

/** A failure of the library on the page: its own typed errors keep their code. */
export function libraryFailure(err: unknown): Failure {
  if (err instanceof LoraStudioError) return { code: err.code, message: err.message };
  return toFailure(err);
}

/** The page's base URL, where the embedded model and demo data are served (vite `base: './'`). */
export const baseUrl = () => document.baseURI;
