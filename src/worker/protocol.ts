// The messages between the UI thread and the engine worker: one union of requests, one of responses
// (as web-llm's message.ts). Every request carries an `id`; the worker answers it with exactly one response
// with the same `id`, either the request's own result type (see ResponseFor) or an `error`.
// This file holds types only, so the UI can import it without pulling the engine into its bundle.
//
// Matrices cross the boundary as number[][] (rows); they are tiny here (teaching examples). Model-sized
// tensors will travel as transferable ArrayBuffers in their own message types.

import type { GpuInfo } from '../gpu/device';
import type { GpuErrorCode } from '../gpu/errors';
import type { ErrorCode } from '../io/errors';

export type { GpuInfo };

/** Rows of a matrix: m[i][j] is row i, column j. */
export type Matrix = number[][];

// ---- requests -----------------------------------------------------------------------------------------

export type EngineRequest = { id: number } & (
  /** Open the GPU device (idempotent). Answered by `ready`. */
  | { type: 'init' }
  /**
   * The LoRA linear y = x·Wᵀ + bias + (α/r)·(x·Aᵀ)·Bᵀ on the GPU. Answered by `loraLinearResult`.
   *   W (OUT, IN) frozen, A (R, IN), B (OUT, R), x (N, IN), bias (OUT); r is A's row count.
   */
  | { type: 'loraLinear'; W: Matrix; A: Matrix; B: Matrix; x: Matrix; alpha: number; bias?: number[] }
);

export type EngineRequestType = EngineRequest['type'];

/** A request as the caller writes it: the client assigns the id. */
export type EngineRequestBody<T extends EngineRequestType = EngineRequestType> = T extends EngineRequestType
  ? Omit<Extract<EngineRequest, { type: T }>, 'id'>
  : never;

// ---- responses ----------------------------------------------------------------------------------------

/** Errors the worker forwards: the engine's typed codes, plus `internal` for a bug and `timeout` (client side). */
export type EngineErrorCode = GpuErrorCode | ErrorCode | 'internal' | 'timeout';

export type EngineResponse = { id: number } & (
  | { type: 'ready'; gpu: GpuInfo }
  | {
      type: 'loraLinearResult';
      y: Matrix; //      (N, OUT)
      deltaW: Matrix; // (OUT, IN) = (α/r)·B·A
      merged: Matrix; // (OUT, IN) = W + ΔW
      /** s = α/r */
      scale: number;
      /** Trainable numbers: LoRA r·(IN + OUT), versus full fine-tuning of W, IN·OUT. */
      params: { lora: number; full: number };
    }
  | { type: 'error'; code: EngineErrorCode; message: string }
);

/** Which response type answers which request type (an `error` can answer any). */
export interface ResponseTypeFor {
  init: 'ready';
  loraLinear: 'loraLinearResult';
}

export type ResponseFor<T extends EngineRequestType> = Extract<EngineResponse, { type: ResponseTypeFor[T] }>;

/** A response as a handler returns it: the worker entry adds the id. */
export type ResponseBody<T extends EngineRequestType> = Omit<ResponseFor<T>, 'id'>;
