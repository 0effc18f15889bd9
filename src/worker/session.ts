// The studio's engine session: the loaded model and tokenizer, the tokenized data, the adapter being trained
// and the state of its run. Each public method answers one request of protocol.ts and reports streamed
// events through `emit`; it knows nothing of postMessage (engine.worker.ts does), so a Node test can drive
// it on Dawn (tests/worker/session.test.ts).
//
// One model at a time, on a GPU device of its own: loading a model destroys the previous device, which frees
// everything the old model, trainer and generators held. Within a model, the trainer and generators record
// their buffers as they are built (`tracked`) and give them back to the pool when replaced, so repeated runs
// reuse memory instead of growing it.
//
// The run: AdamW with a learning-rate schedule (src/train/schedule.ts), gradient accumulation, and a guard:
// a non-finite loss stops the run and puts back the last adapter whose loss was finite (Trainer.keepLastGood);
// a lost device stops it and keeps the CPU copy of the adapter taken every few seconds, which can still be
// saved. Generation and training share the GPU, so generation waits for a pause.
//
// The library (src/io/library.ts): every run writes itself into one library entry, created at its first
// checkpoint. While it runs (every CHECKPOINT_MS, on pause and on stop) the entry gets the adapter, the
// AdamW moments, the step and the loss history in one record (TrainingCheckpoint, with RunSettings naming
// the model, the data and the schedule), so a closed tab can resume it (resumeRun) and go on exactly as if
// it had never stopped; the library writes crash-safely, so a failed checkpoint (storage full) leaves the
// previous one whole and training goes on. A finished run drops its checkpoint and stays as a plain adapter.
// loadAdapter puts a saved adapter back into the model, after checking its shapes against it; `train` with
// `continue` trains it further (a fresh optimizer and schedule, into a new entry).
//
// The α slider of Try it: generate's alphaScale multiplies the adapter's α, i.e. the scale s = α/r (or α/√r)
// that the LoRA linear applies to (x·Aᵀ)·Bᵀ. It is baked into a generator's recorded program, so each
// scale gets a generator of its own (cached; see generator()), and nothing is retrained.

import type { Gpu } from '../gpu/gpu';
import { GpuError } from '../gpu/errors';
import { parseDataset, type Row } from '../io/dataset';
import { LoraStudioError } from '../io/errors';
import { hubSource } from '../io/hub';
import { type AdapterEntry, type AdapterLibrary, type LossPoint, type TrainingCheckpoint } from '../io/library';
import { folderSource, loadModel, readStreamWithProgress, type ModelFiles, type ReadProgress } from '../io/model_source';
import { adapterConfigToJson, checkAdapterFitsModel, LORA_TARGETS, readAdapter, sameBaseModel, writeAdapter, type AdapterConfig, type AdapterExpectation } from '../io/peft';
import { parseSafetensors, writeSafetensors } from '../io/safetensors';
import type { LoraTokenizer } from '../io/tokenizer';
import { projectionDims, weightShapes, type ModelConfig } from '../model/config';
import { Generator } from '../train/generate';
import { createModel, type CausalLM } from '../model/causal_lm';
import { checkAdapterSettings, initLora } from '../model/lora';
import { batchAt } from '../train/batches';
import { learningRate, SCHEDULES } from '../train/schedule';
import { Evaluator, Trainer } from '../train/trainer';
import type {
  DataIdentity,
  EngineRequest,
  EventBody,
  LoraSettings,
  MemoryEstimate,
  ModelFacts,
  ModelIdentity,
  ModelSourceSpec,
  OptimSettings,
  ResponseBody,
  RunSettings,
  TrainableFacts,
  TrainStopReason,
} from './protocol';

type Req<T extends EngineRequest['type']> = Extract<EngineRequest, { type: T }>;
type Emit<T extends EngineRequest['type']> = (ev: EventBody<T>) => void;

