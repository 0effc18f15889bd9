// A Llama-family decoder (Llama, Mistral, Qwen2, Qwen3) with LoRA, recorded on the autograd tape: the forward
// as transformers' LlamaForCausalLM computes it, the loss as the mean next-token cross-entropy, and the
// backward into the LoRA A and B only (every base weight is frozen and gets no gradient).
//
// Glossary: B batch, T sequence, N = B·T rows, C hidden, H heads, KV kv heads, D head dim, I intermediate,
// V vocabulary, R LoRA rank.
//
//   x = embed(ids)                                          (N, C)
//   per layer:  h = x + o_proj(attn(rope(q(rms1(x))), rope(k(rms1(x))), v(rms1(x))))
//               (Qwen3: rope(q_norm(q(…))) and rope(k_norm(k(…))), an RMSNorm over each head's D values)
//               x = h + down(silu(gate(rms2(h))) · up(rms2(h)))
//   logits = rms(x)·Eᵀ, computed in vocabulary chunks          (N, V)
//   loss = mean over predicted tokens of CE(logits[n], target[n])

import type { Gpu } from '../gpu/gpu';
import { Tape, Tensor } from '../autograd/tape';
import { loraLinearBackward, loraLinearForward } from '../autograd/lora_linear';
import { matmul } from '../autograd/matmul';
import { rmsnormBackward, rmsnormForward } from '../autograd/rmsnorm';
import { embeddingForward } from '../autograd/embedding';
import { ropeBackward, ropeForward } from '../autograd/rope';
import { attentionBackward, attentionForward } from '../autograd/attention';
import { swigluBackward, swigluForward } from '../autograd/swiglu';
import { accumulate, addForward } from '../autograd/elementwise';
import { dropoutBackward, dropoutForward } from '../autograd/dropout';
import { crossEntropyBackward, crossEntropyForward, crossEntropyReduce, vocabChunks } from '../autograd/cross_entropy';
import { loraKey, loraScale, type AdapterConfig, type LoraTarget } from '../io/peft';
import { projectionDims, weightShapes, type ModelConfig } from './config';
import type { Weights } from './weights';

export interface LoraParam {
  key: string; // PEFT name
  tensor: Tensor; // persistent, requiresGrad
}

/** LoRA dropout while training: the GPU step counter its masks hash, and a base seed. */
export interface DropoutState {
  counter: Tensor; // (1) u32, advanced once per step on the GPU
  seed: number;
}

export interface StepTensors {
  ids: Tensor; //     (N) i32 input token ids
  targets: Tensor; // (N) i32 next-token ids, −100 where nothing is predicted
  result: Tensor; //  (2) mean loss, count of predicted tokens
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** Rows of a (V, C) table per binding: at most `maxBytes`, a multiple of 256 / gcd(256, 4C) so offsets align. */
export function tableChunkRows(c: number, maxBytes: number): number {
  const align = 256 / gcd(256, 4 * c);
  const rows = Math.floor(maxBytes / (4 * c));
  return Math.max(align, rows - (rows % align));
}

/** Rows [v0, v0 + vc) of a persistent (V, C) weight, as a binding range. */
function rowRange(t: Tensor, v0: number, vc: number, c: number): GPUBufferBinding {
  return { buffer: t.buffer!, offset: v0 * c * 4, size: vc * c * 4 };
}

/**
 * Logit columns per chunk so that one (N, Vc) chunk stays within `maxBytes`. Each chunk binds rows
 * [v0, v0 + Vc) of the (V, C) head matrix at byte offset 4·v0·C, which must be a multiple of 256, so the
 * width is a multiple of 256 / gcd(256, 4C) rows.
 */
export function logitsChunkWidth(n: number, v: number, c: number, maxBytes: number): number {
  const cols = Math.floor(maxBytes / (4 * n));
  if (cols >= v) return v;
  const align = 256 / gcd(256, 4 * c);
  return Math.max(align, cols - (cols % align));
}

export class LlamaModel {
  readonly weights = new Map<string, GPUBuffer>();
  /** LoRA parameters in PEFT key order (layer, target, A then B). */
  lora: LoraParam[] = [];
  adapter: AdapterConfig | undefined;
  /** Largest (N, Vc) logits chunk in bytes; smaller splits the LM head and the loss over the vocabulary. */
  maxLogitsBytes = 64 * 1024 * 1024;
  /**
   * Largest range of a weight bound to one kernel: the device's maxStorageBufferBindingSize. The (V, C)
   * embedding and head of a large vocabulary (Qwen2.5's 151936 × 896 × 4 bytes = 545 MB) can exceed it, so
   * both run in vocabulary chunks of at most this many bytes.
   */
  maxBindingBytes: number;

