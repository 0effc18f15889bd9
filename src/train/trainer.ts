// Training and evaluation programs: a step (zero grads → forward → loss → backward → optimizer) recorded
// once on the tape and replayed as ONE command buffer per step; the only CPU read-back is the loss, once per
// step (or less often). Evaluation records the forward alone.
//
// Per-step learning rate: the optimizer's uniforms are rewritten before each step (a queue write), as AdamW's
// bias corrections already were, so a schedule (schedule.ts) costs no re-recording.
// Gradient accumulation over K micro-batches: the backward adds into the LoRA gradients (+=), so the step
// zeroes them once, runs forward/backward K times on different ids, scales the sum by 1/K (the gradient of
// the mean of the K micro-batch losses) and then clips and updates. The reported loss is that mean.
// Last good adapter: with `keepLastGood`, each step first copies the parameters into one of two GPU slots,
// so after a non-finite loss at step k the parameters of step k − 2 (whose loss, at step k − 1, was finite)
// can be put back without a read-back per step.
// Resuming: readMoments() reads AdamW's m and v back, restoreState() writes them (and t, and the dropout
// counter) into a fresh trainer, so a run saved after step k and resumed continues bit for bit as if it
// had never stopped (tests/worker/session.test.ts checks this).
//
// Shapes: B batch, T sequence, N = B·T, K micro-batches per optimizer step.

import type { Dispatch, Gpu } from '../gpu/gpu';
import { packUniform } from '../gpu/uniforms';
import { Tape, type Tensor } from '../autograd/tape';
import { slabsOf, type Slab } from '../autograd/packed';
import { accumulate, addForward, fill, scale } from '../autograd/elementwise';
import { rngAdvance } from '../autograd/dropout';
import { adamwParams, adamwStep, clipGradNorm, OPTIMIZER_PARAMS, sgdStep } from '../autograd/optimizer';
import { IGNORE_INDEX } from '../autograd/cross_entropy';
import type { CausalLM, StepTensors } from '../model/causal_lm';

export interface OptimizerSettings {
  kind: 'adamw' | 'sgd';
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Global gradient-norm clipping; 0 or undefined: off. */
  maxGradNorm?: number;
}

export const DEFAULT_OPTIMIZER: OptimizerSettings = { kind: 'adamw', lr: 1e-4, weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8 };

/** Next-token targets as transformers computes them: ids shifted left by one, −100 at each row's end. */
export function shiftTargets(ids: Int32Array, B: number, T: number): Int32Array {
  const out = new Int32Array(B * T).fill(IGNORE_INDEX);
  for (let b = 0; b < B; b++) for (let t = 0; t + 1 < T; t++) out[b * T + t] = ids[b * T + t + 1];
  return out;
}

function ioTensors(tape: Tape, gpu: Gpu, N: number): StepTensors {
  return {
    ids: tape.persistent('ids', [N], gpu.buffer('ids', N * 4)),
    targets: tape.persistent('targets', [N], gpu.buffer('targets', N * 4)),
    result: tape.persistent('loss', [2], gpu.buffer('loss', 8)),
  };
}

/** Forward-only loss of (B, T) batches. */
export class Evaluator {
  private io: StepTensors;
  private dispatches: Dispatch[];

  constructor(readonly model: CausalLM, readonly B: number, readonly T: number) {
    const tape = new Tape(model.gpu);
    this.io = ioTensors(tape, model.gpu, B * T);
    model.recordLoss(tape, this.io, B, T);
    this.dispatches = tape.compile().dispatches;
  }

  /** Mean cross-entropy of one batch and the number of predicted tokens (ids: (B, T) row-major). */
  async loss(ids: Int32Array, targets = shiftTargets(ids, this.B, this.T)): Promise<{ loss: number; tokens: number }> {
    const gpu = this.model.gpu;
    gpu.write(this.io.ids.buffer!, ids);
    gpu.write(this.io.targets.buffer!, targets);
    gpu.run(this.dispatches, 'eval.step');
    const [loss, tokens] = await gpu.read(this.io.result.buffer!, 2);
    return { loss, tokens };
  }
}

