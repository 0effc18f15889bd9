// The messages between the UI thread and the engine worker: one union of requests, one of responses
// (as web-llm's message.ts), and one of events. Every request carries an `id`; the worker answers it with
// exactly one response with the same `id`, either the request's own result type (see ResponseFor) or an
// `error`. Long requests (loadModel, train, resumeRun, generate) also stream events carrying their
// request's `id` before that response (see EventFor); the worker posts them as they happen and never
// waits for the UI.
// This file holds types, the list of event names, and the few constants of the engine the UI shows (the
// LoRA targets, the schedules, the WebGPU-missing message), re-exported from below: the UI imports the
// engine through this file only, without pulling the engine into its bundle.
//
// Matrices cross the boundary as number[][] (rows); they are tiny here (teaching examples). Model files
// cross as Blobs (structured clone shares them, it does not copy the bytes).

import type { GpuInfo } from '../gpu/device';
import type { GpuErrorCode } from '../gpu/errors';
import type { DatasetFormat, DatasetStats, PreviewRow } from '../io/dataset';
import type { ErrorCode } from '../io/errors';
import type { LossPoint } from '../io/library';
import type { LoraTarget } from '../io/peft';
import type { BaseDtype } from '../model/causal_lm';
import type { PauseReport, StepReport } from '../train/run';
import type { ScheduleKind } from '../train/schedule';
import type { DataIdentity, LoraSettings, ModelIdentity, OptimSettings, RunSettings } from '../train/settings';

export type { BaseDtype, DataIdentity, GpuInfo, LoraSettings, LossPoint, LoraTarget, ModelIdentity, OptimSettings, RunSettings, ScheduleKind };
export { WEBGPU_MISSING_MESSAGE } from '../gpu/errors';
export { LORA_TARGETS } from '../io/peft';
export { BASE_DTYPES } from '../model/causal_lm';
export { SCHEDULES } from '../train/schedule';

/** Rows of a matrix: m[i][j] is row i, column j. */
export type Matrix = number[][];

// ---- settings shared by several requests --------------------------------------------------------------

/** Where a model comes from. */
export type ModelSourceSpec =
  /** The embedded moby-llama, served under `${baseUrl}models/moby-llama/` (baseUrl: the page's base URL). */
  | { kind: 'default'; baseUrl: string }
  /** A Hugging Face Hub repository, downloaded with progress and kept in the Cache API. */
  | {
      kind: 'hub';
      id: string;
      revision?: string;
      /** An access token for gated or private repositories, sent as `Authorization: Bearer`; held in memory only, never stored. */
      token?: string;
    }
  /** A folder the user picked or dropped: paths relative to the model's root ("config.json", "sub/x"). */
  | { kind: 'files'; label: string; files: { path: string; blob: Blob }[] };

/** What the studio shows about a loaded model. */
export interface ModelFacts {
  /** The folder name, Hub id or "moby-llama": also the adapter's base_model_name_or_path. */
  name: string;
  architecture: string;
  /** Parameters of the base model. */
  params: number;
  layers: number;
  vocab: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  /** Per attention head (usually hidden / heads; some configs set head_dim). */
  headDim: number;
  intermediate: number;
  contextLength: number;
  /** How the weights were stored ("BF16", "F16, F32"). */
  dtype: string;
  /** How the frozen base is held on the GPU: as loadModel asked, else the checkpoint's own dtype. */
  baseDtype: BaseDtype;
  tiedEmbeddings: boolean;
  hasTokenizer: boolean;
}

export interface TrainableFacts {
  /** LoRA parameters for the settings: Σ over layers and targets of r·(in + out). */
  params: number;
  /** params / the base model's parameters. */
  share: number;
}

