// Text generation for "Try it" and the CLI's `generate`: greedy or sampled (temperature, top-k) continuation
// of a prompt, with the base model, its adapter, or a live blend of adapters. One forward program is recorded for the longest sequence and replayed per
// new token (no KV cache yet: each token re-runs the prompt, which is cheap at the studio's context lengths).
// The model records the program (CausalLM.recordLogits); this file owns its input and output buffers and runs it.

import { Tape } from '../autograd/tape';
import type { Dispatch } from '../gpu/gpu';
import { mulberry32 } from '../util/random';
import type { BlendTerm, CausalLM } from '../model/causal_lm';

export interface SampleSettings {
  maxNewTokens: number;
  /** 0: greedy (argmax). */
  temperature: number;
  /** 0: no top-k cut. */
  topK: number;
  seed: number;
  /** Stop at these token ids (e.g. the tokenizer's EOS). */
  stopIds?: number[];
}

/** The next token from one row of logits: argmax at temperature 0, else softmax(logits/temperature) over the top k. */
export function sampleToken(logits: Float32Array, s: Pick<SampleSettings, 'temperature' | 'topK'>, rand: () => number): number {
  if (s.temperature <= 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  let idx = Array.from(logits.keys());
  if (s.topK > 0 && s.topK < idx.length) idx = idx.sort((a, b) => logits[b] - logits[a]).slice(0, s.topK);
  const max = Math.max(...idx.map((i) => logits[i]));
  const w = idx.map((i) => Math.exp((logits[i] - max) / s.temperature));
  let u = rand() * w.reduce((a, b) => a + b, 0);
  for (let j = 0; j < idx.length; j++) if ((u -= w[j]) <= 0) return idx[j];
  return idx[idx.length - 1];
}

export class Generator {
  private dispatches: Dispatch[];
  private ids: GPUBuffer;
  private logits: GPUBuffer;

  /**
   * `maxLen`: the longest prompt + continuation this generator serves (≤ the model's context). `blend`: the
   * adapters it applies and their weights (CausalLM.recordLogits; [] the base model), recorded into its
   * program; default the model's adapter as it is.
   */
  constructor(readonly model: CausalLM, readonly maxLen: number, readonly blend?: readonly BlendTerm[]) {
    const { gpu, config } = model;
    if (maxLen > config.maxPositions) throw new RangeError(`generation length ${maxLen} exceeds the model's context of ${config.maxPositions} tokens`);
    const tape = new Tape(gpu);
    this.ids = gpu.buffer('generate.ids', maxLen * 4); //                      (T) i32, padded after the prompt
    this.logits = gpu.buffer('generate.logits', maxLen * config.vocab * 4); // (T, V)
    const ids = tape.persistent('generate.ids', [maxLen], this.ids);
    model.recordLogits(tape, ids, tape.persistent('generate.logits', [maxLen, config.vocab], this.logits), blend);
    this.dispatches = tape.compile().dispatches;
  }

  /** Logits (V) of the token after `tokens` (tokens.length ≤ maxLen). */
  async nextLogits(tokens: number[]): Promise<Float32Array> {
    const { gpu, config } = this.model;
    const padded = new Int32Array(this.maxLen);
    padded.set(tokens);
    gpu.write(this.ids, padded);
    gpu.run(this.dispatches, 'generate.step');
    return gpu.read(this.logits, config.vocab, (tokens.length - 1) * config.vocab);
  }

  /** Continue `prompt`; calls `onToken` as each token arrives. Returns the new tokens. */
  async generate(prompt: number[], s: SampleSettings, onToken?: (id: number) => void): Promise<number[]> {
    if (prompt.length === 0) throw new RangeError('the prompt is empty: give at least one token');
    const rand = mulberry32(s.seed);
    const tokens = prompt.slice(-this.maxLen);
    const out: number[] = [];
    while (out.length < s.maxNewTokens && tokens.length < this.maxLen) {
      const id = sampleToken(await this.nextLogits(tokens), s, rand);
      if (s.stopIds?.includes(id)) break;
      tokens.push(id);
      out.push(id);
      onToken?.(id);
    }
    return out;
  }
}
