// The studio's engine session: the loaded model and tokenizer, the tokenized data, the adapter the engine
// holds and the state of its run. Each public method answers one request of protocol.ts and reports
// streamed events through `emit`; it knows nothing of postMessage (engine.worker.ts does), so a Node test
// can drive it on Dawn (tests/worker/session.test.ts). It keeps the state and checks the requests; the
// work is elsewhere: reading models (model_files.ts), memory estimates (memory_estimate.ts), the training
// loop (src/train/run.ts), checkpoints (src/train/checkpoint.ts), Try it's attached adapters, blends and
// generators (try_adapters.ts, generators.ts), library entries (adapter_entries.ts), model identities
// (identity.ts), exports for other tools (exports.ts).
//
// One model at a time, on a GPU device of its own: a model once loaded destroys the previous device, which frees
// everything the old model, trainer and generators held. Within a model, the trainer and generators record
// their buffers as they are built (Gpu.track) and give them back to the pool when replaced, so repeated runs
// reuse memory instead of growing it. Generation and training share the GPU, so generation waits for a pause.
//
// The library (src/io/library.ts): every run writes itself into one library entry (run_entry.ts: updated
// by id, keeping a rename made meanwhile; never put back once deleted), created at its first checkpoint,
// so a run stopped before its first step adds nothing. While it runs (every CHECKPOINT_MS, on pause and on
// stop) the entry gets the adapter, the AdamW moments, the step and the loss history in one record, so a
// closed tab can resume it (resumeRun) and go on exactly as if it had never stopped; the library writes crash-safely, so a failed checkpoint (storage
// full) leaves the previous one whole and training goes on. A finished run drops its checkpoint and stays as
// a plain adapter. loadAdapter puts a saved adapter back into the model, after checking its shapes against
// it; `train` with `continue` trains it further (a fresh optimizer and schedule, into a new entry). A lost
// device ends a run and keeps the CPU copy of the adapter the loop takes every few seconds, to be saved.

import type { Gpu, Tracked } from '../gpu/gpu';
import { parseDataset, type DatasetFormat, type Row } from '../io/dataset';
import { badInput } from '../io/errors';
import { type AdapterEntry, type AdapterLibrary, type LossPoint, type TrainingCheckpoint } from '../io/library';
import { LORA_TARGETS, writeAdapter, type AdapterConfig } from '../io/peft';
import type { LoraTokenizer } from '../io/tokenizer';
import type { CausalLM } from '../model/causal_lm';
import { adapterExpectation, initLora } from '../model/lora';
import { trainableParams } from '../model/params';
import { buildCheckpoint, dataDifferences, dataIdentity, parseRunSettings, readCheckpointMoments, type Moments, type RunPlan } from '../train/checkpoint';
import { adapterConfig, checkOptim, deviceLostMessage, isDeviceLoss, RunControl, stopMessage, studioOptimizer, trainLoop, type RunOutcome } from '../train/run';
import { Evaluator, Trainer } from '../train/trainer';
import type { BlendWeight, DataIdentity, EngineRequest, EventBody, LoraSettings, MemoryEstimate, ModelIdentity, OptimSettings, ResponseBody, TrainableFacts } from './protocol';
import { adapterLoaded, entryConfig, fittingWeights, runName } from './adapter_entries';
import { exportEntry, type ExportModel } from './exports';
import { EntryDeletedError, RunEntry } from './run_entry';
import { TryIt, type HeldAdapter } from './try_adapters';
import { modelFacts, openModel } from './model_files';
import { MemoryEstimator } from './memory_estimate';
import { askedBaseDtype } from './base_dtype';
import { DEFAULT_MODEL, describeModel, modelIdentity, sameModel } from './identity';

type Req<T extends EngineRequest['type']> = Extract<EngineRequest, { type: T }>;
type Emit<T extends EngineRequest['type']> = (ev: EventBody<T>) => void;

export { DEFAULT_MODEL };

/** Generators kept for reuse (by length and blend). */
const MAX_GENERATORS = 4;
/** A running run checkpoints into the library at most this often (and on pause and stop). */
const CHECKPOINT_MS = 30_000;

interface Loaded extends ExportModel {
  gpu: Gpu;
  model: CausalLM;
  tokenizer?: LoraTokenizer;
  identity: ModelIdentity;
  memory: MemoryEstimator;
}