export interface TrainerOptions {
  /** K: micro-batches of (B, T) per optimizer step (gradient accumulation); 1 by default. */
  gradAccum?: number;
  /** Keep the parameters of the last two steps on the GPU, for restoreLastGood() after a non-finite loss. */
  keepLastGood?: boolean;
}

export class Trainer {
  private io: StepTensors;
  private zero: Dispatch[]; // zero the LoRA gradients (and the loss sum)
  private advance: Dispatch; // the dropout step counter
  private program: Dispatch[]; // forward, loss, backward
  private sumLoss: Dispatch; // lossSum += loss of this micro-batch
  private lossSum: GPUBuffer; // (1)
  private update: Dispatch[] = []; // 1/K, clipping and the optimizer
  private adamw: { dispatch: Dispatch; n: number }[] = [];
  private sgd: { dispatch: Dispatch; n: number }[] = [];
  /** backup[s]: copy every parameter into slot s; restore[s]: copy slot s back. */
  private backup: Dispatch[][] = [];
  private restore: Dispatch[][] = [];
  /** AdamW's moments, one pair per slab, at the offsets of the parameters in it. */
  private moments: { m: GPUBuffer; v: GPUBuffer }[] = [];
  private slabs: Slab[];
  private params: { key: string; tensor: Tensor }[];
  private dropoutCounter: GPUBuffer; // (1) u32: micro-batches run so far
  /** Optimizer steps taken so far (AdamW's t). */
  steps = 0;
  /** The step restoreState() started from (0 for a fresh run). */
  private restoredAt = 0;
  readonly gradAccum: number;
  readonly transientBytes: number;
  /** The activations live at the tape's high-water mark, and the node where it is reached (Program.peakTensors). */
  readonly peak: { node: string; tensors: { label: string; bytes: number }[] };

  constructor(readonly model: CausalLM, readonly B: number, readonly T: number, readonly opt: OptimizerSettings, seed = 0, options: TrainerOptions = {}) {
    const gpu = model.gpu;
    const K = options.gradAccum ?? 1;
    if (!Number.isInteger(K) || K < 1) throw new RangeError(`gradient accumulation must be a whole number of micro-batches ≥ 1 (got ${K})`);
    this.gradAccum = K;
    const tape = new Tape(gpu);
    this.io = ioTensors(tape, gpu, B * T);
    this.dropoutCounter = gpu.upload('dropout.step', new Uint32Array(1));
    const counter = tape.persistent('dropout.step', [1], this.dropoutCounter);
    model.recordLoss(tape, this.io, B, T, { counter, seed });
    tape.backward();
    const compiled = tape.compile();
    this.program = compiled.dispatches;
    this.transientBytes = compiled.transientBytes;
    this.peak = { node: compiled.peakNode, tensors: compiled.peakTensors };

    // Every adapter parameter lives in a few packed slabs (src/autograd/packed.ts), its gradient at the same
    // offset of the slab's twin: zeroing, 1/K, clipping, the optimizer and the last-good copies run once per
    // slab, not once per tensor.
    const params = model.lora.map((p) => p.tensor);
    const slabs = slabsOf(params);
    this.params = model.lora.map((p) => ({ key: p.key, tensor: p.tensor }));
    this.slabs = slabs;
    this.lossSum = gpu.buffer('train.loss_sum', 4);
    this.zero = slabs.map((s, i) => fill(gpu, `lora.slab${i}.zero_grad`, s.n, s.grads, 0));
    this.zero.push(fill(gpu, 'train.loss_sum.zero', 1, this.lossSum, 0));
    this.sumLoss = accumulate(gpu, 'train.loss_sum', 1, this.lossSum, this.io.result.buffer!);
    this.advance = rngAdvance(gpu, 'dropout', counter.buffer!);
    if (K > 1) slabs.forEach((s, i) => this.update.push(scale(gpu, `lora.slab${i}.grad_mean`, s.n, s.grads, 1 / K)));
    if (opt.maxGradNorm && opt.maxGradNorm > 0) {
      this.update.push(...clipGradNorm(gpu, 'clip', slabs.map((s) => ({ n: s.n, g: s.grads })), opt.maxGradNorm));
    }
    const init: Dispatch[] = [];
    slabs.forEach((s, i) => {
      if (opt.kind === 'sgd') {
        const dispatch = sgdStep(gpu, `lora.slab${i}.sgd`, s.n, s.params, s.grads, opt.lr);
        this.update.push(dispatch);
        this.sgd.push({ dispatch, n: s.n });
      } else {
        const m = gpu.buffer(`lora.slab${i}.adam_m`, 4 * s.n), v = gpu.buffer(`lora.slab${i}.adam_v`, 4 * s.n);
        init.push(fill(gpu, `lora.slab${i}.adam_m.init`, s.n, m, 0), fill(gpu, `lora.slab${i}.adam_v.init`, s.n, v, 0));
        this.moments.push({ m, v });
        const dispatch = adamwStep(gpu, `lora.slab${i}.adamw`, s.n, { p: s.params, g: s.grads, m, v }, this.hyper(opt.lr), 1);
        this.update.push(dispatch);
        this.adamw.push({ dispatch, n: s.n });
      }
    });
    if (options.keepLastGood) {
      for (let k = 0; k < 2; k++) {
        const copies = slabs.map((s, i) => gpu.buffer(`lora.slab${i}.last_good${k}`, 4 * s.n));
        // out = ½·(p + p) is an exact copy in f32 (elementwise.ts).
        this.backup.push(slabs.map((s, i) => addForward(gpu, `lora.slab${i}.backup${k}`, s.n, s.params, s.params, copies[i], 0.5)));
        this.restore.push(slabs.map((s, i) => addForward(gpu, `lora.slab${i}.restore${k}`, s.n, copies[i], copies[i], s.params, 0.5)));
      }
    }
    // Moments start at zero: run their fills once now, leave only the gradient zeroing in every step.
    if (init.length > 0) gpu.run(init, 'train.init');
  }

