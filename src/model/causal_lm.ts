// What the trainer, the session, the CLI and the bench see of a model: `CausalLM`, a causal language model
// with LoRA that records its loss or its logits on an autograd tape. `createModel` (factory.ts) builds one
// from a config and its weights. Llama, Mistral, Qwen2 and Qwen3 are configurations of the one decoder
// (decoder.ts): biases on q/k/v (config.attnBias), a per-head q/k norm (config.qkNorm) and a tied head
// (config.tied) are flags, not classes.
// The model only records; running a recorded program is src/train's (trainer.ts, generate.ts).
//
// Shapes: B batch, T sequence, N = B·T rows, V vocabulary.

import type { Gpu } from '../gpu/gpu';
import type { Tape, Tensor } from '../autograd/tape';
import type { DropoutState } from '../autograd/lora_linear';
import type { AdapterConfig } from '../io/peft';
import type { ModelConfig } from './config';
import type { GpuWeights, LoraParam } from './gpu_weights';

/**
 * How the frozen base weights are held on the GPU: float32, the checkpoint's 2-byte floats, or quantized at
 * load (NF4: QLoRA's 4-bit NormalFloat, absmax per block of 64; int8: per-output-channel absmax). Adapters,
 * gradients, optimizer state and all arithmetic stay float32 whatever this is.
 */
export type BaseDtype = 'f32' | 'bf16' | 'f16' | 'nf4' | 'int8';
export const BASE_DTYPES: readonly BaseDtype[] = ['f32', 'bf16', 'f16', 'nf4', 'int8'];

/** How a model is built besides its config and weights. */
export interface ModelOptions {
  /** How the frozen base weights are stored (default f32). */
  baseDtype?: BaseDtype;
  /** Drop each decoder layer's activations after the forward and recompute them in the backward. */
  recompute?: boolean;
}

export interface StepTensors {
  ids: Tensor; //     (N) i32 input token ids
  targets: Tensor; // (N) i32 next-token ids, −100 where nothing is predicted
  result: Tensor; //  (2) mean loss, count of predicted tokens
}

/**
 * One adapter of a live blend in generation: an attached one by its id (CausalLM.attach), or (id null) the
 * model's own trainable adapter; `weight` multiplies its scale (PEFT's add_weighted_adapter weight: any
 * finite number, negative subtracts; 0 leaves it out).
 */
export interface BlendTerm {
  id: string | null;
  weight: number;
}

export interface CausalLM {
  readonly gpu: Gpu;
  readonly config: ModelConfig;
  /** The frozen base weights on the GPU, by Hugging Face tensor name. */
  readonly weights: GpuWeights;
  /** LoRA parameters in PEFT key order (layer, target, A then B). */
  lora: LoraParam[];
  adapter: AdapterConfig | undefined;
  /** Largest (N, Vc) logits chunk in bytes; smaller splits the LM head and the loss over the vocabulary. */
  maxLogitsBytes: number;
  /** Largest range of a weight bound to one kernel (the device's maxStorageBufferBindingSize by default). */
  maxBindingBytes: number;
  /** What the model was built with (createModel's options, defaults filled in). */
  readonly options: Required<ModelOptions>;
  /** Every this many layers the backward recomputes the MLP's gate and up instead of keeping them; 0: never. */
  recomputeMlpEvery: number;

  /** Install an adapter (its A and B on the GPU as trainable parameters), replacing the current one. */
  /** `tensors` null: an adapter of zeros (the memory plan). */
  setAdapter(adapter: AdapterConfig, tensors: Map<string, Float32Array> | null): void;
  /** Current adapter values by PEFT key, read back from the GPU. */
  readAdapter(): Promise<Map<string, Float32Array>>;
  /**
   * Upload an adapter (already checked against this model) beside the trainable one, frozen, for generation
   * with a live blend; nothing of the base model is uploaded again. `id` names it in a BlendTerm.
   */
  attach(id: string, adapter: AdapterConfig, tensors: ReadonlyMap<string, Float32Array>): void;
  /** Give an attached adapter's buffers back (programs recorded with it must be dropped first). */
  detach(id: string): void;
  /**
   * Record the mean next-token loss of one (B, T) batch into io.result. With `dropout` (training) LoRA
   * dropout is on; the caller then runs tape.backward() to record the LoRA gradients.
   */
  recordLoss(tape: Tape, io: StepTensors, B: number, T: number, dropout?: DropoutState): void;
  /**
   * Record the logits (T, V) of a (1, T) sequence `ids` into the caller's persistent `logits`, for generation.
   * Causal attention makes position t independent of the padding after it, so one recording at the longest
   * length serves every shorter prompt: read the row of the last real token. `blend`: apply exactly these
   * adapters at these weights ([]: the base model) instead of the trainable adapter as it is.
   */
  recordLogits(tape: Tape, ids: Tensor, logits: Tensor, blend?: readonly BlendTerm[]): void;
}
