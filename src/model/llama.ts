// A Llama-family decoder (Llama, Mistral, Qwen2) with LoRA, recorded on the autograd tape: the forward
// as transformers' LlamaForCausalLM computes it, the loss as the mean next-token cross-entropy, and the
// backward into the LoRA A and B only (every base weight is frozen and gets no gradient).
//
// Glossary: B batch, T sequence, N = B·T rows, C hidden, H heads, KV kv heads, D head dim, I intermediate,
// V vocabulary, R LoRA rank.
//
//   x = embed(ids)                                          (N, C)
//   per layer:  h = x + o_proj(attn(rope(q(rms1(x))), rope(k(rms1(x))), v(rms1(x))))
//               x = h + down(silu(gate(rms2(h))) · up(rms2(h)))
//   logits = rms(x)·Eᵀ, computed in vocabulary chunks          (N, V)
//   loss = mean over predicted tokens of CE(logits[n], target[n])

import type { Gpu } from '../gpu/gpu';
import { Tape, Tensor } from '../autograd/tape';
import { linear, type DropoutState, type LoraOperand } from '../autograd/lora_linear';
import { rmsnorm } from '../autograd/rmsnorm';
import { embedding } from '../autograd/embedding';
import { rope } from '../autograd/rope';
import { attention } from '../autograd/attention';
import { swiglu } from '../autograd/swiglu';
import { add } from '../autograd/elementwise';
import { lmHeadLogits, lmHeadLoss, tableChunkRows, logitsChunkWidth } from '../autograd/lm_head';
import { loraKey, loraScale, type AdapterConfig, type LoraTarget } from '../io/peft';
import { projectionDims, weightShapes, type ModelConfig } from './config';
import type { Weights } from './weights';

export interface LoraParam {
  key: string; // PEFT name
  tensor: Tensor; // persistent, requiresGrad
}

export interface StepTensors {
  ids: Tensor; //     (N) i32 input token ids
  targets: Tensor; // (N) i32 next-token ids, −100 where nothing is predicted
  result: Tensor; //  (2) mean loss, count of predicted tokens
}

export { tableChunkRows, logitsChunkWidth };
export type { DropoutState };

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

  constructor(readonly gpu: Gpu, readonly config: ModelConfig, weights: Weights) {
    this.maxBindingBytes = gpu.limits.maxStorageBufferBindingSize;
    for (const [name] of weightShapes(config)) {
      const w = weights.get(name);
      if (!w) throw new Error(`LlamaModel: weight ${name} missing (loadWeights checks this)`);
      this.weights.set(name, gpu.upload(name, w));
    }
  }

  /** Install an adapter (its A and B on the GPU as trainable parameters). */
  setAdapter(adapter: AdapterConfig, tensors: Map<string, Float32Array>): void {
    for (const p of this.lora) this.gpu.release(p.tensor.buffer!);
    this.adapter = adapter;
    this.lora = [];
    for (let l = 0; l < this.config.layers; l++) {
      for (const t of adapter.targetModules) {
        const { inFeatures, outFeatures } = projectionDims(this.config, t);
        for (const which of ['A', 'B'] as const) {
          const key = loraKey(l, t, which);
          const data = tensors.get(key);
          const shape = which === 'A' ? [adapter.r, inFeatures] : [outFeatures, adapter.r];
          if (!data || data.length !== shape[0] * shape[1]) throw new Error(`setAdapter: ${key} missing or not ${shape.join('×')}`);
          const buf = this.gpu.upload(key, data);
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

  private loraOf(layer: number, target: LoraTarget): LoraOperand | undefined {
    const adapter = this.adapter;
    if (!adapter?.targetModules.includes(target)) return undefined;
    const A = this.lora.find((p) => p.key === loraKey(layer, target, 'A'))!.tensor;
    const B = this.lora.find((p) => p.key === loraKey(layer, target, 'B'))!.tensor;
    return { A, B, scale: loraScale(adapter), dropout: adapter.loraDropout };
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
    lmHeadLoss(tape, xf, head, io, chunk);
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
    lmHeadLogits(tape, 'generate.lm_head', xf, head, logits, tableChunkRows(c.hidden, this.maxBindingBytes));
    return logits;
  }

  /** The final-norm hidden states (N, C) of a (B, T) batch. */
  private recordHidden(tape: Tape, ids: Tensor, B: number, T: number, dropout?: DropoutState): Tensor {
    const c = this.config;
    const C = c.hidden;
    const embedded = embedding(tape, 'embed', ids, this.w(tape, 'model.embed_tokens.weight'), tableChunkRows(C, this.maxBindingBytes));
    let x = embedded; // the residual stream; node closures must capture a const, never this variable

    for (let l = 0; l < c.layers; l++) {
      const p = `model.layers.${l}`;
      const xn = rmsnorm(tape, `${p}.input_layernorm`, x, this.w(tape, `${p}.input_layernorm.weight`), c.rmsEps);
      const bias = (n: string) => (c.attnBias ? this.w(tape, `${p}.self_attn.${n}.bias`) : undefined);
      const q = linear(tape, `${p}.self_attn.q_proj`, xn, this.w(tape, `${p}.self_attn.q_proj.weight`), bias('q_proj'), this.loraOf(l, 'q_proj'), dropout);
      const k = linear(tape, `${p}.self_attn.k_proj`, xn, this.w(tape, `${p}.self_attn.k_proj.weight`), bias('k_proj'), this.loraOf(l, 'k_proj'), dropout);
      const v = linear(tape, `${p}.self_attn.v_proj`, xn, this.w(tape, `${p}.self_attn.v_proj.weight`), bias('v_proj'), this.loraOf(l, 'v_proj'), dropout);
      const qr = rope(tape, `${p}.rope_q`, q, { B, T, heads: c.heads, D: c.headDim, theta: c.ropeTheta });
      const kr = rope(tape, `${p}.rope_k`, k, { B, T, heads: c.kvHeads, D: c.headDim, theta: c.ropeTheta });
      const a = attention(tape, `${p}.self_attn`, qr, kr, v, { B, T, H: c.heads, KV: c.kvHeads, D: c.headDim });
      const o = linear(tape, `${p}.self_attn.o_proj`, a, this.w(tape, `${p}.self_attn.o_proj.weight`), undefined, this.loraOf(l, 'o_proj'), dropout);
      const h = add(tape, `${p}.residual1`, x, o);
      const hn = rmsnorm(tape, `${p}.post_attention_layernorm`, h, this.w(tape, `${p}.post_attention_layernorm.weight`), c.rmsEps);
      const g = linear(tape, `${p}.mlp.gate_proj`, hn, this.w(tape, `${p}.mlp.gate_proj.weight`), undefined, this.loraOf(l, 'gate_proj'), dropout);
      const u = linear(tape, `${p}.mlp.up_proj`, hn, this.w(tape, `${p}.mlp.up_proj.weight`), undefined, this.loraOf(l, 'up_proj'), dropout);
      const m = swiglu(tape, `${p}.mlp.act`, g, u);
      const d = linear(tape, `${p}.mlp.down_proj`, m, this.w(tape, `${p}.mlp.down_proj.weight`), undefined, this.loraOf(l, 'down_proj'), dropout);
      x = add(tape, `${p}.residual2`, h, d);
    }
    return rmsnorm(tape, 'model.norm', x, this.w(tape, 'model.norm.weight'), c.rmsEps);
  }
}
