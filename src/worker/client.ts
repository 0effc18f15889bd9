// EngineClient: the UI's handle on the engine worker. It starts the worker, numbers requests, and resolves
// each one with the response carrying its id, typed by the request (protocol.ts: ResponseFor). An `error`
// response rejects with an EngineError carrying the worker's code, so callers handle failures in `catch`.
// Events a request streams before its response (progress, training steps, tokens) go to its `onEvent`.
// It imports no engine code: the worker bundle is built separately by Vite from the URL below.

import { CodedError } from '../util/coded_error';
import { EVENT_TYPES, type EngineErrorCode, type EngineEvent, type EngineRequest, type EngineRequestBody, type EngineResponse, type EventFor, type ResponseFor } from './protocol';

export class EngineError extends CodedError<EngineErrorCode> {
  constructor(code: EngineErrorCode, message: string) {
    super('EngineError', code, message);
  }
}

interface Pending {
  resolve: (res: EngineResponse) => void;
  reject: (err: EngineError) => void;
  onEvent?: (ev: EngineEvent) => void;
  timer?: ReturnType<typeof setTimeout>;
}

export interface RequestOptions<E = never> {
  /** Reject with code `timeout` if no answer comes within this long (the worker's work is not cancelled). */
  timeoutMs?: number;
  /** Called with each event the request streams, before its response. */
  onEvent?: (ev: E) => void;
}

export class EngineClient {
  private worker: Worker;
  private nextId = 1;
  private pending = new Map<number, Pending>();

  constructor() {
    this.worker = new Worker(new URL('./engine.worker.ts', import.meta.url), { type: 'module', name: 'LoraStudio.engine' });
    this.worker.onmessage = (ev: MessageEvent<EngineResponse | EngineEvent>) => {
      const msg = ev.data;
      if (EVENT_TYPES.has(msg.type)) this.pending.get(msg.id)?.onEvent?.(msg as EngineEvent);
      else this.settle(msg as EngineResponse);
    };
    // A worker that fails to load or throws outside a handler leaves every request unanswered.
    this.worker.onerror = (ev: ErrorEvent) => {
      ev.preventDefault();
      this.failAll(new EngineError('internal', `The engine worker stopped (${ev.message || 'it failed to load'}). Reload the page.`));
    };
  }

  request<B extends EngineRequestBody>(body: B, opts: RequestOptions<EventFor<B['type']>> = {}): Promise<ResponseFor<B['type']>> {
    const id = this.nextId++;
    return new Promise<ResponseFor<B['type']>>((resolve, reject) => {
      const p: Pending = { resolve: resolve as (res: EngineResponse) => void, reject, onEvent: opts.onEvent as ((ev: EngineEvent) => void) | undefined };
      if (opts.timeoutMs !== undefined) {
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new EngineError('timeout', `The engine did not answer "${body.type}" within ${opts.timeoutMs} ms. Reload the page; if it happens again, restart the browser.`));
        }, opts.timeoutMs);
      }
      this.pending.set(id, p);
      this.worker.postMessage({ ...body, id } as EngineRequest);
    });
  }

  /** Stop the worker; outstanding requests reject. */
  dispose(): void {
    this.worker.terminate();
    this.failAll(new EngineError('internal', 'The engine was shut down.'));
  }

  private settle(res: EngineResponse): void {
    const p = this.pending.get(res.id);
    if (!p) return; // timed out already
    this.pending.delete(res.id);
    clearTimeout(p.timer);
    if (res.type === 'error') p.reject(new EngineError(res.code, res.message));
    else p.resolve(res);
  }

  private failAll(err: EngineError): void {
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.reject(err); }
    this.pending.clear();
  }
}