export interface MemoryEstimate {
  /** Everything the run needs on the GPU at once, in bytes. */
  bytes: number;
  /** The budget the studio allows itself on this GPU (WebGPU does not report the GPU's memory). */
  limitBytes: number;
  /**
   * The engine's own allocation plan (src/model/memory.ts), by what the bytes hold: adapter is LoRA A and B
   * with their gradients, optimizer AdamW's moments and the last-good copies, activations the tapes' pooled
   * buffers, other the uniforms, ids, targets and loss.
   */
  breakdown: { weights: number; adapter: number; optimizer: number; activations: number; other: number };
  /** The largest single buffer the run needs, against the device's maxBufferSize. */
  largestBuffer: number;
  maxBufferSize: number;
  /** Whether a trainer of these shapes has already been built on this GPU (the figures are the plan's either way). */
  measured: boolean;
  trainable: TrainableFacts;
  /** null when it fits; else what to change, for the disabled Start button (it names `alternatives`). */
  refusal: string | null;
  /** When the memory refuses: settings that would fit, the cheapest first (none when nothing near does). */
  alternatives: MemoryAlternative[];
}

/** A change of settings that would fit where the asked ones do not, with the memory it needs. */
export interface MemoryAlternative {
  /** The run's settings to change: recompute on, a smaller batch (with more accumulation to keep the rows a step). */
  optim: Partial<OptimSettings>;
  /** Reload the model with this base (NF4), when that is part of it. */
  baseDtype?: BaseDtype;
  bytes: number;
  /** As the refusal says it: "turn on “Recompute activations”", "use batch 2 with accumulation 4". */
  label: string;
  /** What else to know ("the same 8 rows a step"). */
  note?: string;
}

/** What the Library panel exports through the worker (PEFT files are the page's own: io/library.ts exportPeft). */
export type StudioExportFormat = 'gguf' | 'mlx' | 'merged' | 'recipe';

export type TrainStopReason = 'done' | 'stopped' | 'nan' | 'device-lost';

/**
 * One adapter of a live blend in Try it: a library entry attached to the loaded model (attachAdapter), or
 * (adapterId null) the adapter the engine holds; `weight` multiplies its scale, as PEFT's
 * add_weighted_adapter "cat" does (ΔW = Σ wᵢ·sᵢ·Bᵢ·Aᵢ): any finite number, negative subtracts, 0 leaves it out.
 */
export interface BlendWeight {
  adapterId: string | null;
  weight: number;
}

/** An adapter of a generation as it really ran: its name ("the adapter" for an unnamed held one) and weight. */
export interface RanAdapter extends BlendWeight {
  name: string;
}

/** A library adapter attached to the loaded model for Try it. */
export interface AttachedAdapter {
  adapterId: string;
  name: string;
  lora: LoraSettings;
  /** Said when it fits but names another base model. */
  note: string | null;
}

// ---- requests -----------------------------------------------------------------------------------------

