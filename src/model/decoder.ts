// The decoder-only transformer every supported architecture is (Llama, Mistral, Qwen2, Qwen3): a composition of
// tape rules from src/autograd, recorded as transformers' LlamaForCausalLM computes it, with LoRA on any
// projection. The loss is the mean next-token cross-entropy; the backward reaches only the LoRA A and B
// (and DoRA's magnitudes; every base weight is frozen and gets no gradient). Generation may instead apply a live
// blend of the trainable adapter and adapters attached beside it (attach; src/autograd/lora_blend.ts). This file records ops and nothing else: the buffers
// live in gpu_weights.ts, the kernels and their backwards in src/autograd, running a program in src/train.
// Use it through CausalLM / createModel (causal_lm.ts).
//
// Glossary: B batch, T sequence, N = B·T rows, C hidden, H heads, KV kv heads, D head dim, I intermediate,
// V vocabulary, R LoRA rank.
//
//   x = embed(ids)                                          (N, C)
//   per layer:  h = x + o_proj(attn(rope(q(rms1(x))), rope(k(rms1(x))), v(rms1(x))))   (each add fused with the norm after it)
//               (Qwen3: rope(q_norm(q(…))) and rope(k_norm(k(…))), an RMSNorm over each head's D values)
//               x = h + down(silu(gate(rms2(h))) · up(rms2(h)))
//   logits = rms(x)·Eᵀ, computed in vocabulary chunks          (N, V)
//   loss = mean over predicted tokens of CE(logits[n], target[n])

import type { Gpu } from '../gpu/gpu';
import type { Tape, Tensor } from '../autograd/tape';
import { linear, type DropoutState, type LoraOperand } from '../autograd/lora_linear';
import { linearBlend, type BlendOperand } from '../autograd/lora_blend';
import { linearGroup } from '../autograd/lora_group';
import { rmsnorm } from '../autograd/rmsnorm';
import { embedding } from '../autograd/embedding';
import { ropeQK } from '../autograd/rope';
import { attention } from '../autograd/attention';
import { swiglu } from '../autograd/swiglu';
import { addRmsnorm } from '../autograd/add_rmsnorm';
import { lmHeadLogits, lmHeadLoss, logitsChunkWidth, tableChunkRows } from '../autograd/lm_head';
import { dequant, type Table } from '../autograd/dequant';
import { UnsupportedError } from '../io/errors';
import { loraKey, loraMagnitudeKey, loraScale, type AdapterConfig, type LoraTarget } from '../io/peft';
import { weightShapes, type ModelConfig } from './config';
import { readLora, releaseAttached, uploadAdapter, uploadAttached, uploadWeights, type GpuWeights, type LoraParam } from './gpu_weights';
import type { BlendTerm, CausalLM, ModelOptions, StepTensors } from './causal_lm';
import type { Weights } from './weights';

/** What one layer's blocks need besides their input: the (B, T) shape and, while training, LoRA dropout. */
interface LayerContext {
  tape: Tape;
  layer: number;
  B: number;
  T: number;
  dropout?: DropoutState;
  /** Generation with a live blend: these adapters (weight ≠ 0) instead of `adapter`. */
  blend?: readonly ResolvedTerm[];
}

// A live blend adds each adapter's s·B·A; DoRA rescales W + s·B·A by its magnitudes, which a sum cannot express.
const DORA_BLEND = 'A DoRA adapter cannot be attached or blended: its magnitudes rescale W + s·B·A as a whole, so it does not add up with other adapters. Load it as the adapter to try it on its own.';

/** A blend term with its adapter found: its settings, its A and B by PEFT key, its weight. */
interface ResolvedTerm {
  config: AdapterConfig;
  tensor: (key: string) => Tensor;
  weight: number;
}

export class Decoder implements CausalLM {
  readonly weights: GpuWeights;
  lora: LoraParam[] = [];
  adapter: AdapterConfig | undefined;
  /** Adapters attached for generation (attach), by the caller's id: frozen A and B beside the trainable adapter. */
  private attached = new Map<string, { config: AdapterConfig; tensors: Map<string, Tensor> }>();
  maxLogitsBytes = 64 * 1024 * 1024;
  /**
   * Every this many layers, the backward recomputes the MLP's gate and up projections (and the norm before
   * them) instead of keeping them from the forward: 2·(N, I) activations fewer per such layer, for 2·N·C·I·2
   * more FLOPs (SmolLM2 at the bench shape: 252 MB less peak, 5% more FLOPs with every third layer). 0: never.
   */
  recomputeMlpEvery = 3;
  /**
   * The (V, C) embedding and head of a large vocabulary (Qwen2.5's 151936 × 896 × 4 bytes = 545 MB) can
   * exceed the device's maxStorageBufferBindingSize, so both run in vocabulary chunks of at most this many bytes.
   */
  maxBindingBytes: number;