  /** `weights` null: every weight zero, from the config's shapes alone (the memory plan, src/model/memory.ts). */
  constructor(readonly gpu: Gpu, readonly config: ModelConfig, weights: Weights | null) {
    this.maxBindingBytes = gpu.limits.maxStorageBufferBindingSize;
    for (const [name, shape] of weightShapes(config)) {
      if (weights === null) {
        this.weights.set(name, gpu.zeros(name, 4 * shape.reduce((a, b) => a * b, 1)));
        continue;
      }
      const w = weights.get(name);
      if (!w) throw new Error(`LlamaModel: weight ${name} missing (loadWeights checks this)`);
      this.weights.set(name, gpu.upload(name, w));
    }
  }

  /** Install an adapter (its A and B on the GPU as trainable parameters); `tensors` null: all zero. */
  setAdapter(adapter: AdapterConfig, tensors: Map<string, Float32Array> | null): void {
    for (const p of this.lora) this.gpu.release(p.tensor.buffer!);
    this.adapter = adapter;
    this.lora = [];
    for (let l = 0; l < this.config.layers; l++) {
      for (const t of adapter.targetModules) {
        const { inFeatures, outFeatures } = projectionDims(this.config, t);
        for (const which of ['A', 'B'] as const) {
          const key = loraKey(l, t, which);
          const shape = which === 'A' ? [adapter.r, inFeatures] : [outFeatures, adapter.r];
          const data = tensors?.get(key);
          if (tensors && (!data || data.length !== shape[0] * shape[1])) throw new Error(`setAdapter: ${key} missing or not ${shape.join('×')}`);
          const buf = data ? this.gpu.upload(key, data) : this.gpu.zeros(key, 4 * shape[0] * shape[1]);
          this.lora.push({ key, tensor: new Tensor(key, shape, true, buf) });
          this.lora[this.lora.length - 1].tensor.requiresGrad = true;
        }
      }
    }
  }

  /** Current adapter values, read back from the GPU. */
  async readAdapter(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const p of this.lora) out.set(p.key, await this.gpu.read(p.tensor.buffer!, p.tensor.numel));
    return out;
  }

  private w(tape: Tape, name: string): Tensor {
    const shape = weightShapes(this.config).get(name)!;
    return tape.persistent(name, shape, this.weights.get(name)!);
  }

  private loraOf(layer: number, target: LoraTarget): { A: Tensor; B: Tensor } | undefined {
    if (!this.adapter?.targetModules.includes(target)) return undefined;
    const A = this.lora.find((p) => p.key === loraKey(layer, target, 'A'))!.tensor;
    const B = this.lora.find((p) => p.key === loraKey(layer, target, 'B'))!.tensor;
    return { A, B };
  }

  /**
   * Record the loss of one (B, T) batch on `tape`. With `train`, the caller then runs tape.backward() to
   * record the gradients of every LoRA parameter (accumulated into their .grad buffers).
   */
  recordLoss(tape: Tape, io: StepTensors, B: number, T: number, dropout?: DropoutState): void {
    const c = this.config;
    const N = B * T;
    const xf = this.recordHidden(tape, io.ids, B, T, dropout);
    const head = this.w(tape, c.tied ? 'model.embed_tokens.weight' : 'lm_head.weight');
    const chunk = Math.min(logitsChunkWidth(N, c.vocab, c.hidden, this.maxLogitsBytes), tableChunkRows(c.hidden, this.maxBindingBytes));
    lmHeadLoss(tape, xf, head, io, { n: N, c: c.hidden, v: c.vocab, chunk });
  }