  private hyper(lr: number) {
    const o = this.opt;
    return { lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay };
  }

  /** The gradient of the LoRA parameter `key` (PEFT name), read back (valid after a backward; for tests). */
  async readGrad(key: string): Promise<Float32Array> {
    const p = this.params.find((q) => q.key === key);
    if (!p) throw new RangeError(`readGrad: no LoRA parameter ${key}`);
    return this.model.gpu.read(p.tensor.gradAt!.buffer, p.tensor.numel, p.tensor.offset / 4);
  }

  /** The buffers that hold the LoRA gradients (the slabs' twins), for the memory plan. */
  get gradBuffers(): GPUBuffer[] {
    return this.slabs.map((s) => s.grads);
  }

  /**
   * One optimizer step on one (B, T) batch: one command buffer, then one read of the loss (computed before
   * the update, as in PyTorch's loop). Needs gradAccum = 1; see stepBatches.
   */
  async step(ids: Int32Array, targets = shiftTargets(ids, this.B, this.T), lr = this.opt.lr): Promise<number> {
    return this.stepBatches([{ ids, targets }], lr);
  }

  /**
   * One optimizer step on K = gradAccum micro-batches of (B, T), at learning rate `lr`: K command buffers
   * (the ids change between them), one read of the mean loss.
   */
  async stepBatches(batches: readonly { ids: Int32Array; targets?: Int32Array }[], lr = this.opt.lr): Promise<number> {
    const K = this.gradAccum;
    if (batches.length !== K) throw new RangeError(`this trainer accumulates ${K} micro-batch(es) per step; got ${batches.length}`);
    if (!(lr >= 0) || !Number.isFinite(lr)) throw new RangeError(`the learning rate must be a finite number ≥ 0 (got ${lr})`);
    const gpu = this.model.gpu;
    this.steps++;
    // The uniforms depend on the step's lr and (AdamW's bias corrections) on t: a queue write, not a read-back.
    for (const a of this.adamw) gpu.device.queue.writeBuffer(a.dispatch.uniforms[0], 0, packUniform(OPTIMIZER_PARAMS, adamwParams(a.n, this.hyper(lr), this.steps)));
    // sgd_step reads only n and lr; the other fields take AdamW's (harmless) values.
    for (const s of this.sgd) gpu.device.queue.writeBuffer(s.dispatch.uniforms[0], 0, packUniform(OPTIMIZER_PARAMS, adamwParams(s.n, this.hyper(lr), 1)));
    const backup = this.backup[this.steps % 2] ?? [];
    batches.forEach((b, k) => {
      gpu.write(this.io.ids.buffer!, b.ids);
      gpu.write(this.io.targets.buffer!, b.targets ?? shiftTargets(b.ids, this.B, this.T));
      const head = k === 0 ? [...backup, ...this.zero] : [];
      const tail = k === K - 1 ? this.update : [];
      gpu.run([...head, this.advance, ...this.program, this.sumLoss, ...tail], 'train.step');
    });
    const [sum] = await gpu.read(this.lossSum, 1);
    return sum / K;
  }