  /**
   * `weights` null: every weight zero, from the config's shapes alone (the memory plan, src/model/memory.ts);
   * already uploaded (GpuWeights, a streaming load's weightUploader): taken as they are.
   */
  readonly options: Required<ModelOptions>;

  constructor(readonly gpu: Gpu, readonly config: ModelConfig, weights: Weights | GpuWeights | null, options: ModelOptions = {}) {
    this.maxBindingBytes = gpu.limits.maxStorageBufferBindingSize;
    const uploaded = weights !== null && !(weights.values().next().value instanceof Float32Array);
    this.weights = uploaded ? (weights as GpuWeights) : uploadWeights(gpu, config, weights as Weights | null, options.baseDtype ?? 'f32');
    // Weights uploaded as the checkpoint stored them have the base dtype of their projections.
    const held = this.weights.get('model.layers.0.self_attn.q_proj.weight')!.format;
    this.options = { baseDtype: options.baseDtype ?? held, recompute: options.recompute ?? false };
  }

  setAdapter(adapter: AdapterConfig, tensors: Map<string, Float32Array> | null): void {
    const previous = this.lora;
    this.adapter = adapter;
    this.lora = [];
    this.lora = uploadAdapter(this.gpu, this.config, adapter, tensors, previous, this.weights);
  }

  readAdapter(): Promise<Map<string, Float32Array>> {
    return readLora(this.gpu, this.lora);
  }

  attach(id: string, adapter: AdapterConfig, tensors: ReadonlyMap<string, Float32Array>): void {
    if (this.attached.has(id)) throw new Error(`attach: ${id} is attached already`);
    if (adapter.useDora) throw new UnsupportedError(undefined, DORA_BLEND);
    this.attached.set(id, { config: adapter, tensors: uploadAttached(this.gpu, this.config, adapter, tensors) });
  }

  detach(id: string): void {
    const a = this.attached.get(id);
    if (!a) return;
    releaseAttached(this.gpu, a.tensors);
    this.attached.delete(id);
  }

  recordLoss(tape: Tape, io: StepTensors, B: number, T: number, dropout?: DropoutState): void {
    const c = this.config;
    const xf = this.recordHidden(tape, io.ids, B, T, dropout);
    const chunk = Math.min(logitsChunkWidth(B * T, c.vocab, c.hidden, this.maxLogitsBytes), this.chunkRows());
    lmHeadLoss(tape, xf, this.head(tape), io, chunk);
  }

  recordLogits(tape: Tape, ids: Tensor, logits: Tensor, blend?: readonly BlendTerm[]): void {
    const xf = this.recordHidden(tape, ids, 1, ids.numel, undefined, blend && this.resolve(blend));
    lmHeadLogits(tape, 'generate.lm_head', xf, this.head(tape), logits, this.chunkRows());
  }

  /** The final-norm hidden states (N, C) of a (B, T) batch. */
  private recordHidden(tape: Tape, ids: Tensor, B: number, T: number, dropout?: DropoutState, blend?: readonly ResolvedTerm[]): Tensor {
    const c = this.config;
    let x = embedding(tape, 'embed', ids, this.table(tape, 'model.embed_tokens.weight'), this.chunkRows()); // the residual stream
    // Each residual add is fused with the norm that reads its sum (add_rmsnorm.ts): the attention block's with
    // post_attention_layernorm, the MLP's with the next layer's input_layernorm, the last with model.norm.
    let xn = rmsnorm(tape, 'model.layers.0.input_layernorm', x, this.w(tape, 'model.layers.0.input_layernorm.weight'), c.rmsEps);
    for (let layer = 0; layer < c.layers; layer++) {
      const ctx: LayerContext = { tape, layer, B, T, dropout, blend };
      const p = `model.layers.${layer}`;
      const norm = layer + 1 < c.layers ? `model.layers.${layer + 1}.input_layernorm` : 'model.norm';
      const block = (): [Tensor, Tensor] => {
        const [h, hn] = addRmsnorm(tape, { add: `${p}.residual1`, norm: `${p}.post_attention_layernorm` }, x, this.attentionBlock(ctx, xn),
          this.w(tape, `${p}.post_attention_layernorm.weight`), c.rmsEps);
        return addRmsnorm(tape, { add: `${p}.residual2`, norm }, h, this.mlpBlock(ctx, hn), this.w(tape, `${norm}.weight`), c.rmsEps);
      };
      // Recompute (options.recompute): the layer keeps only its input x (its normed xn is recomputed from x,
      // bit for bit); the backward records the layer's forward again just before the layer's own backward.
      [x, xn] = this.options.recompute ? tape.checkpoint(block) : block();
    }
    return xn;
  }