  /**
   * Record the logits (T, V) of a (1, T) sequence, for generation: it records once at its longest length and
   * reads the row of the last real token, since causal attention makes position t independent of the
   * padding after it.
   */
  recordLogits(tape: Tape, ids: Tensor, T: number): Tensor {
    const c = this.config;
    const xf = this.recordHidden(tape, ids, 1, T);
    const head = this.w(tape, c.tied ? 'model.embed_tokens.weight' : 'lm_head.weight');
    const logits = tape.persistent('generate.logits', [T, c.vocab], this.gpu.buffer('generate.logits', T * c.vocab * 4));
    // Column offsets into the logits are binding offsets too: chunks start at multiples of 64 columns (256 bytes).
    const rows = tableChunkRows(c.hidden, this.maxBindingBytes);
    const chunks = vocabChunks(c.vocab, rows >= c.vocab ? c.vocab : Math.max(64, rows - (rows % 64)));
    // Each chunk writes its columns [v0, v0 + vc) of the (T, V) logits: row stride V, column offset by binding.
    tape.op('generate.lm_head', [xf, head], [logits], (b) => chunks.map(({ v0, vc }, i) =>
      matmul(this.gpu, `generate.lm_head.chunk${i}`, { M: T, N: vc, K1: c.hidden, p1: b(xf), q1: rowRange(head, v0, vc, c.hidden), transQ: true,
        c: { buffer: b(logits), offset: v0 * 4, size: ((T - 1) * c.vocab + vc) * 4 }, ldC: c.vocab })));
    return logits;
  }

  /** The final-norm hidden states (N, C) of a (B, T) batch. */
  private recordHidden(tape: Tape, ids: Tensor, B: number, T: number, dropout?: DropoutState): Tensor {
    const c = this.config;
    const N = B * T;
    const C = c.hidden, Q = c.heads * c.headDim, KVD = c.kvHeads * c.headDim;
    const embedded = tape.tensor('embed', [N, C]);
    const table = this.w(tape, 'model.embed_tokens.weight');
    const tableChunks = vocabChunks(c.vocab, tableChunkRows(C, this.maxBindingBytes));
    tape.op('embed', [ids, table], [embedded], (b) => tableChunks.map(({ v0, vc }, i) =>
      embeddingForward(this.gpu, `embed.chunk${i}`, { n: N, c: C, v: vc, v0 }, b(ids), rowRange(table, v0, vc, C), b(embedded))));
    let x = embedded; // the residual stream; node closures must capture a const, never this variable

    for (let l = 0; l < c.layers; l++) {
      const p = `model.layers.${l}`;
      const xn = rmsnorm(tape, `${p}.input_layernorm`, x, this.w(tape, `${p}.input_layernorm.weight`), c.rmsEps);
      const bias = (n: string) => (c.attnBias ? this.w(tape, `${p}.self_attn.${n}.bias`) : undefined);
      const q = linear(tape, `${p}.self_attn.q_proj`, xn, this.w(tape, `${p}.self_attn.q_proj.weight`), bias('q_proj'), Q, this.loraOf(l, 'q_proj'), this.adapter, dropout);
      const k = linear(tape, `${p}.self_attn.k_proj`, xn, this.w(tape, `${p}.self_attn.k_proj.weight`), bias('k_proj'), KVD, this.loraOf(l, 'k_proj'), this.adapter, dropout);
      const v = linear(tape, `${p}.self_attn.v_proj`, xn, this.w(tape, `${p}.self_attn.v_proj.weight`), bias('v_proj'), KVD, this.loraOf(l, 'v_proj'), this.adapter, dropout);
      // Qwen3: q_norm/k_norm over each head's D values, after the projection and before RoPE.
      const qkNorm = (n: string, t: Tensor) => (c.qkNorm ? rmsnorm(tape, `${p}.self_attn.${n}`, t, this.w(tape, `${p}.self_attn.${n}.weight`), c.rmsEps) : t);
      const qr = rope(tape, `${p}.rope_q`, qkNorm('q_norm', q), { B, T, heads: c.heads, D: c.headDim, theta: c.ropeTheta });
      const kr = rope(tape, `${p}.rope_k`, qkNorm('k_norm', k), { B, T, heads: c.kvHeads, D: c.headDim, theta: c.ropeTheta });
      const a = attention(tape, `${p}.self_attn`, qr, kr, v, { B, T, H: c.heads, KV: c.kvHeads, D: c.headDim });
      const o = linear(tape, `${p}.self_attn.o_proj`, a, this.w(tape, `${p}.self_attn.o_proj.weight`), undefined, C, this.loraOf(l, 'o_proj'), this.adapter, dropout);
      const h = add(tape, `${p}.residual1`, x, o);
      const hn = rmsnorm(tape, `${p}.post_attention_layernorm`, h, this.w(tape, `${p}.post_attention_layernorm.weight`), c.rmsEps);
      const g = linear(tape, `${p}.mlp.gate_proj`, hn, this.w(tape, `${p}.mlp.gate_proj.weight`), undefined, c.intermediate, this.loraOf(l, 'gate_proj'), this.adapter, dropout);
      const u = linear(tape, `${p}.mlp.up_proj`, hn, this.w(tape, `${p}.mlp.up_proj.weight`), undefined, c.intermediate, this.loraOf(l, 'up_proj'), this.adapter, dropout);
      const m = swiglu(tape, `${p}.mlp.act`, g, u);
      const d = linear(tape, `${p}.mlp.down_proj`, m, this.w(tape, `${p}.mlp.down_proj.weight`), undefined, C, this.loraOf(l, 'down_proj'), this.adapter, dropout);
      x = add(tape, `${p}.residual2`, h, d);
    }
    return rmsnorm(tape, 'model.norm', x, this.w(tape, 'model.norm.weight'), c.rmsEps);
  }
}