  /**
   * After a non-finite loss at the latest step k: put back the parameters from before step k − 1, the last
   * ones whose loss was finite (before step 1 when k = 1), and return how many updates they have had.
   * Needs keepLastGood. The optimizer moments are not restored: stop training after this.
   */
  restoreLastGood(): number {
    if (this.restore.length === 0) throw new Error('restoreLastGood: construct the Trainer with keepLastGood');
    if (this.steps === this.restoredAt) return this.steps;
    const k = this.steps;
    const slot = k === 1 ? 1 : (k - 1) % 2;
    this.model.gpu.run(this.restore[slot], 'train.restore');
    // After restoreState(t0) both slots hold the parameters of step t0: nothing older can come back.
    return Math.max(this.restoredAt, k - 2);
  }

  /** AdamW's first and second moments of every LoRA parameter, by PEFT key, read back from the GPU. */
  async readMoments(): Promise<Map<string, { m: Float32Array; v: Float32Array }>> {
    const gpu = this.model.gpu;
    const out = new Map<string, { m: Float32Array; v: Float32Array }>();
    if (this.moments.length === 0) return out;
    const read = await Promise.all(this.moments.map(async (x) => ({ m: await gpu.read(x.m), v: await gpu.read(x.v) })));
    for (const { key, tensor: t } of this.params) {
      const got = read[this.slabIndex(t)];
      const [a, b] = [t.offset / 4, t.offset / 4 + t.numel];
      out.set(key, { m: got.m.slice(a, b), v: got.v.slice(a, b) });
    }
    return out;
  }

  private slabIndex(t: Tensor): number {
    return this.slabs.findIndex((s) => s.params === t.buffer);
  }

  /**
   * Continue a run in this fresh trainer: `steps` optimizer updates already taken (AdamW's t, so the bias
   * corrections go on from there), their moments (by PEFT key; every AdamW parameter must have its pair),
   * and the dropout counter where those steps left it (one advance per micro-batch), so the masks of the
   * steps to come are the ones an unbroken run would draw. Both last-good slots get the current parameters:
   * the step before the restored one is gone, so a non-finite loss right after this puts back these.
   */
  restoreState(steps: number, moments: ReadonlyMap<string, { m: Float32Array; v: Float32Array }>): void {
    if (!Number.isSafeInteger(steps) || steps < 0) throw new RangeError(`restoreState: steps must be a whole number ≥ 0 (got ${steps})`);
    const gpu = this.model.gpu;
    for (const { key, tensor: t } of this.moments.length > 0 ? this.params : []) {
      const got = moments.get(key);
      if (!got || got.m.length !== t.numel || got.v.length !== t.numel) throw new RangeError(`restoreState: the optimizer state of ${key} is missing or not ${t.numel} values`);
      const x = this.moments[this.slabIndex(t)];
      gpu.write(x.m, got.m, t.offset);
      gpu.write(x.v, got.v, t.offset);
    }
    this.steps = this.restoredAt = steps;
    gpu.write(this.dropoutCounter, new Uint32Array([(steps * this.gradAccum) >>> 0]));
    if (this.backup.length > 0) gpu.run([...this.backup[0], ...this.backup[1]], 'train.restore_state');
  }

  /** Forward and backward only (no update): fills the LoRA gradients, returns the loss. For tests. */
  async lossAndGrads(ids: Int32Array, targets = shiftTargets(ids, this.B, this.T)): Promise<number> {
    const gpu = this.model.gpu;
    gpu.write(this.io.ids.buffer!, ids);
    gpu.write(this.io.targets.buffer!, targets);
    gpu.run([...this.zero, this.advance, ...this.program], 'train.grads');
    const [loss] = await gpu.read(this.io.result.buffer!, 1);
    return loss;
  }
}