export type EngineRequest = { id: number } & (
  /** Open the GPU device (idempotent). Answered by `ready`. */
  | { type: 'init' }
  /**
   * The LoRA linear y = x·Wᵀ + bias + (α/r)·(x·Aᵀ)·Bᵀ on the GPU. Answered by `loraLinearResult`.
   *   W (OUT, IN) frozen, A (R, IN), B (OUT, R), x (N, IN), bias (OUT); r is A's row count.
   */
  | { type: 'loraLinear'; W: Matrix; A: Matrix; B: Matrix; x: Matrix; alpha: number; bias?: number[] }
  /**
   * Load a model (replacing the loaded one, its data and adapter), its frozen base held as `baseDtype`
   * (absent: the checkpoint's own dtype: BF16 → bf16, F16 → f16, F32 or mixed → f32). Streams `progress`;
   * answered by `modelLoaded`.
   */
  | { type: 'loadModel'; source: ModelSourceSpec; lora?: LoraSettings; baseDtype?: BaseDtype }
  /** Tokenize training data with the loaded model's tokenizer. Answered by `datasetLoaded`. */
  | { type: 'loadDataset'; text: string; fileName: string; seqLen: number; validationShare: number; pack: boolean; seed?: number }
  /** GPU memory a run with these settings (optim.recompute included) needs on the loaded model. Answered by `memoryEstimate`. */
  | { type: 'estimateMemory'; lora: LoraSettings; optim: OptimSettings; seqLen: number }
  /**
   * Train on the loaded data: a fresh adapter, or with `continue` the adapter the engine holds (loaded from
   * the library or just trained; `lora` must match its shape) for `optim.steps` more steps with a fresh
   * optimizer and schedule. Streams `trainProgress`; answered by `trainStopped` when it ends. While it runs,
   * the run checkpoints itself into the library (see trainProgress.checkpointStep).
   */
  | { type: 'train'; lora: LoraSettings; optim: OptimSettings; continue?: boolean }
  /**
   * Resume the unfinished run stored in library entry `adapterId` (its TrainingCheckpoint): its weights,
   * AdamW moments, step, schedule and loss history, on the model and data it names (load them first), up to
   * its planned step count. Streams `trainProgress`; answered by `trainStopped`.
   */
  | { type: 'resumeRun'; adapterId: string }
  /** Put library entry `adapterId` into the loaded model as its adapter, after checking it fits. Answered by `adapterLoaded`. */
  | { type: 'loadAdapter'; adapterId: string }
  /** Pause, resume or stop the running training. Answered by `trainState`. */
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'stop' }
  /**
   * Continue a prompt with the base model or with the adapter (its scale multiplied by alphaScale, default 1),
   * or, given `blend`, with exactly those adapters at those weights ([]: the base model; withAdapter and
   * alphaScale then do not apply). temperature 0: greedy; topK 0: no cut. Streams `token`; answered by `generated`.
   */
  | {
      type: 'generate'; prompt: string; maxTokens: number; temperature: number; topK: number; withAdapter: boolean; alphaScale?: number; seed?: number;
      blend?: BlendWeight[];
    }
  /**
   * Attach library entry `adapterId` to the loaded model beside the held adapter, for Try it (after checking
   * it fits, as loadAdapter does): its A and B go to the GPU once; the base model is not uploaded again.
   * Answered by `adaptersAttached` (every attached adapter).
   */
  | { type: 'attachAdapter'; adapterId: string }
  /** Detach an attached adapter (its GPU buffers go back). Answered by `adaptersAttached`. */
  | { type: 'detachAdapter'; adapterId: string }
  /**
   * Save a blend of attached adapters (and the held one, adapterId null) as a new library entry: PEFT's "cat"
   * (src/model/blend.ts), exact at rank Σ rᵢ. Answered by `adapterSaved`.
   */
  | { type: 'saveBlend'; name: string; blend: BlendWeight[] }
  /**
   * Store the current adapter, its steps and loss history in the adapter library under `name`: into the
   * entry its run already writes to (renaming it), else a new one; an unfinished run keeps its checkpoint.
   * Answered by `adapterSaved`.
   */
  | { type: 'saveAdapter'; name: string }
  /**
   * Library entry `adapterId` as files for other tools (worker/exports.ts): a llama.cpp GGUF adapter, an MLX-LM
   * adapter folder (zip), the loaded model with the adapter merged in (zip), or the PEFT + TRL script of its run.
   * gguf, mlx and merged need its base model loaded. Answered by `adapterExported`.
   */
  | { type: 'exportAdapter'; adapterId: string; format: StudioExportFormat }
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
  | { type: 'modelLoaded'; model: ModelFacts; trainable: TrainableFacts | null; seconds: number }
  | {
      type: 'datasetLoaded';
      format: DatasetFormat;
      stats: DatasetStats;
      preview: PreviewRow[];
      /** The first row's first tokens, each decoded on its own: how the tokenizer cuts the text. */
      firstTokens: string[];
      trainRows: number;
      validationRows: number;
      seqLen: number;
    }
  | ({ type: 'memoryEstimate' } & MemoryEstimate)
  | {
      type: 'trainStopped';
      reason: TrainStopReason;
      /** Optimizer steps the kept adapter has had. */
      steps: number;
      lastLoss: number | null;
      /** What happened and what was kept, for the user. */
      message: string;
      /** The library entry the run wrote to (null if it wrote none), and whether it holds a checkpoint to resume. */
      adapterId: string | null;
      resumable: boolean;
    }
  | {
      type: 'adapterLoaded';
      adapterId: string;
      name: string;
      baseModel: string;
      lora: LoraSettings;
      steps: number;
      lossHistory: LossPoint[];
      /** The entry's unfinished run, if it has one (Resume continues it). */
      checkpoint: { step: number; totalSteps: number | null } | null;
      /** Said when the adapter fits but names another base model. */
      note: string | null;
    }
  | { type: 'trainState'; state: 'idle' | 'running' | 'paused' | 'stopping' }
  | {
      type: 'generated'; text: string; tokens: number; seconds: number;
      /** The adapters that acted (weight ≠ 0), as they really ran; [] is the base model. */
      ran: RanAdapter[];
    }
  | { type: 'adaptersAttached'; attached: AttachedAdapter[] }
  | { type: 'adapterSaved'; adapterId: string; name: string; steps: number }
  /** The exported file (a Blob: structured clone shares it) and what the user should know about the conversion. */
  | { type: 'adapterExported'; fileName: string; blob: Blob; notes: string[] }
  | { type: 'error'; code: EngineErrorCode; message: string }
);