// ---- tape ops: each records its forward node and registers its backward right below it ----------------

/**
 * Normalises every run of len(w) consecutive values of x. For the hidden norms that is a row (N, C); for
 * Qwen3's q_norm/k_norm, x is (N, H·D) with w (D), so each head's vector is one row of the contiguous (N·H, D).
 */
function rmsnorm(tape: Tape, label: string, x: Tensor, w: Tensor, eps: number): Tensor {
  const gpu = tape.gpu;
  const c = w.shape[0], n = x.numel / c;
  const y = tape.propagate(tape.tensor(label, x.shape), [x]);
  const rstd = tape.tensor(`${label}.rstd`, [n]);
  tape.op(`${label}.forward`, [x, w], [y, rstd], (b) => rmsnormForward(gpu, label, { n, c, eps }, { x: b(x), w: b(w), y: b(y), rstd: b(rstd) }));
  tape.onBackward(() => {
    if (!x.requiresGrad || !tape.hasGrad(y)) return;
    const dy = tape.grad(y);
    const { grad: dx, accumulate: acc } = tape.gradSlot(x);
    tape.op(`${label}.backward`, [x, w, rstd, dy], [dx], (b) =>
      rmsnormBackward(gpu, label, { n, c, eps }, { x: b(x), w: b(w), rstd: b(rstd) }, b(dy), b(dx), acc));
  });
  return y;
}