  /**
   * o_proj(attention(rope(q), rope(k), v)) of the normed input xn (N, C). With config.qkNorm (Qwen3's
   * q_norm/k_norm) an RMSNorm sits between the projections and RoPE: rmsnorm with a (D) weight normalises
   * each head of a (N, H·D) tensor, the contiguous (N·H, D) rows.
   */
  private attentionBlock(ctx: LayerContext, xn: Tensor): Tensor {
    const { tape, B, T } = ctx;
    const c = this.config;
    const p = `model.layers.${ctx.layer}.self_attn`;
    const [q, k, v] = this.projGroup(ctx, `${p}.qkv`, xn, (['q_proj', 'k_proj', 'v_proj'] as const).map((t) => [`${p}.${t}`, t, c.attnBias]));
    const l = `model.layers.${ctx.layer}`;
    const qkNorm = (n: string, t: Tensor) => (c.qkNorm ? rmsnorm(tape, `${p}.${n}`, t, this.w(tape, `${p}.${n}.weight`), c.rmsEps) : t);
    const [qr, kr] = ropeQK(tape, `${l}.rope`, qkNorm('q_norm', q), qkNorm('k_norm', k), { B, T, heads: c.heads, D: c.headDim, theta: c.ropeTheta }, c.kvHeads);
    const a = attention(tape, p, qr, kr, v, { B, T, H: c.heads, KV: c.kvHeads, D: c.headDim });
    return this.proj(ctx, `${p}.o_proj`, 'o_proj', a, false);
  }

  /** down(silu(gate(hn))·up(hn)) of the normed input hn (N, C). */
  private mlpBlock(ctx: LayerContext, hn: Tensor): Tensor {
    const p = `model.layers.${ctx.layer}.mlp`;
    const every = this.recomputeMlpEvery;
    // A recomputed layer recomputes its MLP anyway.
    const recompute = !this.options.recompute && every > 0 && ctx.layer % every === every - 1;
    const [g, u] = this.projGroup(ctx, `${p}.gate_up`, hn, [[`${p}.gate_proj`, 'gate_proj', false], [`${p}.up_proj`, 'up_proj', false]], recompute);
    return this.proj(ctx, `${p}.down_proj`, 'down_proj', swiglu(ctx.tape, `${p}.act`, g, u), false);
  }

  /** The projection `name` (its weight `${name}.weight`, bias if `hasBias`), with the adapter's LoRA on `target`. */
  private proj(ctx: LayerContext, name: string, target: LoraTarget, x: Tensor, hasBias: boolean): Tensor {
    const { tape } = ctx;
    const bias = hasBias ? this.w(tape, `${name}.bias`) : undefined;
    if (ctx.blend) return linearBlend(tape, name, x, this.w(tape, `${name}.weight`), bias, this.blendOf(ctx.layer, target, ctx.blend));
    return linear(tape, name, x, this.w(tape, `${name}.weight`), bias, this.loraOf(ctx.layer, target), ctx.dropout);
  }

  /** The projections of one input `x` as one rule (lora_group.ts): [name, target, hasBias] each. */
  private projGroup(ctx: LayerContext, label: string, x: Tensor, projs: [string, LoraTarget, boolean][], recompute = false): Tensor[] {
    const { tape } = ctx;
    // A live blend (generation only) applies its adapters projection by projection.
    if (ctx.blend) return projs.map(([name, target, hasBias]) => this.proj(ctx, name, target, x, hasBias));
    return linearGroup(tape, label, x, projs.map(([name, target, hasBias]) => ({
      label: name, W: this.w(tape, `${name}.weight`), bias: hasBias ? this.w(tape, `${name}.bias`) : undefined, lora: this.loraOf(ctx.layer, target),
    })), ctx.dropout, { recompute });
  }