export const DEFAULT_MODEL = { name: 'moby-llama', dir: 'models/moby-llama/', files: ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'] };

/** Progress events per file at most this often (plus each file's last one). */
const PROGRESS_MS = 100;
/** Copy the adapter to the CPU at most this often while training, for a lost device. */
const SNAPSHOT_MS = 5_000;
/** Validation loss: at most this many batches, measured about 20 times a run and at its end. */
const MAX_VAL_BATCHES = 2;
const VAL_POINTS = 10;
/** Generators kept for reuse (by length and adapter scale). */
const MAX_GENERATORS = 4;
/** A running run checkpoints into the library at most this often (and on pause and stop). */
const CHECKPOINT_MS = 30_000;
const GIB = 2 ** 30;

/** Something built on the GPU together with every pooled buffer it took, to give back when it is dropped. */
interface Tracked<T> {
  value: T;
  buffers: GPUBuffer[];
}

/**
 * Runs `make` while recording each buffer gpu.buffer() hands out (Trainer, Evaluator and Generator take all
 * of theirs there: parameters' gradients, optimizer moments, the tape's activations, uniforms).
 */
function tracked<T>(gpu: Gpu, make: () => T): Tracked<T> {
  const buffers: GPUBuffer[] = [];
  const take = Gpu_buffer(gpu);
  gpu.buffer = (label, bytes, usage) => {
    const b = take(label, bytes, usage);
    buffers.push(b);
    return b;
  };
  try {
    return { value: make(), buffers };
  } finally {
    delete (gpu as { buffer?: unknown }).buffer; // back to the class's method
  }
}

function Gpu_buffer(gpu: Gpu): Gpu['buffer'] {
  return Object.getPrototypeOf(gpu).buffer.bind(gpu);
}

function untrack(gpu: Gpu, t: Tracked<unknown> | null | undefined): void {
  if (t) for (const b of t.buffers) gpu.release(b);
}

const badInput = (message: string): never => {
  throw new LoraStudioError('bad-input', message);
};

/** The files of the embedded model, fetched from the studio's own server with progress. */
function urlSource(baseUrl: string, names: string[], label: string): ModelFiles {
  const known = new Set(names);
  const path = (name: string) => `${label}/${name}`;
  return {
    label,
    list: () => [...names],
    has: (name) => known.has(name),
    path,
    read: async (name, onProgress) => {
      const url = new URL(name, baseUrl).href;
      let res: Response;
      try {
        res = await fetch(url);
      } catch (e) {
        throw new LoraStudioError('bad-input', `${path(name)}: could not fetch it from the studio's server (${(e as Error).message}); reload the page.`, { file: path(name), cause: e });
      }
      if (!res.ok) throw new LoraStudioError('bad-input', `${path(name)}: the studio's server answered HTTP ${res.status}; reload the page.`, { file: path(name) });
      const encoding = res.headers.get('content-encoding');
      const length = Number(res.headers.get('content-length') ?? NaN);
      const total = (!encoding || encoding === 'identity') && Number.isSafeInteger(length) ? length : undefined;
      return res.body ? readStreamWithProgress(res.body, name, total, onProgress) : new Uint8Array(await res.arrayBuffer());
    },
  };
}

/** Base-model parameters: every tensor the config implies. */
function modelParams(c: ModelConfig): number {
  let n = 0;
  for (const shape of weightShapes(c).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

/** LoRA parameters: Σ over layers and targets of r·(in + out). */
export function trainableParams(c: ModelConfig, lora: Pick<LoraSettings, 'targets' | 'r'>): number {
  let perLayer = 0;
  for (const t of lora.targets) {
    const { inFeatures, outFeatures } = projectionDims(c, t);
    perLayer += lora.r * (inFeatures + outFeatures);
  }
  return c.layers * perLayer;
}

function adapterConfig(lora: LoraSettings, baseModel: string): AdapterConfig {
  const targets = [...new Set(lora.targets)];
  for (const t of targets) if (!(LORA_TARGETS as readonly string[]).includes(t)) badInput(`Unknown target module "${t}"; choose from ${LORA_TARGETS.join(', ')}.`);
  // PEFT keeps targets in the order given; the studio uses the model's order, so equal settings give equal files.
  const ordered = LORA_TARGETS.filter((t) => targets.includes(t));
  const cfg: AdapterConfig = { r: lora.r, loraAlpha: lora.alpha, loraDropout: lora.dropout, targetModules: ordered, useRslora: lora.rslora, baseModel };
  checkAdapterSettings(cfg);
  return cfg;
}

function checkOptim(o: OptimSettings): void {
  const whole = (v: number, min: number, what: string) => {
    if (!Number.isSafeInteger(v) || v < min) badInput(`${what} must be a whole number ≥ ${min} (got ${v}).`);
  };
  whole(o.steps, 1, 'Steps');
  whole(o.batchSize, 1, 'Batch size');
  whole(o.gradAccum, 1, 'Gradient accumulation');
  whole(o.warmupSteps, 0, 'Warm-up steps');
  if (!Number.isInteger(o.seed)) badInput(`The seed must be a whole number (got ${o.seed}).`);
  if (!(Number.isFinite(o.lr) && o.lr > 0)) badInput(`The learning rate must be a number > 0 (got ${o.lr}); 1e-4 to 1e-3 is usual for LoRA.`);
  if (!(Number.isFinite(o.maxGradNorm) && o.maxGradNorm >= 0)) badInput(`Gradient clipping must be a number ≥ 0 (0: off; got ${o.maxGradNorm}).`);
  if (!SCHEDULES.includes(o.schedule)) badInput(`Unknown schedule "${o.schedule}"; choose ${SCHEDULES.join(', ')}.`);
}

/** cyrb53: a 53-bit hash of a string, as hex. Enough to tell one dataset text from another; not cryptographic. */
export function textHash(text: string): string {
  let h1 = 0xdeadbeef, h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16);
}

function modelIdentity(spec: ModelSourceSpec): ModelIdentity {
  if (spec.kind === 'hub') return { kind: 'hub', id: spec.id.trim(), ...(spec.revision?.trim() ? { revision: spec.revision.trim() } : {}) };
  if (spec.kind === 'files') return { kind: 'files', label: spec.label || 'folder' };
  return { kind: 'default' };
}

export function sameModel(a: ModelIdentity, b: ModelIdentity): boolean {
  if (a.kind === 'hub' && b.kind === 'hub') return a.id === b.id && (a.revision || 'main') === (b.revision || 'main');
  if (a.kind === 'files' && b.kind === 'files') return a.label === b.label;
  return a.kind === b.kind;
}

/** A model identity in words, for messages: "moby-llama (built in)", "the Hub model org/x", "the folder “x”". */
export function describeModel(m: ModelIdentity): string {
  if (m.kind === 'hub') return `the Hub model ${m.id}${m.revision ? `@${m.revision}` : ''}`;
  if (m.kind === 'files') return `the folder “${m.label}”`;
  return `${DEFAULT_MODEL.name} (built in)`;
}

/** What differs between the data a run trained on and the loaded data, in words; [] when they are the same. */
export function dataDifferences(want: DataIdentity, have: DataIdentity): string[] {
  const out: string[] = [];
  if (want.name !== have.name) out.push(`the file is “${have.name}”, not “${want.name}”`);
  else if (want.chars !== have.chars || want.hash !== have.hash) out.push(`“${have.name}” holds other text than when the run started`);
  if (want.seqLen !== have.seqLen) out.push(`the sequence length is ${have.seqLen}, not ${want.seqLen}`);
  if (want.validationShare !== have.validationShare) out.push(`the validation share is ${have.validationShare}, not ${want.validationShare}`);
  if (want.pack !== have.pack) out.push(want.pack ? 'packing is off' : 'packing is on');
  if (want.seed !== have.seed) out.push(`the seed is ${have.seed}, not ${want.seed}`);
  return out;
}

/** The RunSettings stored in a checkpoint, checked field by field (the library stores them as free JSON). */
function parseRunSettings(value: Record<string, unknown>, name: string): RunSettings {
  const s = value as Partial<RunSettings>;
  const ok =
    s.version === 1 && typeof s.origin === 'number' && s.lora !== undefined && Array.isArray(s.lora.targets) && s.optim !== undefined &&
    typeof s.optim.steps === 'number' && s.model !== undefined && typeof s.model.kind === 'string' && s.data !== undefined && typeof s.data.hash === 'string';
  if (!ok) badInput(`The checkpoint of “${name}” was not written by this version of LoRA Studio, so it cannot resume; load the adapter and continue training it instead.`);
  return s as RunSettings;
}

/**
 * Why a stored adapter cannot go into this model, or null when it fits (checkAdapterFitsModel in peft.ts:
 * every factor's rank and size against the model's projections, and its layer count), said in the terms of
 * the library entry the user picked. A different base-model name alone is not a misfit here: the entry was
 * accepted into the library, and loadAdapter warns about the name before it gets this far.
 */
export function adapterMisfit(name: string, cfg: AdapterConfig, weights: Uint8Array, c: ModelConfig, modelName: string): string | null {
  const tensors = parseSafetensors(weights, 'adapter_model.safetensors').tensors;
  const fit = checkAdapterFitsModel(cfg, tensors, c, { modelName });
  if (fit.fits) return null;
  const trained = `“${name}” was trained on ${cfg.baseModel || 'an unnamed model'} with r=${cfg.r} on ${cfg.targetModules.join(', ')}`;
  const remedy = cfg.baseModel && !sameBaseModel(cfg.baseModel, modelName) ? ` Load ${cfg.baseModel} to use it.` : ' Load the model it was trained on to use it.';
  return `${trained}, and does not fit the loaded model: ${fit.refusals.map((e) => e.message).join(' ')}${remedy}`;
}

/** A default name for a run's library entry: the model's short name and the local time it started. */
function runName(model: string): string {
  const d = new Date();
  const two = (n: number) => String(n).padStart(2, '0');
  return `${model.split('/').pop()} run ${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

const MOMENT_NAMES = { m: 'exp_avg', v: 'exp_avg_sq' } as const; // torch.optim.AdamW's state names

/**
 * The GPU memory the studio lets a run use. WebGPU does not say how much memory a GPU has, so this is a
 * conservative budget: 4 GiB, or half the machine's memory where the browser reports less (integrated GPUs
 * and SwiftShader share it).
 */
function memoryBudget(): number {
  const gb = (globalThis.navigator as { deviceMemory?: number } | undefined)?.deviceMemory;
  return Math.min(4 * GIB, gb ? (gb * GIB) / 2 : 4 * GIB);
}

/**
 * Activation and gradient bytes a (B, T) step needs at its peak, by formula (the tape's exact figure is used
 * once a trainer of the same shape has been built): per layer the tensors the backward reads (normed inputs,
 * q/k/v before and after rotation, attention output and statistics, the MLP's gate, up and product, the
 * residuals, the LoRA intermediates and dropout copies), plus one layer's gradients in flight and the LM
 * head's logits chunk with its gradient.
 */
function activationBytes(c: ModelConfig, lora: LoraSettings, N: number, maxLogitsBytes: number): number {
  const C = c.hidden, Q = c.heads * c.headDim, KV = c.kvHeads * c.headDim, I = c.intermediate;
  let loraFloats = 0;
  for (const t of lora.targets) loraFloats += lora.r + (lora.dropout > 0 ? projectionDims(c, t).inFeatures : 0);
  const perLayer = N * (6 * C + 3 * Q + 3 * KV + 3 * I + 2 * c.heads + 2 + loraFloats);
  const backward = N * (2 * C + Q + 2 * KV + 2 * I);
  const vc = Math.min(c.vocab, Math.max(1, Math.floor(maxLogitsBytes / (4 * N))));
  return 4 * (c.layers * perLayer + backward + 2 * N * vc + 4 * N * C);
}

const mb = (bytes: number) => `${Math.ceil(bytes / 1e6).toLocaleString('en-US')} MB`;

interface Loaded {
  gpu: Gpu;
  model: CausalLM;
  config: ModelConfig;
  tokenizer?: LoraTokenizer;
  facts: ModelFacts;
  identity: ModelIdentity;
}

/** A run's plan, kept while its trainer holds the moments of the current adapter and it can go on. */
interface RunPlan {
  lora: LoraSettings;
  optim: OptimSettings;
  /** Adapter steps when the run began (RunSettings.origin). */
  origin: number;
  data: DataIdentity;
}

/** How a run starts: a fresh adapter, the held one further, or a checkpoint from the library. */
type RunStart =
  | { kind: 'fresh' | 'continue'; lora: LoraSettings; optim: OptimSettings }
  | {
      kind: 'resume';
      lora: LoraSettings;
      optim: OptimSettings;
      origin: number;
      weights: Map<string, Float32Array>;
      moments: Map<string, { m: Float32Array; v: Float32Array }>;
      steps: number;
      history: LossPoint[];
      entry: { id: string; name: string };
    };

export interface SessionOptions {
  /** How often a running run checkpoints into the library, in ms (default 30 s; 0: after every step). */
  checkpointEveryMs?: number;
}

interface Run {
  state: 'running' | 'paused' | 'stopping';
  wake: (() => void) | null;
}

interface CachedGenerator extends Tracked<Generator> {
  uses: number;
}

export class Session {
  private loaded: Loaded | null = null;
  private data: { train: Row[]; validation: Row[]; seqLen: number; identity: DataIdentity } | null = null;
  /** The adapter on the GPU (model.adapter, kept here unscaled) and what it has been through. */
  private adapter: AdapterConfig | null = null;
  private steps = 0;
  private history: LossPoint[] = [];
  /** The library entry the current adapter's run writes to (null: none yet). */
  private entry: { id: string; name: string } | null = null;
  /** The library entry the current adapter was loaded from, for the name of a continued run. */
  private loadedFrom: { id: string; name: string } | null = null;
  /** Set while the current adapter's run can go on (a checkpoint of it can resume). */
  private plan: RunPlan | null = null;
  /** Library writes, one at a time, so a checkpoint and a save never both create an entry. */
  private writes: Promise<unknown> = Promise.resolve();
  /** The adapter on the CPU, for a lost device. */
  private snapshot: Map<string, Float32Array> | null = null;
  private deviceLost: string | null = null;
  private run: Run | null = null;
  private trainer: Tracked<Trainer> | null = null;
  private evaluator: Tracked<Evaluator> | null = null;
  private generators = new Map<string, CachedGenerator>();
  private generating = 0;
  /** Trainer.transientBytes by the shape that determines it. */
  private measured = new Map<string, number>();

  private readonly checkpointEveryMs: number;

  constructor(
    private readonly openDevice: () => Promise<Gpu>,
    private readonly library: () => AdapterLibrary,
    options: SessionOptions = {},
  ) {
    this.checkpointEveryMs = options.checkpointEveryMs ?? CHECKPOINT_MS;
  }

  // ---- model ------------------------------------------------------------------------------------------

  async loadModel(req: Req<'loadModel'>, emit: Emit<'loadModel'>): Promise<ResponseBody<'loadModel'>> {
    this.refuseWhileBusy('load another model');
    const t0 = performance.now();
    const source = await this.source(req.source);
    // The weights' stored dtype, from the safetensors headers as the files go by.
    const dtypes = new Set<string>();
    const read = source.read;
    const watched: ModelFiles = {
      ...source,
      read: async (name, onProgress) => {
        const bytes = await read(name, onProgress);
        if (name.endsWith('.safetensors')) for (const t of parseSafetensors(bytes, source.path(name)).tensors.values()) dtypes.add(t.dtype);
        return bytes;
      },
    };
    let last = 0;
    const onProgress = (p: ReadProgress) => {
      const now = performance.now();
      if (p.percent !== 100 && now - last < PROGRESS_MS) return;
      last = now;
      emit({ type: 'progress', file: p.file, loaded: p.loaded, total: p.total, percent: p.percent });
    };
    // Everything is read and checked before the old model goes: a model that fails to load changes nothing.
    const { config, weights, tokenizer } = await loadModel(watched, { onProgress });

    this.unload();
    const gpu = await this.openDevice();
    let model: CausalLM;
    try {
      model = await gpu.checked(`Loading ${source.label}`, () => createModel(gpu, config, weights));
    } catch (e) {
      gpu.destroy();
      throw e;
    }
    const facts: ModelFacts = {
      name: source.label,
      architecture: config.architecture,
      params: modelParams(config),
      layers: config.layers,
      vocab: config.vocab,
      hidden: config.hidden,
      heads: config.heads,
      kvHeads: config.kvHeads,
      headDim: config.headDim,
      intermediate: config.intermediate,
      contextLength: config.maxPositions,
      dtype: [...dtypes].sort().join(', ') || 'unknown',
      tiedEmbeddings: config.tied,
      hasTokenizer: tokenizer !== undefined,
    };
    this.loaded = { gpu, model, config, tokenizer, facts, identity: modelIdentity(req.source) };
    return { type: 'modelLoaded', model: facts, trainable: req.lora ? this.trainable(req.lora) : null, seconds: (performance.now() - t0) / 1000 };
  }

  private async source(spec: ModelSourceSpec): Promise<ModelFiles> {
    switch (spec.kind) {
      case 'default':
        return urlSource(new URL(DEFAULT_MODEL.dir, spec.baseUrl).href, DEFAULT_MODEL.files, DEFAULT_MODEL.name);
      case 'hub':
        return hubSource(spec.id.trim(), { revision: spec.revision?.trim() || undefined, token: spec.token || undefined });
      case 'files':
        if (spec.files.length === 0) return badInput('The folder is empty: pick the folder that holds config.json and the model.safetensors weights.');
        return folderSource(new Map(spec.files.map((f) => [f.path, f.blob])), spec.label || 'folder');
      default:
        return badInput(`Unknown model source ${JSON.stringify((spec as { kind: unknown }).kind)}.`);
    }
  }

  /** Drop the model and everything built on it; its device goes, and all its memory with it. */
  private unload(): void {
    this.loaded?.gpu.destroy();
    this.loaded = null;
    this.data = null;
    this.adapter = null;
    this.steps = 0;
    this.history = [];
    this.entry = null;
    this.loadedFrom = null;
    this.plan = null;
    this.snapshot = null;
    this.deviceLost = null;
    this.trainer = null;
    this.evaluator = null;
    this.generators.clear();
    this.measured.clear();
  }

  private need(): Loaded {
    if (this.deviceLost) badInput(`The GPU device was lost (${this.deviceLost}). Load the model again; an adapter you trained can still be saved.`);
    if (!this.loaded) badInput('Load a model first.');
    return this.loaded!;
  }

  private trainable(lora: LoraSettings): TrainableFacts {
    const { config, facts } = this.need();
    const params = trainableParams(config, lora);
    return { params, share: params / facts.params };
  }

  private refuseWhileBusy(what: string): void {
    if (this.run) badInput(`Training is running: stop it before you ${what}.`);
    if (this.generating > 0) badInput(`Text is being generated: wait for it to finish before you ${what}.`);
  }

  // ---- data -------------------------------------------------------------------------------------------

  async loadDataset(req: Req<'loadDataset'>): Promise<ResponseBody<'loadDataset'>> {
    const { config, tokenizer } = this.need();
    if (this.run) badInput('Training is running: stop it before you change the data.');
    const data = parseDataset(req.text, req.fileName, tokenizer, {
      seqLen: req.seqLen,
      pack: req.pack,
      validationShare: req.validationShare,
      seed: req.seed ?? 0,
      contextLength: config.maxPositions,
      vocabSize: config.vocab,
    });
    if (data.train.length === 0) badInput(`${req.fileName}: every row went to validation; lower the validation share.`);
    const identity: DataIdentity = {
      name: req.fileName,
      chars: req.text.length,
      hash: textHash(req.text),
      seqLen: req.seqLen,
      validationShare: req.validationShare,
      pack: req.pack,
      seed: req.seed ?? 0,
    };
    this.data = { train: data.train, validation: data.validation, seqLen: req.seqLen, identity };
    const first = data.train[0].ids;
    const firstTokens = tokenizer ? Array.from(first.subarray(0, 24), (id) => tokenizer.decode([id])) : [];
    return {
      type: 'datasetLoaded',
      format: data.format,
      stats: data.stats,
      preview: data.preview,
      firstTokens,
      trainRows: data.train.length,
      validationRows: data.validation.length,
      seqLen: req.seqLen,
    };
  }

  // ---- memory -----------------------------------------------------------------------------------------

  async estimateMemory(req: Req<'estimateMemory'>): Promise<ResponseBody<'estimateMemory'>> {
    return { type: 'memoryEstimate', ...this.estimate(req.lora, req.optim, req.seqLen) };
  }

  private estimate(lora: LoraSettings, optim: Pick<OptimSettings, 'batchSize'>, seqLen: number): MemoryEstimate {
    const { gpu, model, config, facts } = this.need();
    const trainable = this.trainable(lora);
    const N = Math.max(1, optim.batchSize) * Math.max(1, seqLen);
    let weights = 0, largestWeight = 0;
    for (const shape of weightShapes(config).values()) {
      const bytes = 4 * shape.reduce((a, b) => a * b, 1);
      weights += bytes;
      largestWeight = Math.max(largestWeight, bytes);
    }
    const adapter = 4 * trainable.params;
    // Gradients, AdamW's two moments, and the two last-good copies.
    const optimizer = 5 * adapter;
    const key = this.shapeKey(lora, optim.batchSize, seqLen);
    const measured = this.measured.get(key);
    const activations = measured ?? activationBytes(config, lora, N, model.maxLogitsBytes);
    const bytes = weights + adapter + optimizer + activations;
    const limitBytes = memoryBudget();
    const maxBufferSize = gpu.limits.maxBufferSize;
    const largestBuffer = Math.max(largestWeight, Math.min(model.maxLogitsBytes, 4 * N * config.vocab));
    let refusal: string | null = null;
    try {
      adapterConfig(lora, facts.name);
    } catch (e) {
      refusal = (e as Error).message;
    }
    if (refusal === null && largestBuffer > maxBufferSize) {
      refusal = `This model needs a single buffer of ${mb(largestBuffer)}; this GPU allows ${mb(maxBufferSize)} per buffer. Choose a smaller model.`;
    } else if (refusal === null && bytes > limitBytes) {
      refusal = `Needs about ${mb(bytes)} of GPU memory; the studio allows itself ${mb(limitBytes)} here. Lower the batch size or the sequence length (or the rank).`;
    }
    return { bytes, limitBytes, breakdown: { weights, adapter, optimizer, activations }, largestBuffer, maxBufferSize, measured: measured !== undefined, trainable, refusal };
  }

  private shapeKey(lora: LoraSettings, B: number, T: number): string {
    const targets = LORA_TARGETS.filter((t) => lora.targets.includes(t)).join(',');
    return `${B}x${T}/${targets}/r${lora.r}/${lora.dropout > 0 ? 'dropout' : 'plain'}`;
  }

  // ---- training ---------------------------------------------------------------------------------------

  async train(req: Req<'train'>, emit: Emit<'train'>): Promise<ResponseBody<'train'>> {
    this.need();
    this.refuseWhileBusy('start another run');
    if (req.continue) {
      const held = this.adapter;
      if (!held) badInput('There is no adapter to continue: load one from the library or train one first.');
      const want = LORA_TARGETS.filter((t) => req.lora.targets.includes(t)).join(', ');
      const have = LORA_TARGETS.filter((t) => held!.targetModules.includes(t)).join(', ');
      if (want !== have || req.lora.r !== held!.r || req.lora.alpha !== held!.loraAlpha || req.lora.rslora !== held!.useRslora) {
        badInput(
          `The adapter to continue has r=${held!.r}, α=${held!.loraAlpha}${held!.useRslora ? ' (rsLoRA)' : ''} on ${have}; ` +
            'set the LoRA settings back to these to continue it, or start a fresh adapter.',
        );
      }
    }
    return this.runTraining({ kind: req.continue ? 'continue' : 'fresh', lora: req.lora, optim: req.optim }, emit);
  }

  async resumeRun(req: Req<'resumeRun'>, emit: Emit<'resumeRun'>): Promise<ResponseBody<'resumeRun'>> {
    const { config, facts, identity } = this.need();
    this.refuseWhileBusy('resume another run');
    const entry = await this.library().get(req.adapterId);
    const ck = entry.checkpoint;
    if (!ck) badInput(`“${entry.name}” has no unfinished run to resume (it finished, or was saved without its optimizer state). Load it and continue training it instead.`);
    const run = parseRunSettings(ck!.settings, entry.name);
    if (!sameModel(run.model, identity)) {
      badInput(`“${entry.name}” was training on ${describeModel(run.model)}; the loaded model is ${describeModel(identity)}. Load ${describeModel(run.model)} first, then resume.`);
    }
    if (!this.data) badInput(`Load the data “${run.data.name}” first, then resume.`);
    const differ = dataDifferences(run.data, this.data!.identity);
    if (differ.length > 0) {
      badInput(`“${entry.name}” was training on other data: ${differ.join('; ')}. Load “${run.data.name}” with the run's settings, then resume.`);
    }
    const total = run.origin + run.optim.steps;
    if (!(ck!.step >= run.origin && ck!.step < total)) badInput(`The checkpoint of “${entry.name}” is at step ${ck!.step}, outside its run (${run.origin} to ${total}); it cannot resume.`);
    const weights = this.fittingWeights(entry, config, facts.name);
    const stored = parseSafetensors(ck!.optimizer, 'optimizer state');
    const moments = new Map<string, { m: Float32Array; v: Float32Array }>();
    for (const key of weights.keys()) {
      const m = `${MOMENT_NAMES.m}.${key}`, v = `${MOMENT_NAMES.v}.${key}`;
      if (!stored.tensors.has(m) || !stored.tensors.has(v)) badInput(`The checkpoint of “${entry.name}” lacks the optimizer state of ${key}; it cannot resume.`);
      moments.set(key, { m: stored.readF32(m), v: stored.readF32(v) });
    }
    return this.runTraining(
      { kind: 'resume', lora: run.lora, optim: run.optim, origin: run.origin, weights, moments, steps: ck!.step, history: entry.lossHistory, entry: { id: entry.id, name: entry.name } },
      emit,
    );
  }

  /** The loop behind train and resumeRun: one optimizer step per iteration, checkpoints into the library. */
  private async runTraining(start: RunStart, emit: Emit<'train'>): Promise<ResponseBody<'train'>> {
    const { gpu, model, config, facts } = this.need();
    if (!this.data) badInput('Load training data first.');
    const data = this.data!;
    const o = start.optim;
    checkOptim(o);
    const cfg = adapterConfig(start.lora, facts.name);
    const fit = this.estimate(start.lora, o, data.seqLen);
    if (fit.refusal) badInput(fit.refusal);

    // The run exists from here on (before the first await), so a second `train` is refused at once.
    const run: Run = (this.run = { state: 'running', wake: null });
    let reason: TrainStopReason = 'done';
    let message = '';
    let trainSec = 0, pausedSec = 0, lastLoss: number | null = null, lastSnapshot = performance.now();
    let lastCheckpoint = performance.now(), written: number | null = null, checkpointError: string | undefined;
    const t0 = performance.now();
    const startSteps = start.kind === 'resume' ? start.steps : start.kind === 'continue' ? this.steps : 0;
    const origin = start.kind === 'resume' ? start.origin : startSteps;
    const end = origin + o.steps;
    try {
      untrack(gpu, this.trainer);
      untrack(gpu, this.evaluator);
      this.trainer = this.evaluator = null;
      for (const g of this.generators.values()) untrack(gpu, g);
      this.generators.clear();
      if (start.kind === 'resume') {
        model.setAdapter(cfg, start.weights);
        this.history = start.history.map((p) => ({ ...p }));
        this.entry = start.entry;
        this.loadedFrom = null;
        written = start.steps; // the entry holds this step already
      } else if (start.kind === 'fresh') {
        // A fresh adapter: PEFT's init from the seed.
        model.setAdapter(cfg, initLora(config, cfg, o.seed));
        this.history = [];
        this.entry = this.loadedFrom = null;
      } else {
        model.adapter = cfg; // the weights stay; only dropout may have changed
        this.entry = { id: '', name: `${this.loadedFrom?.name ?? this.entry?.name ?? runName(facts.name)} (continued)`.slice(0, 100) };
      }
      this.adapter = cfg;
      this.steps = startSteps;
      this.snapshot = null;
      this.plan = { lora: start.lora, optim: o, origin, data: data.identity };
      const B = o.batchSize, T = data.seqLen, K = o.gradAccum;
      const opt = { kind: 'adamw' as const, lr: o.lr, weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, maxGradNorm: o.maxGradNorm };
      const trainer = (this.trainer = await gpu.checked('Preparing the training step', () =>
        tracked(gpu, () => new Trainer(model, B, T, opt, o.seed, { gradAccum: K, keepLastGood: true })))).value;
      if (start.kind === 'resume') trainer.restoreState(start.steps - origin, start.moments);
      this.measured.set(this.shapeKey(start.lora, B, T), trainer.transientBytes);
      const valB = Math.min(B, data.validation.length);
      const evaluator = valB > 0 ? (this.evaluator = tracked(gpu, () => new Evaluator(model, valB, T))).value : null;
      const valEvery = Math.max(1, Math.ceil(o.steps / VAL_POINTS));
      const checkpoint = async (): Promise<void> => {
        try {
          await this.persist(true);
          written = this.steps;
          checkpointError = undefined;
        } catch (e) {
          if (gpu.lost) throw e;
          checkpointError = `The checkpoint at step ${this.steps} could not be saved (${(e as Error).message})`;
        }
        lastCheckpoint = performance.now();
      };
      while (this.steps < end) {
        if (run.state === 'paused') {
          // A paused tab is often a tab about to close: keep where the run is.
          if (written !== this.steps && this.steps > startSteps) await checkpoint();
          const p0 = performance.now();
          while (run.state === 'paused') await new Promise<void>((wake) => (run.wake = wake));
          pausedSec += (performance.now() - p0) / 1000;
        }
        if (run.state === 'stopping') {
          reason = 'stopped';
          break;
        }
        // s: the run's own step, which indexes the schedule and the data walk (the same after a resume).
        const s = this.steps - origin;
        const lr = learningRate({ lr: o.lr, kind: o.schedule, warmupSteps: o.warmupSteps, steps: o.steps }, s);
        const batches = Array.from({ length: K }, (_, k) => batchAt(data.train, (s * K + k) * B, B, T));
        const s0 = performance.now();
        const loss = await trainer.stepBatches(batches, lr);
        trainSec += (performance.now() - s0) / 1000;
        if (!Number.isFinite(loss)) {
          const failed = this.steps + 1;
          this.steps = origin + trainer.restoreLastGood();
          this.history = this.history.filter((p) => p.step <= this.steps);
          this.plan = null; // the moments took the bad step: this run cannot go on
          reason = 'nan';
          message =
            `The loss became ${loss} at step ${failed}, so training stopped. The adapter from step ${this.steps} (the last with a finite loss) is kept. ` +
            'Lower the learning rate, or turn on gradient clipping, and start again.';
          break;
        }
        this.steps++;
        lastLoss = loss;
        this.history.push({ step: this.steps, loss, split: 'train' });
        let valLoss: number | undefined;
        if (evaluator && ((this.steps - origin) % valEvery === 0 || this.steps === end)) {
          valLoss = await this.validate(evaluator, data.validation, valB, T);
          this.history.push({ step: this.steps, loss: valLoss, split: 'validation' });
        }
        if (performance.now() - lastSnapshot > SNAPSHOT_MS) {
          this.snapshot = await model.readAdapter();
          lastSnapshot = performance.now();
        }
        let checkpointStep: number | undefined;
        if (this.steps < end && performance.now() - lastCheckpoint >= this.checkpointEveryMs) {
          await checkpoint();
          if (written === this.steps) checkpointStep = this.steps;
        }
        const ran = this.steps - startSteps;
        const elapsedSec = (performance.now() - t0) / 1000 - pausedSec;
        emit({
          type: 'trainProgress',
          step: this.steps,
          steps: end,
          loss,
          valLoss,
          lr,
          tokensPerSec: trainSec > 0 ? (ran * K * B * T) / trainSec : 0,
          etaSec: (elapsedSec / ran) * (end - this.steps),
          elapsedSec,
          ...(checkpointStep !== undefined ? { checkpointStep } : {}),
          ...(checkpointError !== undefined ? { checkpointError } : {}),
        });
      }
      this.snapshot = await model.readAdapter();
    } catch (e) {
      if (!(gpu.lost || (e instanceof GpuError && e.code === 'device-lost'))) {
        this.plan = null;
        throw e;
      }
      this.deviceLost = gpu.lost?.message || (e as Error).message;
      this.plan = null;
      reason = 'device-lost';
      message =
        `The GPU device was lost during training (${this.deviceLost}). The adapter as of the last copy ` +
        `(step ${this.steps} or a little before) can still be saved to the library; load the model again to go on.`;
    } finally {
      this.run = null;
    }
    const plural = (n: number) => `${n} step${n === 1 ? '' : 's'}`;
    if (reason === 'done') {
      this.plan = null;
      message = start.kind === 'fresh' ? `Trained ${plural(this.steps)}.` : `Trained to step ${this.steps} of ${end}.`;
    }
    if (reason === 'stopped') message = `Stopped after ${plural(this.steps)}; the adapter is kept${this.steps > startSteps ? ', and the run can resume from the library' : ''}.`;
    // The run's last word in the library: a finished adapter (its checkpoint dropped), or a stopped run's checkpoint.
    let stored = '';
    if (reason === 'done' || (reason === 'stopped' && this.steps > startSteps && written !== this.steps)) {
      try {
        const entry = await this.persist(reason === 'stopped');
        written = this.steps;
        stored = reason === 'done' ? ` It is in the library as “${entry.name}”.` : '';
      } catch (e) {
        stored =
          ` The library could not be updated (${(e as Error).message})` +
          (written !== null ? `; it keeps the checkpoint from step ${written}.` : '.') +
          ' Free some space and save the adapter from here.';
      }
    } else if (checkpointError) {
      stored = ` ${checkpointError}.`;
    }
    return {
      type: 'trainStopped',
      reason,
      steps: this.steps,
      lastLoss,
      message: message + stored,
      adapterId: this.entry?.id || null,
      resumable: this.plan !== null && written === this.steps,
    };
  }

  /** Token-weighted mean loss over the first MAX_VAL_BATCHES batches of validation rows. */
  private async validate(ev: Evaluator, rows: Row[], B: number, T: number): Promise<number> {
    let sum = 0, tokens = 0;
    for (let i = 0; i < MAX_VAL_BATCHES && i * B < rows.length; i++) {
      const { ids, targets } = batchAt(rows, i * B, B, T);
      const r = await ev.loss(ids, targets);
      if (r.tokens > 0) {
        sum += r.loss * r.tokens;
        tokens += r.tokens;
      }
    }
    return tokens > 0 ? sum / tokens : NaN;
  }

  pause(): ResponseBody<'pause'> {
    if (this.run?.state === 'running') this.run.state = 'paused';
    return this.state();
  }

  resume(): ResponseBody<'resume'> {
    if (this.run?.state === 'paused') {
      this.run.state = 'running';
      this.run.wake?.();
    }
    return this.state();
  }

  stop(): ResponseBody<'stop'> {
    if (this.run) {
      this.run.state = 'stopping';
      this.run.wake?.();
    }
    return this.state();
  }

  private state(): ResponseBody<'pause'> {
    return { type: 'trainState', state: this.run?.state ?? 'idle' };
  }

  // ---- generation -------------------------------------------------------------------------------------

  async generate(req: Req<'generate'>, emit: Emit<'generate'>): Promise<ResponseBody<'generate'>> {
    const { config, tokenizer } = this.need();
    if (this.run && this.run.state !== 'paused') badInput('Training is running: pause or stop it to try the model.');
    if (!tokenizer) badInput('This model has no tokenizer.json, so it cannot read a prompt.');
    if (!Number.isSafeInteger(req.maxTokens) || req.maxTokens < 1 || req.maxTokens > config.maxPositions - 1) {
      badInput(`Max tokens must be a whole number from 1 to ${config.maxPositions - 1} (got ${req.maxTokens}).`);
    }
    if (!(Number.isFinite(req.temperature) && req.temperature >= 0)) badInput(`Temperature must be ≥ 0 (0: always the likeliest token; got ${req.temperature}).`);
    if (!Number.isSafeInteger(req.topK) || req.topK < 0) badInput(`Top-k must be a whole number ≥ 0 (0: no cut; got ${req.topK}).`);
    const alphaScale = req.alphaScale ?? 1;
    if (!(Number.isFinite(alphaScale) && alphaScale >= 0)) badInput(`The adapter scale must be a number ≥ 0 (got ${alphaScale}).`);
    if (req.withAdapter && !this.adapter) badInput('There is no adapter yet: train one first (or generate with the base model).');
    const ids = tokenizer!.encode(req.prompt, { addSpecialTokens: true });
    if (ids.length === 0) badInput('Type a prompt first.');
    const maxLen = Math.min(config.maxPositions, Math.ceil((ids.length + req.maxTokens) / 16) * 16);
    const scale = req.withAdapter ? alphaScale : 0;
    const eos = config.eosTokenId ?? tokenizer!.eosId;
    const stopIds = eos === undefined ? [] : Array.isArray(eos) ? eos : [eos];
    const t0 = performance.now();
    const out: number[] = [];
    const gen = this.generator(maxLen, scale);
    this.generating++;
    gen.uses++;
    try {
      await gen.value.generate(ids, { maxNewTokens: req.maxTokens, temperature: req.temperature, topK: req.topK, seed: req.seed ?? 0, stopIds }, (id) => {
        out.push(id);
        emit({ type: 'token', tokenId: id, text: tokenizer!.decode(out, { skipSpecialTokens: true }) });
      });
    } finally {
      gen.uses--;
      this.generating--;
    }
    return { type: 'generated', text: tokenizer!.decode(out, { skipSpecialTokens: true }), tokens: out.length, seconds: (performance.now() - t0) / 1000 };
  }

  /**
   * The next-token logits (V) after `prompt`, from the base model (alphaScale null) or with the adapter at
   * alphaScale × its α, through the same cached generators as generate: what Try it's α slider moves.
   * For tests and for looking inside a generation; no protocol message uses it yet.
   */
  async nextTokenLogits(prompt: string, alphaScale: number | null): Promise<Float32Array> {
    const { config, tokenizer } = this.need();
    if (this.run && this.run.state !== 'paused') badInput('Training is running: pause or stop it to try the model.');
    if (!tokenizer) badInput('This model has no tokenizer.json, so it cannot read a prompt.');
    if (alphaScale !== null && !this.adapter) badInput('There is no adapter yet.');
    const ids = tokenizer!.encode(prompt, { addSpecialTokens: true });
    if (ids.length === 0 || ids.length > config.maxPositions) badInput(`The prompt must be 1 to ${config.maxPositions} tokens long.`);
    const gen = this.generator(Math.min(config.maxPositions, Math.ceil(ids.length / 16) * 16), alphaScale ?? 0);
    this.generating++;
    gen.uses++;
    try {
      return await gen.value.nextLogits(ids);
    } finally {
      gen.uses--;
      this.generating--;
    }
  }

  /** A generator of `maxLen` positions with the adapter at `scale` × its α (0: the base model), cached. */
  private generator(maxLen: number, scale: number): CachedGenerator {
    const { gpu, model } = this.need();
    const key = `${maxLen}/${scale}`;
    let g = this.generators.get(key);
    if (g) {
      this.generators.delete(key); // re-inserted below: the Map's order is the eviction order
    } else {
      const adapter = this.adapter ?? undefined;
      // The scale is baked into the recorded program, so the adapter is swapped only while recording.
      model.adapter = adapter && scale !== 0 ? { ...adapter, loraAlpha: adapter.loraAlpha * scale } : undefined;
      try {
        g = { ...tracked(gpu, () => new Generator(model, maxLen)), uses: 0 };
      } finally {
        model.adapter = adapter;
      }
    }
    this.generators.set(key, g);
    for (const [k, old] of this.generators) {
      if (this.generators.size <= MAX_GENERATORS) break;
      if (old.uses > 0 || old === g) continue;
      untrack(gpu, old);
      this.generators.delete(k);
    }
    return g;
  }

  // ---- library ----------------------------------------------------------------------------------------

  async loadAdapter(req: Req<'loadAdapter'>): Promise<ResponseBody<'loadAdapter'>> {
    const { gpu, model, config, facts } = this.need();
    this.refuseWhileBusy('load an adapter');
    const entry = await this.library().get(req.adapterId);
    const weights = this.fittingWeights(entry, config, facts.name);
    const cfg: AdapterConfig = { ...entry.config, baseModel: entry.baseModel };
    // Everything recorded against the old adapter's buffers goes with them.
    untrack(gpu, this.trainer);
    untrack(gpu, this.evaluator);
    this.trainer = this.evaluator = null;
    for (const g of this.generators.values()) untrack(gpu, g);
    this.generators.clear();
    model.setAdapter(cfg, weights);
    this.adapter = cfg;
    this.steps = entry.steps;
    this.history = entry.lossHistory.map((p) => ({ ...p }));
    this.snapshot = weights;
    this.plan = null;
    this.entry = null;
    this.loadedFrom = { id: entry.id, name: entry.name };
    const note =
      entry.baseModel !== '' && !sameBaseModel(entry.baseModel, facts.name)
        ? `“${entry.name}” was trained on ${entry.baseModel}; the loaded model is ${facts.name}. The shapes fit, so it is applied, but it may not mean much on this model.`
        : null;
    const total = entry.checkpoint?.totalSteps;
    return {
      type: 'adapterLoaded',
      adapterId: entry.id,
      name: entry.name,
      baseModel: entry.baseModel,
      lora: { targets: [...cfg.targetModules], r: cfg.r, alpha: cfg.loraAlpha, dropout: cfg.loraDropout, rslora: cfg.useRslora },
      steps: entry.steps,
      lossHistory: this.history,
      checkpoint: entry.checkpoint ? { step: entry.checkpoint.step, totalSteps: typeof total === 'number' ? total : null } : null,
      note,
    };
  }

  /** A library entry's weights as F32 tensors, after checking that they fit this model (else a refusal saying how not). */
  private fittingWeights(entry: AdapterEntry, config: ModelConfig, modelName: string): Map<string, Float32Array> {
    const cfg: AdapterConfig = { ...entry.config, baseModel: entry.baseModel };
    const misfit = adapterMisfit(entry.name, cfg, entry.weights, config, modelName);
    if (misfit) throw new LoraStudioError('bad-shape', misfit);
    return readAdapter(JSON.stringify(adapterConfigToJson(cfg)), entry.weights, this.expectation(config)).weights;
  }

  private expectation(config: ModelConfig): AdapterExpectation {
    return { numLayers: config.layers, shapes: (t) => projectionDims(config, t) };
  }

  async saveAdapter(req: Req<'saveAdapter'>): Promise<ResponseBody<'saveAdapter'>> {
    if (!this.loaded || !this.adapter) return badInput('There is no adapter to save yet: train one first.');
    if (this.run && this.run.state !== 'paused') badInput('Training is running: pause or stop it before you save.');
    // A run that can go on keeps its checkpoint, so saving it does not end it.
    const entry = await this.persist(this.plan !== null, req.name);
    return { type: 'adapterSaved', adapterId: entry.id, name: entry.name, steps: entry.steps };
  }

  /**
   * Writes the current adapter, its steps and history into the run's library entry (creating it, or under
   * `name` renaming it), with the run's checkpoint when `withCheckpoint` and the run can go on. Writes go
   * one at a time. The library keeps the previous record whole if this one fails.
   */
  private persist(withCheckpoint: boolean, name?: string): Promise<AdapterEntry> {
    const write = async (): Promise<AdapterEntry> => {
      const { model, config, facts } = this.loaded!;
      const adapter = this.adapter!;
      const weights = this.deviceLost ? this.snapshot : await model.readAdapter();
      if (!weights) return badInput('The GPU was lost before any copy of the adapter was taken; nothing can be saved.');
      const { weights: bytes } = writeAdapter(adapter, weights, this.expectation(config));
      let checkpoint: TrainingCheckpoint | undefined;
      const plan = this.plan, trainer = this.trainer?.value;
      if (withCheckpoint && plan && trainer && !this.deviceLost) {
        const moments = await trainer.readMoments();
        const tensors = model.lora.flatMap((p) => {
          const mv = moments.get(p.key)!;
          return [
            { name: `${MOMENT_NAMES.m}.${p.key}`, shape: [...p.tensor.shape], data: mv.m },
            { name: `${MOMENT_NAMES.v}.${p.key}`, shape: [...p.tensor.shape], data: mv.v },
          ];
        });
        const settings: RunSettings = { version: 1, lora: plan.lora, optim: plan.optim, origin: plan.origin, model: this.loaded!.identity, data: plan.data };
        const consumed = (this.steps - plan.origin) * plan.optim.gradAccum * plan.optim.batchSize;
        const rows = Math.max(1, this.data?.train.length ?? 1);
        checkpoint = {
          step: this.steps,
          totalSteps: plan.origin + plan.optim.steps,
          optimizer: writeSafetensors(tensors),
          settings: settings as unknown as Record<string, unknown>,
          dataCursor: { epoch: Math.floor(consumed / rows), index: consumed % rows },
        };
      }
      const entry = await this.library().save({
        id: this.entry?.id || undefined,
        name: name ?? this.entry?.name ?? runName(facts.name),
        baseModel: facts.name,
        config: adapter,
        weights: bytes,
        steps: this.steps,
        lossHistory: this.history,
        ...(checkpoint ? { checkpoint } : {}),
      });
      this.entry = { id: entry.id, name: entry.name };
      return entry;
    };
    const result = this.writes.then(write, write);
    this.writes = result.catch(() => {});
    return result;
  }
}