/** Which response type answers which request type (an `error` can answer any). */
export interface ResponseTypeFor {
  init: 'ready';
  loraLinear: 'loraLinearResult';
  loadModel: 'modelLoaded';
  loadDataset: 'datasetLoaded';
  estimateMemory: 'memoryEstimate';
  train: 'trainStopped';
  resumeRun: 'trainStopped';
  loadAdapter: 'adapterLoaded';
  pause: 'trainState';
  resume: 'trainState';
  stop: 'trainState';
  generate: 'generated';
  attachAdapter: 'adaptersAttached';
  detachAdapter: 'adaptersAttached';
  saveBlend: 'adapterSaved';
  saveAdapter: 'adapterSaved';
  exportAdapter: 'adapterExported';
}

export type ResponseFor<T extends EngineRequestType> = Extract<EngineResponse, { type: ResponseTypeFor[T] }>;

/** A response as a handler returns it: the worker entry adds the id. */
export type ResponseBody<T extends EngineRequestType> = Omit<ResponseFor<T>, 'id'>;

// ---- events -------------------------------------------------------------------------------------------

export type EngineEvent = { id: number } & (
  /** Bytes of one model file read so far (percent when its size is known). */
  | { type: 'progress'; file: string; loaded: number; total?: number; percent?: number }
  /** One optimizer step of a run (src/train/run.ts StepReport: step, loss, validation loss, lr, speed, ETA, checkpoints). */
  | ({ type: 'trainProgress' } & StepReport & RunEntryState)
  /** A pause took hold: the run waits after `step`, and the library holds that step when checkpointStep says so. */
  | ({ type: 'trainPaused' } & PauseReport & RunEntryState)
  /** The continuation so far (decoded whole, so multi-byte characters come out right). */
  | { type: 'token'; tokenId: number; text: string }
);

/** The library entry a run writes to, on each of its events. */
export interface RunEntryState {
  /** The entry, once the run's first write made it (or the resumed run's). */
  adapterId?: string;
  /** The name of the run's entry, deleted from the library (in any tab) while it trained: its writes stopped. */
  entryDeleted?: string;
}

export type EngineEventType = EngineEvent['type'];

/** The names of event messages, so the client can tell them from responses. */
export const EVENT_TYPES: ReadonlySet<string> = new Set<EngineEventType>(['progress', 'trainProgress', 'trainPaused', 'token']);

/** Which event type a request streams. */
export interface EventTypeFor {
  loadModel: 'progress';
  train: 'trainProgress' | 'trainPaused';
  resumeRun: 'trainProgress' | 'trainPaused';
  generate: 'token';
}

export type EventFor<T extends EngineRequestType> = T extends keyof EventTypeFor ? Extract<EngineEvent, { type: EventTypeFor[T] }> : never;

/** An event as a handler emits it: the worker entry adds the id (Omit taken per member, so `type` still tells them apart). */
export type EventBody<T extends EngineRequestType> = OmitId<EventFor<T>>;
type OmitId<E> = E extends unknown ? Omit<E, 'id'> : never;