/** y = x·Wᵀ + bias (+ s·(x·Aᵀ)·Bᵀ with LoRA). W and bias frozen. */
export function linear(
  tape: Tape, label: string, x: Tensor, W: Tensor, bias: Tensor | undefined, outF: number,
  lora: { A: Tensor; B: Tensor } | undefined, adapter: AdapterConfig | undefined, dropout?: DropoutState,
): Tensor {
  const gpu = tape.gpu;
  const [n, inF] = x.shape;
  const y = tape.propagate(tape.tensor(label, [n, outF]), lora ? [x, lora.A, lora.B] : [x]);
  const frozen = bias ? [x, W, bias] : [x, W];
  if (!lora || !adapter) {
    tape.op(`${label}.forward`, frozen, [y], (b) =>
      matmul(gpu, `${label}.forward`, { M: n, N: outF, K1: inF, p1: b(x), q1: b(W), transQ: true, bias: bias && b(bias), c: b(y) }));
    tape.onBackward(() => {
      if (!x.requiresGrad || !tape.hasGrad(y)) return;
      const dy = tape.grad(y);
      const { grad: dx, accumulate: acc } = tape.gradSlot(x);
      tape.op(`${label}.backward_dx`, [dy, W], [dx], (b) =>
        matmul(gpu, `${label}.backward_dx`, { M: n, N: inF, K1: outF, p1: b(dy), q1: b(W), c: b(dx), accumulate: acc }));
    });
    return y;
  }
  const r = adapter.r;
  const d = { n, inF, outF, r, scale: loraScale(adapter) };
  const { A, B } = lora;
  const u = tape.tensor(`${label}.u`, [n, r]);
  // PEFT's lora_dropout acts on the adapter's input only: y = x·Wᵀ + s·B(A(dropout(x))).
  const p = dropout ? adapter.loraDropout : 0;
  const seed = dropout ? (dropout.seed ^ labelHash(label)) >>> 0 : 0;
  const xd = p > 0 ? tape.tensor(`${label}.dropout`, [n, inF]) : undefined;
  if (xd) {
    tape.op(`${label}.dropout`, [dropout!.counter, x], [xd], (b) => dropoutForward(gpu, label, x.numel, p, seed, b(dropout!.counter), b(x), b(xd)));
  }
  const adapterIn = xd ?? x;
  tape.op(`${label}.forward`, [...frozen, adapterIn, A, B], [u, y], (b) =>
    loraLinearForward(gpu, label, d, { x: b(x), xLora: xd && b(xd), W: b(W), bias: bias && b(bias), A: b(A), B: b(B), u: b(u), y: b(y) }, matmul));
  tape.onBackward(() => {
    if (!tape.hasGrad(y)) return;
    const dy = tape.grad(y);
    const du = tape.tensor(`${label}.du`, [n, r]);
    const dA = tape.gradSlot(A).grad, dB = tape.gradSlot(B).grad;
    const slot = x.requiresGrad ? tape.gradSlot(x) : undefined;
    const fusedDx = slot && !xd ? slot : undefined;
    tape.op(`${label}.backward`, [x, adapterIn, W, A, B, u, dy], [du, dA, dB, ...(fusedDx ? [fusedDx.grad] : [])], (b) =>
      loraLinearBackward(gpu, label, d, { x: b(x), xLora: xd && b(xd), W: b(W), A: b(A), B: b(B), u: b(u), y: b(y) },
        { dy: b(dy), du: b(du), dx: fusedDx && b(fusedDx.grad), dA: b(dA), dB: b(dB) }, fusedDx?.accumulate, matmul));
    if (slot && xd) {
      // dx = dy·W + dropout_backward(du·A): the dropout mask splits the fused dx GEMM in two.
      const duA = tape.tensor(`${label}.duA`, [n, inF]);
      tape.op(`${label}.backward_dx`, [dy, W, du, A], [slot.grad, duA], (b) => [
        matmul(gpu, `${label}.backward_dx`, { M: n, N: inF, K1: outF, p1: b(dy), q1: b(W), c: b(slot.grad), accumulate: slot.accumulate }),
        matmul(gpu, `${label}.backward_duA`, { M: n, N: inF, K1: r, p1: b(du), q1: b(A), c: b(duA) }),
        dropoutBackward(gpu, label, x.numel, p, seed, b(dropout!.counter), b(duA), b(slot.grad)),
      ]);
    }
  });
  return y;
}

