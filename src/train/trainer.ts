// Training and evaluation programs: a step (zero grads → forward → loss → backward → optimizer) recorded
// once on the tape and replayed as ONE command buffer per step; the only CPU read-back is the loss, once per
// step (or less often). Evaluation records the forward alone.
//
// Shapes: B batch, T sequence, N = B·T.

import type { Dispatch, Gpu } from '../gpu/gpu';
import { packUniform } from '../gpu/uniforms';
import { Tape } from '../autograd/tape';
import { fill } from '../autograd/elementwise';
import { rngAdvance } from '../autograd/dropout';
import { adamwParams, adamwStep, clipGradNorm, OPTIMIZER_PARAMS, sgdStep } from '../autograd/optimizer';
import { IGNORE_INDEX } from '../autograd/cross_entropy';
import type { LlamaModel, StepTensors } from '../model/llama';

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

  constructor(readonly model: LlamaModel, readonly B: number, readonly T: number) {
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

export class Trainer {
  private io: StepTensors;
  private step0: Dispatch[]; // zero the LoRA gradients
  private program: Dispatch[]; // forward, loss, backward
  private update: Dispatch[] = []; // clipping and the optimizer
  private adamw: { dispatch: Dispatch; n: number }[] = [];
  /** Optimizer steps taken so far (AdamW's t). */
  steps = 0;
  readonly transientBytes: number;

  constructor(readonly model: LlamaModel, readonly B: number, readonly T: number, readonly opt: OptimizerSettings, seed = 0) {
    const gpu = model.gpu;
    const tape = new Tape(gpu);
    this.io = ioTensors(tape, gpu, B * T);
    const counter = tape.persistent('dropout.step', [1], gpu.upload('dropout.step', new Uint32Array(1)));
    model.recordLoss(tape, this.io, B, T, { counter, seed });
    tape.backward();
    const compiled = tape.compile();
    this.program = compiled.dispatches;
    this.transientBytes = compiled.transientBytes;

    const params = model.lora.map((p) => p.tensor);
    const grads = params.map((p) => tape.grad(p).buffer!);
    model.lora.forEach((p, i) => this.grads.set(p.key, grads[i]));
    this.step0 = params.map((p, i) => fill(gpu, `${p.label}.zero_grad`, p.numel, grads[i], 0));
    const advance = rngAdvance(gpu, 'dropout', counter.buffer!);
    if (opt.maxGradNorm && opt.maxGradNorm > 0) {
      this.update.push(...clipGradNorm(gpu, 'clip', params.map((p, i) => ({ n: p.numel, g: grads[i] })), opt.maxGradNorm));
    }
    params.forEach((p, i) => {
      if (opt.kind === 'sgd') {
        this.update.push(sgdStep(gpu, `${p.label}.sgd`, p.numel, p.buffer!, grads[i], opt.lr));
      } else {
        const m = gpu.buffer(`${p.label}.adam_m`, p.bytes), v = gpu.buffer(`${p.label}.adam_v`, p.bytes);
        this.step0.push(fill(gpu, `${p.label}.adam_m.init`, p.numel, m, 0), fill(gpu, `${p.label}.adam_v.init`, p.numel, v, 0));
        const dispatch = adamwStep(gpu, `${p.label}.adamw`, p.numel, { p: p.buffer!, g: grads[i], m, v }, this.hyper, 1);
        this.update.push(dispatch);
        this.adamw.push({ dispatch, n: p.numel });
      }
    });
    // Moments start at zero: run their fills once now, leave only the gradient zeroing in every step.
    gpu.run(this.step0.splice(params.length), 'train.init');
    this.step0.push(advance);
  }

  private get hyper() {
    const o = this.opt;
    return { lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay };
  }

  /** Gradient buffers of the LoRA parameters by PEFT key (valid after a backward; for tests). */
  readonly grads = new Map<string, GPUBuffer>();

  /**
   * One optimizer step on one (B, T) batch: one command buffer, then one read of the loss (computed before
   * the update, as in PyTorch's loop).
   */
  async step(ids: Int32Array, targets = shiftTargets(ids, this.B, this.T)): Promise<number> {
    const gpu = this.model.gpu;
    this.steps++;
    // AdamW's bias corrections depend on t: rewrite its uniforms (a queue write, not a read-back).
    for (const a of this.adamw) gpu.device.queue.writeBuffer(a.dispatch.uniforms[0], 0, packUniform(OPTIMIZER_PARAMS, adamwParams(a.n, this.hyper, this.steps)));
    gpu.write(this.io.ids.buffer!, ids);
    gpu.write(this.io.targets.buffer!, targets);
    gpu.run([...this.step0, ...this.program, ...this.update], 'train.step');
    const [loss] = await gpu.read(this.io.result.buffer!, 1);
    return loss;
  }

  /** Forward and backward only (no update): fills the LoRA gradients, returns the loss. For tests. */
  async lossAndGrads(ids: Int32Array, targets = shiftTargets(ids, this.B, this.T)): Promise<number> {
    const gpu = this.model.gpu;
    gpu.write(this.io.ids.buffer!, ids);
    gpu.write(this.io.targets.buffer!, targets);
    gpu.run([...this.step0, ...this.program], 'train.grads');
    const [loss] = await gpu.read(this.io.result.buffer!, 1);
    return loss;
  }
}
