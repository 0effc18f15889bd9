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
import { Tape } from '../autograd/tape';
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
  /** AdamW's moments per LoRA parameter, in model.lora order. */
  private moments: { key: string; n: number; m: GPUBuffer; v: GPUBuffer }[] = [];
  private dropoutCounter: GPUBuffer; // (1) u32: micro-batches run so far
  /** Optimizer steps taken so far (AdamW's t). */
  steps = 0;
  /** The step restoreState() started from (0 for a fresh run). */
  private restoredAt = 0;
  readonly gradAccum: number;
  readonly transientBytes: number;

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

    const params = model.lora.map((p) => p.tensor);
    const grads = params.map((p) => tape.grad(p).buffer!);
    model.lora.forEach((p, i) => this.grads.set(p.key, grads[i]));
    this.lossSum = gpu.buffer('train.loss_sum', 4);
    this.zero = params.map((p, i) => fill(gpu, `${p.label}.zero_grad`, p.numel, grads[i], 0));
    this.zero.push(fill(gpu, 'train.loss_sum.zero', 1, this.lossSum, 0));
    this.sumLoss = accumulate(gpu, 'train.loss_sum', 1, this.lossSum, this.io.result.buffer!);
    this.advance = rngAdvance(gpu, 'dropout', counter.buffer!);
    if (K > 1) params.forEach((p, i) => this.update.push(scale(gpu, `${p.label}.grad_mean`, p.numel, grads[i], 1 / K)));
    if (opt.maxGradNorm && opt.maxGradNorm > 0) {
      this.update.push(...clipGradNorm(gpu, 'clip', params.map((p, i) => ({ n: p.numel, g: grads[i] })), opt.maxGradNorm));
    }
    const init: Dispatch[] = [];
    params.forEach((p, i) => {
      if (opt.kind === 'sgd') {
        const dispatch = sgdStep(gpu, `${p.label}.sgd`, p.numel, p.buffer!, grads[i], opt.lr);
        this.update.push(dispatch);
        this.sgd.push({ dispatch, n: p.numel });
      } else {
        const m = gpu.buffer(`${p.label}.adam_m`, p.bytes), v = gpu.buffer(`${p.label}.adam_v`, p.bytes);
        init.push(fill(gpu, `${p.label}.adam_m.init`, p.numel, m, 0), fill(gpu, `${p.label}.adam_v.init`, p.numel, v, 0));
        this.moments.push({ key: model.lora[i].key, n: p.numel, m, v });
        const dispatch = adamwStep(gpu, `${p.label}.adamw`, p.numel, { p: p.buffer!, g: grads[i], m, v }, this.hyper(opt.lr), 1);
        this.update.push(dispatch);
        this.adamw.push({ dispatch, n: p.numel });
      }
    });
    if (options.keepLastGood) {
      for (let s = 0; s < 2; s++) {
        const slots = params.map((p) => gpu.buffer(`${p.label}.last_good${s}`, p.bytes));
        // out = ½·(p + p) is an exact copy in f32 (elementwise.ts).
        this.backup.push(params.map((p, i) => addForward(gpu, `${p.label}.backup${s}`, p.numel, p.buffer!, p.buffer!, slots[i], 0.5)));
        this.restore.push(params.map((p, i) => addForward(gpu, `${p.label}.restore${s}`, p.numel, slots[i], slots[i], p.buffer!, 0.5)));
      }
    }
    // Moments start at zero: run their fills once now, leave only the gradient zeroing in every step.
    if (init.length > 0) gpu.run(init, 'train.init');
  }

  private hyper(lr: number) {
    const o = this.opt;
    return { lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay };
  }

  /** Gradient buffers of the LoRA parameters by PEFT key (valid after a backward; for tests). */
  readonly grads = new Map<string, GPUBuffer>();

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
    for (const x of this.moments) out.set(x.key, { m: await gpu.read(x.m, x.n), v: await gpu.read(x.v, x.n) });
    return out;
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
    for (const x of this.moments) {
      const got = moments.get(x.key);
      if (!got || got.m.length !== x.n || got.v.length !== x.n) throw new RangeError(`restoreState: the optimizer state of ${x.key} is missing or not ${x.n} values`);
      gpu.write(x.m, got.m);
      gpu.write(x.v, got.v);
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