/** FNV-1a of a label: a distinct, stable dropout stream per layer and projection. */
export function labelHash(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function rope(tape: Tape, label: string, x: Tensor, d: { B: number; T: number; heads: number; D: number; theta: number }): Tensor {
  const gpu = tape.gpu;
  const y = tape.propagate(tape.tensor(label, x.shape), [x]);
  tape.op(`${label}.forward`, [x], [y], (b) => ropeForward(gpu, label, d, { x: b(x), y: b(y) }));
  tape.onBackward(() => {
    if (!x.requiresGrad || !tape.hasGrad(y)) return;
    const dy = tape.grad(y);
    const slot = tape.gradSlot(x);
    if (!slot.accumulate) {
      tape.op(`${label}.backward`, [dy], [slot.grad], (b) => ropeBackward(gpu, label, d, { dy: b(dy), dx: b(slot.grad) }));
    } else {
      const tmp = tape.tensor(`${label}.dx`, x.shape);
      tape.op(`${label}.backward`, [dy], [tmp], (b) => ropeBackward(gpu, label, d, { dy: b(dy), dx: b(tmp) }));
      tape.op(`${label}.backward_acc`, [tmp], [slot.grad], (b) => accumulate(gpu, `${label}.backward_acc`, x.numel, b(slot.grad), b(tmp)));
    }
  });
  return y;
}

function attention(tape: Tape, label: string, q: Tensor, k: Tensor, v: Tensor, d: { B: number; T: number; H: number; KV: number; D: number }): Tensor {
  const gpu = tape.gpu;
  const out = tape.propagate(tape.tensor(`${label}.out`, q.shape), [q, k, v]);
  const lse = tape.tensor(`${label}.lse`, [d.B, d.H, d.T]);
  tape.op(`${label}.forward`, [q, k, v], [out, lse], (b) => attentionForward(gpu, label, d, { q: b(q), k: b(k), v: b(v), out: b(out), lse: b(lse) }));
  tape.onBackward(() => {
    if (!tape.hasGrad(out)) return;
    const dout = tape.grad(out);
    const delta = tape.tensor(`${label}.delta`, [d.B, d.H, d.T]);
    // The attention kernels overwrite dq/dk/dv; q, k, v each have this op as their only consumer.
    const grads = [q, k, v].map((t) => (t.requiresGrad ? tape.gradSlot(t).grad : tape.tensor(`${t.label}.unused_grad`, t.shape)));
    tape.op(`${label}.backward`, [q, k, v, out, lse, dout], [delta, ...grads], (b) =>
      attentionBackward(gpu, label, d, { q: b(q), k: b(k), v: b(v), out: b(out), lse: b(lse) },
        { dout: b(dout), delta: b(delta), dq: b(grads[0]), dk: b(grads[1]), dv: b(grads[2]) }));
  });
  return out;
}

function swiglu(tape: Tape, label: string, gate: Tensor, up: Tensor): Tensor {
  const gpu = tape.gpu;
  const n = gate.numel;
  const h = tape.propagate(tape.tensor(label, gate.shape), [gate, up]);
  tape.op(`${label}.forward`, [gate, up], [h], (b) => swigluForward(gpu, label, n, b(gate), b(up), b(h)));
  tape.onBackward(() => {
    if (!tape.hasGrad(h) || !(gate.requiresGrad || up.requiresGrad)) return;
    const dh = tape.grad(h);
    // gate and up are consumed only here, so their gradients are written, never accumulated.
    const dgate = tape.gradSlot(gate).grad, dup = tape.gradSlot(up).grad;
    tape.op(`${label}.backward`, [gate, up, dh], [dgate, dup], (b) => swigluBackward(gpu, label, n, b(gate), b(up), b(dh), b(dgate), b(dup)));
  });
  return h;
}

/** out = a + b; the gradient passes to both unchanged. */
function add(tape: Tape, label: string, a: Tensor, b_: Tensor): Tensor {
  const gpu = tape.gpu;
  const out = tape.propagate(tape.tensor(label, a.shape), [a, b_]);
  tape.op(`${label}.forward`, [a, b_], [out], (b) => addForward(gpu, label, a.numel, b(a), b(b_), b(out)));
  tape.onBackward(() => {
    if (!tape.hasGrad(out)) return;
    const dout = tape.grad(out);
    for (const t of [a, b_]) {
      if (!t.requiresGrad) continue;
      const slot = tape.gradSlot(t);
      tape.op(`${label}.backward`, [dout], [slot.grad], (b) =>
        slot.accumulate
          ? accumulate(gpu, `${label}.backward`, t.numel, b(slot.grad), b(dout))
          : addForward(gpu, `${label}.backward_copy`, t.numel, b(dout), b(dout), b(slot.grad), 0.5)); // ½(g + g) = g exactly
    }
  });
  return out;
}

/**
 * Logits = xf·Eᵀ in vocabulary chunks of `chunk` columns, the mean cross-entropy into io.result, and in the
 * backward dxf = Σ_chunks dlogits_c·E_c. With one chunk the logits stay alive for the backward; with
 * several, each chunk's logits are recomputed in the backward so only one (N, Vc) block exists at a time.
 */
function lmHeadLoss(tape: Tape, xf: Tensor, E: Tensor, io: StepTensors, d: { n: number; c: number; v: number; chunk: number }): void {
  const gpu = tape.gpu;
  const chunks = vocabChunks(d.v, d.chunk);
  const stats = tape.tensor('lm_head.ce_stats', [d.n, 3]);
  const losses = tape.tensor('lm_head.ce_losses', [d.n]);
  const ce = { n: d.n, v: d.v };
  const rowsOf = (v0: number, vc: number) => ({ buffer: E.buffer!, offset: v0 * d.c * 4, size: vc * d.c * 4 });
  const logitsOf = (i: number, v0: number, vc: number, phase: string) => {
    const t = tape.tensor(`lm_head.logits${i}.${phase}`, [d.n, vc]);
    tape.op(`lm_head.chunk${i}.${phase}`, [xf, E], [t], (b) =>
      matmul(gpu, `lm_head.chunk${i}.${phase}`, { M: d.n, N: vc, K1: d.c, p1: b(xf), q1: rowsOf(v0, vc), transQ: true, c: b(t) }));
    return t;
  };
  const kept: Tensor[] = [];
  chunks.forEach(({ v0, vc }, i) => {
    const logits = logitsOf(i, v0, vc, 'forward');
    if (chunks.length === 1) kept.push(logits);
    tape.op(`lm_head.ce_forward${i}`, [logits, io.targets], [stats, losses], (b) =>
      crossEntropyForward(gpu, `lm_head.ce${i}`, ce, { targets: b(io.targets), stats: b(stats), losses: b(losses), result: b(io.result) },
        { logits: b(logits), v0, vc }, i === 0, i === chunks.length - 1));
  });
  tape.op('lm_head.ce_reduce', [io.targets, losses], [io.result], (b) =>
    crossEntropyReduce(gpu, 'lm_head.ce', ce, { targets: b(io.targets), stats: b(stats), losses: b(losses), result: b(io.result) }));
  tape.onBackward(() => {
    if (!xf.requiresGrad) return;
    chunks.forEach(({ v0, vc }, i) => {
      const logits = kept[i] ?? logitsOf(i, v0, vc, 'recompute');
      const dlogits = tape.tensor(`lm_head.dlogits${i}`, [d.n, vc]);
      tape.op(`lm_head.ce_backward${i}`, [logits, io.targets, stats, io.result], [dlogits], (b) =>
        crossEntropyBackward(gpu, `lm_head.ce${i}`, ce, { targets: b(io.targets), stats: b(stats), losses: b(losses), result: b(io.result) },
          { logits: b(logits), v0, vc }, b(dlogits)));
      const slot = tape.gradSlot(xf);
      tape.op(`lm_head.backward${i}`, [dlogits, E], [slot.grad], (b) =>
        matmul(gpu, `lm_head.backward${i}`, { M: d.n, N: d.c, K1: vc, p1: b(dlogits), q1: rowsOf(v0, vc), c: b(slot.grad), accumulate: slot.accumulate }));
    });
  });
}
