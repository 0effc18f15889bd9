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

import type { Gpu } from '../gpu/gpu';
import { GpuError } from '../gpu/errors';
import { parseDataset, type Row } from '../io/dataset';
import { LoraStudioError } from '../io/errors';
import { hubSource } from '../io/hub';
import type { AdapterLibrary, LossPoint } from '../io/library';
import { folderSource, loadModel, readStreamWithProgress, type ModelFiles, type ReadProgress } from '../io/model_source';
import { LORA_TARGETS, writeAdapter, type AdapterConfig } from '../io/peft';
import { parseSafetensors } from '../io/safetensors';
import type { LoraTokenizer } from '../io/tokenizer';
import { projectionDims, weightShapes, type ModelConfig } from '../model/config';
import { Generator } from '../model/generate';
import { LlamaModel } from '../model/llama';
import { checkAdapterSettings, initLora } from '../model/lora';
import { batchAt } from '../train/batches';
import { learningRate, SCHEDULES } from '../train/schedule';
import { Evaluator, Trainer } from '../train/trainer';
import type {
  EngineRequest,
  EventBody,
  LoraSettings,
  MemoryEstimate,
  ModelFacts,
  ModelSourceSpec,
  OptimSettings,
  ResponseBody,
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
  model: LlamaModel;
  config: ModelConfig;
  tokenizer?: LoraTokenizer;
  facts: ModelFacts;
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
  private data: { train: Row[]; validation: Row[]; seqLen: number } | null = null;
  /** The adapter on the GPU (model.adapter, kept here unscaled) and what it has been through. */
  private adapter: AdapterConfig | null = null;
  private steps = 0;
  private history: LossPoint[] = [];
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

  constructor(
    private readonly openDevice: () => Promise<Gpu>,
    private readonly library: () => AdapterLibrary,
  ) {}

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
    let model: LlamaModel;
    try {
      model = await gpu.checked(`Loading ${source.label}`, () => new LlamaModel(gpu, config, weights));
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
      intermediate: config.intermediate,
      contextLength: config.maxPositions,
      dtype: [...dtypes].sort().join(', ') || 'unknown',
      tiedEmbeddings: config.tied,
      hasTokenizer: tokenizer !== undefined,
    };
    this.loaded = { gpu, model, config, tokenizer, facts };
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
    this.data = { train: data.train, validation: data.validation, seqLen: req.seqLen };
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
    const loaded = this.need();
    const { gpu, model, config, facts } = loaded;
    this.refuseWhileBusy('start another run');
    if (!this.data) badInput('Load training data first.');
    const data = this.data!;
    const o = req.optim;
    checkOptim(o);
    const cfg = adapterConfig(req.lora, facts.name);
    const fit = this.estimate(req.lora, o, data.seqLen);
    if (fit.refusal) badInput(fit.refusal);

    // The run exists from here on (before the first await), so a second `train` is refused at once.
    const run: Run = (this.run = { state: 'running', wake: null });
    let reason: TrainStopReason = 'done';
    let message = '';
    let trainSec = 0, pausedSec = 0, lastLoss: number | null = null, lastSnapshot = performance.now();
    const t0 = performance.now();
    try {
      // A fresh adapter (PEFT's init from the seed), and a trainer and evaluator recorded for it.
      untrack(gpu, this.trainer);
      untrack(gpu, this.evaluator);
      this.trainer = this.evaluator = null;
      for (const g of this.generators.values()) untrack(gpu, g);
      this.generators.clear();
      model.setAdapter(cfg, initLora(config, cfg, o.seed));
      this.adapter = cfg;
      this.steps = 0;
      this.history = [];
      this.snapshot = null;
      const B = o.batchSize, T = data.seqLen, K = o.gradAccum;
      const opt = { kind: 'adamw' as const, lr: o.lr, weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, maxGradNorm: o.maxGradNorm };
      const trainer = (this.trainer = await gpu.checked('Preparing the training step', () =>
        tracked(gpu, () => new Trainer(model, B, T, opt, o.seed, { gradAccum: K, keepLastGood: true })))).value;
      this.measured.set(this.shapeKey(req.lora, B, T), trainer.transientBytes);
      const valB = Math.min(B, data.validation.length);
      const evaluator = valB > 0 ? (this.evaluator = tracked(gpu, () => new Evaluator(model, valB, T))).value : null;
      const valEvery = Math.max(1, Math.ceil(o.steps / VAL_POINTS));
      for (let step = 0; step < o.steps; step++) {
        if (run.state === 'paused') {
          const p0 = performance.now();
          while (run.state === 'paused') await new Promise<void>((wake) => (run.wake = wake));
          pausedSec += (performance.now() - p0) / 1000;
        }
        if (run.state === 'stopping') {
          reason = 'stopped';
          break;
        }
        const lr = learningRate({ lr: o.lr, kind: o.schedule, warmupSteps: o.warmupSteps, steps: o.steps }, step);
        const batches = Array.from({ length: K }, (_, k) => batchAt(data.train, (step * K + k) * B, B, T));
        const s0 = performance.now();
        const loss = await trainer.stepBatches(batches, lr);
        trainSec += (performance.now() - s0) / 1000;
        if (!Number.isFinite(loss)) {
          this.steps = trainer.restoreLastGood();
          this.history = this.history.filter((p) => p.step <= this.steps);
          reason = 'nan';
          message =
            `The loss became ${loss} at step ${step + 1}, so training stopped. The adapter from step ${this.steps} (the last with a finite loss) is kept. ` +
            'Lower the learning rate, or turn on gradient clipping, and start again.';
          break;
        }
        this.steps = step + 1;
        lastLoss = loss;
        this.history.push({ step: this.steps, loss, split: 'train' });
        let valLoss: number | undefined;
        if (evaluator && (this.steps % valEvery === 0 || this.steps === o.steps)) {
          valLoss = await this.validate(evaluator, data.validation, valB, T);
          this.history.push({ step: this.steps, loss: valLoss, split: 'validation' });
        }
        if (performance.now() - lastSnapshot > SNAPSHOT_MS) {
          this.snapshot = await model.readAdapter();
          lastSnapshot = performance.now();
        }
        const elapsedSec = (performance.now() - t0) / 1000 - pausedSec;
        emit({
          type: 'trainProgress',
          step: this.steps,
          steps: o.steps,
          loss,
          valLoss,
          lr,
          tokensPerSec: trainSec > 0 ? (this.steps * K * B * T) / trainSec : 0,
          etaSec: (elapsedSec / this.steps) * (o.steps - this.steps),
          elapsedSec,
        });
      }
      this.snapshot = await model.readAdapter();
    } catch (e) {
      if (!(gpu.lost || (e instanceof GpuError && e.code === 'device-lost'))) throw e;
      this.deviceLost = gpu.lost?.message || (e as Error).message;
      reason = 'device-lost';
      message =
        `The GPU device was lost during training (${this.deviceLost}). The adapter as of the last copy ` +
        `(step ${this.steps} or a little before) can still be saved to the library; load the model again to go on.`;
    } finally {
      this.run = null;
    }
    if (reason === 'done') message = `Trained ${this.steps} step${this.steps === 1 ? '' : 's'}.`;
    if (reason === 'stopped') message = `Stopped after ${this.steps} step${this.steps === 1 ? '' : 's'}; the adapter is kept.`;
    return { type: 'trainStopped', reason, steps: this.steps, lastLoss, message };
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

  async saveAdapter(req: Req<'saveAdapter'>): Promise<ResponseBody<'saveAdapter'>> {
    if (!this.loaded || !this.adapter) return badInput('There is no adapter to save yet: train one first.');
    const { model, config, facts } = this.loaded;
    const weights = this.deviceLost ? this.snapshot : await model.readAdapter();
    if (!weights) return badInput('The GPU was lost before any copy of the adapter was taken; nothing can be saved.');
    const { weights: bytes } = writeAdapter(this.adapter, weights, { numLayers: config.layers, shapes: (t) => projectionDims(config, t) });
    const entry = await this.library().save({
      name: req.name,
      baseModel: facts.name,
      config: this.adapter,
      weights: bytes,
      steps: this.steps,
      lossHistory: this.history,
    });
    return { type: 'adapterSaved', adapterId: entry.id, name: entry.name, steps: entry.steps };
  }
}