  private loraOf(layer: number, target: LoraTarget): LoraOperand | undefined {
    const adapter = this.adapter;
    if (!adapter?.targetModules.includes(target)) return undefined;
    const A = this.lora.find((p) => p.key === loraKey(layer, target, 'A'))!.tensor;
    const B = this.lora.find((p) => p.key === loraKey(layer, target, 'B'))!.tensor;
    const lora: LoraOperand = { A, B, scale: loraScale(adapter), dropout: adapter.loraDropout };
    // Only a DoRA operand carries the key: linearGroup batches an operand whose fields it knows, and falls back otherwise.
    if (adapter.useDora) lora.magnitude = this.lora.find((p) => p.key === loraMagnitudeKey(layer, target))!.tensor;
    return lora;
  }

  /** The terms of a live blend that act (weight ≠ 0), each with its adapter: the held one (id null) or an attached one. */
  private resolve(blend: readonly BlendTerm[]): ResolvedTerm[] {
    return blend.filter((t) => t.weight !== 0).map((t) => {
      if (t.id === null) {
        if (!this.adapter) throw new Error('recordLogits: the blend names the model\'s adapter, but it has none');
        if (this.adapter.useDora) throw new UnsupportedError(undefined, DORA_BLEND);
        const lora = new Map(this.lora.map((p) => [p.key, p.tensor]));
        return { config: this.adapter, tensor: (k: string) => lora.get(k)!, weight: t.weight };
      }
      const a = this.attached.get(t.id);
      if (!a) throw new Error(`recordLogits: no adapter ${t.id} is attached`);
      return { config: a.config, tensor: (k: string) => a.tensors.get(k)!, weight: t.weight };
    });
  }

  /**
   * The blend's adapters on `target` of `layer`, each with its weight w folded into its scale as
   * α·w/r (α·w/√r with rsLoRA): so weight 1 is the adapter's own scale exactly, as PEFT's cat takes wᵢ·sᵢ.
   */
  private blendOf(layer: number, target: LoraTarget, blend: readonly ResolvedTerm[]): BlendOperand[] {
    return blend.filter((t) => t.config.targetModules.includes(target)).map((t) => ({
      A: t.tensor(loraKey(layer, target, 'A')),
      B: t.tensor(loraKey(layer, target, 'B')),
      scale: loraScale({ ...t.config, loraAlpha: t.config.loraAlpha * t.weight }),
    }));
  }

  /** The (V, C) head: lm_head.weight, or the embedding when tied. */
  private head(tape: Tape): Table {
    return this.table(tape, this.config.tied ? 'model.embed_tokens.weight' : 'lm_head.weight');
  }

  /**
   * Rows of a (V, C) table per chunk: what one binding holds, and for a stored table, dequantized a chunk at
   * a time, no more than a logits chunk (maxLogitsBytes), so the float32 copy of a chunk stays small.
   */
  private chunkRows(): number {
    const stored = this.weights.get('model.embed_tokens.weight')!.format !== 'f32';
    return tableChunkRows(this.config.hidden, stored ? Math.min(this.maxBindingBytes, this.maxLogitsBytes) : this.maxBindingBytes);
  }

  /** A (V, C) table: a float32 one as a persistent tensor, any other as stored (read chunk by chunk, dequant.ts). */
  private table(tape: Tape, name: string): Table {
    const stored = this.weights.get(name)!;
    return stored.format === 'f32' ? this.w(tape, name) : stored;
  }

  /**
   * A base weight on `tape`: a float32 one as a persistent tensor; any other dequantized into a virtual one
   * right here, before the op that reads it, and dequantized again for a backward that reads it (recomputable),
   * so no float32 copy is kept from the forward to the backward.
   */
  private w(tape: Tape, name: string): Tensor {
    const stored = this.weights.get(name)!;
    if (stored.format === 'f32') return tape.persistent(name, weightShapes(this.config).get(name)!, stored.data);
    const W = dequant(tape, `${name}.dequant`, stored);
    tape.recomputable(W, () => dequant(tape, `${name}.redequant`, stored));
    return W;
  }
}