/** How a run starts: a fresh adapter, the held one further, or a checkpoint from the library. */
type RunStart =
  | { kind: 'fresh' | 'continue'; lora: LoraSettings; optim: OptimSettings }
  | { kind: 'resume'; lora: LoraSettings; optim: OptimSettings; origin: number; weights: Map<string, Float32Array>; moments: Moments; steps: number; history: LossPoint[]; entry: { id: string; name: string } };

export interface SessionOptions {
  /** How often a running run checkpoints into the library, in ms (default 30 s; 0: after every step). */
  checkpointEveryMs?: number;
}

export class Session {
  private loaded: Loaded | null = null;
  private data: { train: Row[]; validation: Row[]; seqLen: number; identity: DataIdentity; format: DatasetFormat } | null = null;
  /** The adapter on the GPU (model.adapter, kept here unscaled) and what it has been through. */
  private adapter: AdapterConfig | null = null;
  private steps = 0;
  private history: LossPoint[] = [];
  /** The library entry the current adapter's run writes to. */
  private readonly entry = new RunEntry(() => this.library());
  /** The library entry the current adapter was loaded from, for the name of a continued run. */
  private loadedFrom: { id: string; name: string } | null = null;
  /** Set while the current adapter's run can go on (a checkpoint of it can resume). */
  private plan: RunPlan | null = null;
  /** The settings of the run that made the current adapter, kept with its library entry (for its recipe). */
  private runRecord: Record<string, unknown> | undefined;
  /** The adapter on the CPU, for a lost device. */
  private snapshot: Map<string, Float32Array> | null = null;
  private deviceLost: string | null = null;
  private run: RunControl | null = null;
  private trainer: Tracked<Trainer> | null = null;
  private evaluator: Tracked<Evaluator> | null = null;
  /** Try it: the adapters attached beside the held one, and the generators. */
  private tryIt = new TryIt(MAX_GENERATORS);

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
    const asked = askedBaseDtype(req.baseDtype);
    const t0 = performance.now();
    // The new model streams onto a device of its own while the old one stays loaded, and replaces it only once
    // complete: a model that fails to load changes nothing (openModel destroys its device). The price is both
    // models on the GPU while the new one loads; unloading first would lose the old model and its unsaved
    // adapter to any load that fails (a typo in a Hub id, a cut download), which is worse than a refusal for memory.
    const { gpu, model, config, tokenizer, label, dtype, source } = await openModel(req.source, (p) =>
      emit({ type: 'progress', file: p.file, loaded: p.loaded, total: p.total, percent: p.percent }), this.openDevice, { baseDtype: asked });
    this.unload();
    const baseDtype = model.options.baseDtype; // the one asked, or the checkpoint's own (streamed_model.ts)
    const facts = modelFacts(label, config, dtype, tokenizer !== undefined, baseDtype);
    this.loaded = { gpu, model, config, tokenizer, facts, source, identity: modelIdentity(req.source), memory: new MemoryEstimator(config, gpu.limits, baseDtype) };
    return { type: 'modelLoaded', model: facts, trainable: req.lora ? this.trainable(req.lora) : null, seconds: (performance.now() - t0) / 1000 };
  }

  /** Drop the model and everything built on it; its device goes, and all its memory with it. */
  private unload(): void {
    this.loaded?.gpu.destroy();
    this.loaded = null;
    this.data = null;
    this.adapter = null;
    this.steps = 0;
    this.history = [];
    this.entry.startNew(null);
    this.loadedFrom = null;
    this.plan = null;
    this.snapshot = null;
    this.deviceLost = null;
    this.trainer = null;
    this.evaluator = null;
    this.tryIt.clear();
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
    if (this.tryIt.generators.busy > 0) badInput(`Text is being generated: wait for it to finish before you ${what}.`);
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
    const identity = dataIdentity(req.text, req.fileName, { seqLen: req.seqLen, validationShare: req.validationShare, pack: req.pack, seed: req.seed ?? 0 });
    this.data = { train: data.train, validation: data.validation, seqLen: req.seqLen, identity, format: data.format };
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

  private estimate(lora: LoraSettings, optim: OptimSettings, seqLen: number): MemoryEstimate {
    const { facts, memory } = this.need();
    return memory.estimateSettings({ lora, optim, seqLen, validationRows: this.data?.validation.length }, facts.name, this.trainable(lora));
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
      const dora = held!.useDora === true;
      if (want !== have || req.lora.r !== held!.r || req.lora.alpha !== held!.loraAlpha || req.lora.rslora !== held!.useRslora || (req.lora.dora === true) !== dora) {
        badInput(
          `The adapter to continue has r=${held!.r}, α=${held!.loraAlpha}${held!.useRslora ? ' (rsLoRA)' : ''}${dora ? ' (DoRA)' : ''} on ${have}; ` +
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
    const weights = fittingWeights(entry, config, facts.name);
    const moments = readCheckpointMoments(ck!, weights.keys(), entry.name);
    return this.runTraining(
      { kind: 'resume', lora: run.lora, optim: run.optim, origin: run.origin, weights, moments, steps: ck!.step, history: entry.lossHistory, entry: { id: entry.id, name: entry.name } },
      emit,
    );
  }

  /** Sets up the adapter, trainer and evaluator for train and resumeRun, runs the loop (src/train/run.ts), and reports. */
  private async runTraining(start: RunStart, emit: Emit<'train'>): Promise<ResponseBody<'train'>> {
    const { gpu, model, config, facts, memory, identity } = this.need();
    if (!this.data) badInput('Load training data first.');
    const data = this.data!;
    const o = start.optim;
    checkOptim(o);
    const cfg = adapterConfig(start.lora, facts.name);
    const fit = this.estimate(start.lora, o, data.seqLen);
    if (fit.refusal) badInput(fit.refusal);

    // The run exists from here on (before the first await), so a second `train` is refused at once.
    const control = (this.run = new RunControl());
    const startSteps = start.kind === 'resume' ? start.steps : start.kind === 'continue' ? this.steps : 0;
    const origin = start.kind === 'resume' ? start.origin : startSteps;
    const end = origin + o.steps;
    let outcome: RunOutcome;
    try {
      this.dropPrograms(gpu);
      if (start.kind === 'resume') {
        model.setAdapter(cfg, start.weights);
        this.history = start.history.map((p) => ({ ...p }));
        this.entry.resume(start.entry);
        this.loadedFrom = null;
      } else if (start.kind === 'fresh') {
        // A fresh adapter: PEFT's init from the seed.
        model.setAdapter(cfg, initLora(config, cfg, o.seed));
        this.history = [];
        this.entry.startNew(runName(facts.name));
        this.loadedFrom = null;
      } else {
        model.adapter = cfg; // the weights stay; only dropout may have changed
        // Named after the adapter it continues, as that entry is called when the first write makes this one.
        const from = this.loadedFrom ?? (this.entry.id ? { id: this.entry.id, name: this.entry.name! } : null);
        this.entry.startNew(`${from?.name ?? runName(facts.name)} (continued)`.slice(0, 100), from ? { id: from.id, suffix: ' (continued)' } : undefined);
      }
      this.adapter = cfg;
      this.steps = startSteps;
      this.snapshot = null;
      this.plan = { lora: start.lora, optim: o, origin, data: data.identity };
      this.runRecord = { version: 1, ...this.plan, model: identity, format: data.format, baseDtype: model.options.baseDtype };
      const B = o.batchSize, T = data.seqLen;
      model.options.recompute = o.recompute === true; // a run setting: the decoder reads it as the trainer records its step
      const trainer = (this.trainer = await gpu.checked('Preparing the training step', () =>
        gpu.track(() => new Trainer(model, B, T, studioOptimizer(o), o.seed, { gradAccum: o.gradAccum, keepLastGood: true })))).value;
      if (start.kind === 'resume') trainer.restoreState(start.steps - origin, start.moments);
      memory.markBuilt({ adapter: cfg, optim: o, seqLen: T, validationRows: data.validation.length });
      const valB = Math.min(B, data.validation.length);
      const evaluator = valB > 0 ? (this.evaluator = gpu.track(() => new Evaluator(model, valB, T))).value : null;
      outcome = await trainLoop(
        { model, trainer, evaluator, train: data.train, validation: data.validation, seqLen: T, optim: o, origin, startSteps,
          written: start.kind === 'resume' ? start.steps : null, // the entry holds this step already
          checkpointEveryMs: this.checkpointEveryMs },
        control,
        {
          stepped: (step, points) => {
            this.steps = step;
            this.history.push(...points);
          },
          rolledBack: (step) => {
            this.steps = step;
            this.history = this.history.filter((p) => p.step <= step);
            this.plan = null; // the moments took the bad step: this run cannot go on
          },
          snapshot: (weights) => (this.snapshot = weights),
          checkpoint: async () => void (await this.persist(true)),
          progress: (report) => emit({ type: 'trainProgress', ...report, ...this.entryState() }),
          paused: (report) => emit({ type: 'trainPaused', ...report, ...this.entryState() }),
        },
      );
    } catch (e) {
      this.plan = null;
      if (!isDeviceLoss(gpu, e)) throw e;
      const lost = gpu.lost?.message || (e as Error).message;
      outcome = { reason: 'device-lost', steps: this.steps, lastLoss: null, written: null, checkpointError: undefined, message: deviceLostMessage(lost, this.steps), lost };
    } finally {
      this.run = null;
    }
    if (outcome.lost !== undefined) {
      this.deviceLost = outcome.lost;
      this.plan = null;
    }
    let { written } = outcome;
    const { reason, checkpointError } = outcome;
    if (reason === 'done') this.plan = null;
    // The run's last word in the library: a finished adapter (its checkpoint dropped), or a stopped run's checkpoint.
    let stored = '';
    if (reason === 'done' || (reason === 'stopped' && this.steps > startSteps && written !== this.steps)) {
      try {
        const entry = await this.persist(reason === 'stopped');
        written = this.steps;
        stored = reason === 'done' ? ` It is in the library as “${entry.name}”.` : '';
      } catch (e) {
        if (!(e instanceof EntryDeletedError)) stored = ` The library could not be updated (${(e as Error).message})${written !== null ? `; it keeps the checkpoint from step ${written}.` : '.'} Free some space and save the adapter from here.`;
      }
    } else if (checkpointError) {
      stored = ` ${checkpointError}.`;
    }
    // A run whose entry was deleted (in any tab) cannot resume from it, whatever it wrote last.
    const gone = await this.entry.verify();
    if (gone !== null) stored = ` ${new EntryDeletedError(gone).message}.`;
    const message = stopMessage(outcome, start.kind === 'fresh', gone !== null ? this.steps : startSteps, end);
    return {
      type: 'trainStopped', reason, steps: this.steps, lastLoss: outcome.lastLoss, message: message + stored,
      adapterId: this.entry.id, resumable: this.plan !== null && written === this.steps && this.entry.id !== null,
    };
  }

  /** Which library entry the run writes to, for its events: the UI's Resume and Library rows follow it. */
  private entryState(): { adapterId?: string; entryDeleted?: string } {
    return { ...(this.entry.id ? { adapterId: this.entry.id } : {}), ...(this.entry.deleted !== null ? { entryDeleted: this.entry.deleted } : {}) };
  }

  pause(): ResponseBody<'pause'> {
    this.run?.pause();
    return this.state();
  }

  resume(): ResponseBody<'resume'> {
    this.run?.resume();
    return this.state();
  }

  stop(): ResponseBody<'stop'> {
    this.run?.stop();
    return this.state();
  }

  private state(): ResponseBody<'pause'> {
    return { type: 'trainState', state: this.run?.state ?? 'idle' };
  }

  // ---- generation -------------------------------------------------------------------------------------

  async generate(req: Req<'generate'>, emit: Emit<'generate'>): Promise<ResponseBody<'generate'>> {
    const { tokenizer, model } = this.need();
    if (this.run && this.run.state !== 'paused') badInput('Training is running: pause or stop it to try the model.');
    return this.tryIt.generate(model, tokenizer, this.held(), req, emit);
  }

  /**
   * The next-token logits (V) after `prompt`, from the base model (alphaScale null) or with the adapter at
   * alphaScale × its α, or with `blend` when given, through the same cached generators as generate: what
   * Try it's sliders move. For tests and for looking inside a generation; no protocol message uses it yet.
   */
  async nextTokenLogits(prompt: string, alphaScale: number | null, blend?: BlendWeight[]): Promise<Float32Array> {
    const { tokenizer, model } = this.need();
    if (this.run && this.run.state !== 'paused') badInput('Training is running: pause or stop it to try the model.');
    if (alphaScale !== null && !blend && !this.adapter) badInput('There is no adapter yet.');
    return this.tryIt.nextLogits(model, tokenizer, this.held(), prompt, blend ?? (alphaScale === null ? [] : [{ adapterId: null, weight: alphaScale }]));
  }

  /** The held adapter as Try it's blends name it. */
  private held(): HeldAdapter | null {
    const model = this.loaded?.model;
    if (!this.adapter || !model) return null;
    return { name: this.loadedFrom?.name ?? this.entry?.name ?? 'the adapter', config: this.adapter, read: () => model.readAdapter() };
  }

  async attachAdapter(req: Req<'attachAdapter'>): Promise<ResponseBody<'attachAdapter'>> {
    const { model, facts } = this.need();
    if (this.run && this.run.state !== 'paused') badInput('Training is running: pause or stop it before you attach an adapter.');
    return this.tryIt.attach(model, await this.library().get(req.adapterId), facts.name);
  }

  async detachAdapter(req: Req<'detachAdapter'>): Promise<ResponseBody<'detachAdapter'>> {
    return this.tryIt.detach(this.need().model, req.adapterId);
  }

  async saveBlend(req: Req<'saveBlend'>): Promise<ResponseBody<'saveBlend'>> {
    const { config, facts } = this.need();
    if (this.run && this.run.state !== 'paused') badInput('Training is running: pause or stop it before you save a blend.');
    return this.tryIt.attached.saveBlend(this.library(), req.blend, req.name, this.held(), config, facts.name);
  }

  /** Give back the trainer's, evaluator's and generators' buffers: they were recorded against the old adapter's. */
  private dropPrograms(gpu: Gpu): void {
    for (const t of [this.trainer, this.evaluator]) if (t) gpu.releaseAll(t.buffers);
    this.trainer = this.evaluator = null;
    this.tryIt.generators.clear(gpu);
  }

  // ---- library ----------------------------------------------------------------------------------------

  async exportAdapter(req: Req<'exportAdapter'>): Promise<ResponseBody<'exportAdapter'>> {
    return exportEntry(await this.library().get(req.adapterId), req.format, this.loaded);
  }

  async loadAdapter(req: Req<'loadAdapter'>): Promise<ResponseBody<'loadAdapter'>> {
    const { gpu, model, config, facts } = this.need();
    this.refuseWhileBusy('load an adapter');
    const entry = await this.library().get(req.adapterId);
    const weights = fittingWeights(entry, config, facts.name);
    // Everything recorded against the old adapter's buffers goes with them.
    this.dropPrograms(gpu);
    const cfg = entryConfig(entry);
    model.setAdapter(cfg, weights);
    this.adapter = cfg;
    this.steps = entry.steps;
    this.history = entry.lossHistory.map((p) => ({ ...p }));
    this.snapshot = weights;
    this.plan = null;
    this.runRecord = entry.run;
    this.entry.startNew(null);
    this.loadedFrom = { id: entry.id, name: entry.name };
    return adapterLoaded(entry, config, facts.name, this.history);
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
    const { model, config, facts } = this.loaded!;
    return this.entry.write(async () => {
      const adapter = this.adapter!;
      const weights = this.deviceLost ? this.snapshot : await model.readAdapter();
      if (!weights) return badInput('The GPU was lost before any copy of the adapter was taken; nothing can be saved.');
      const { weights: bytes } = writeAdapter(adapter, weights, adapterExpectation(config));
      let checkpoint: TrainingCheckpoint | undefined;
      const plan = this.plan, trainer = this.trainer?.value;
      if (withCheckpoint && plan && trainer && !this.deviceLost) {
        const params = model.lora.map((p) => ({ key: p.key, shape: p.tensor.shape }));
        checkpoint = buildCheckpoint(this.steps, plan, this.loaded!.identity, this.data?.train.length ?? 1, params, await trainer.readMoments());
      }
      return { baseModel: facts.name, config: adapter, weights: bytes, steps: this.steps, lossHistory: this.history, ...(checkpoint ? { checkpoint } : {}), ...(this.runRecord ? { run: this.runRecord } : {}) };
    }, name, runName(facts.name));
  }
}
