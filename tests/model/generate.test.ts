// Generation: the logits the Generator reads (padded sequence, one recorded program) equal the float64
// reference's at every position, greedy decoding follows the reference's argmax chain, and sampling
// respects temperature 0 and top-k.

import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { testGpu, relMaxDiff } from '../gpu/test-gpu';
import { loadAdapterDir, loadModelDir } from '../../src/cli/files';
import { createModel } from '../../src/model/factory';
import { Generator, sampleToken } from '../../src/train/generate';
import { parseLoraKey } from '../../src/io/peft';
import { mulberry32 } from '../../src/model/lora';
import * as ref from '../reference/ops';

async function fixture() {
  const dir = fileURLToPath(new URL('../fixtures/llama_gqa/', import.meta.url));
  const gpu = await testGpu();
  const { config, weights } = await loadModelDir(`${dir}model`);
  const adapter = await loadAdapterDir(`${dir}adapter`, config);
  const model = createModel(gpu, config, weights);
  model.setAdapter(adapter.config, adapter.weights);
  const lora = new Map<string, Float64Array>();
  for (const [k, v] of adapter.weights) {
    const p = parseLoraKey(k)!;
    lora.set(`layers.${p.layer}.${p.target}.${p.which}`, Float64Array.from(v));
  }
  const refModel: ref.RefModel = {
    config: { vocab: config.vocab, hidden: config.hidden, heads: config.heads, kvHeads: config.kvHeads, headDim: config.headDim,
      intermediate: config.intermediate, layers: config.layers, rmsEps: config.rmsEps, ropeTheta: config.ropeTheta, tied: config.tied, attnBias: config.attnBias },
    weights: new Map([...weights].map(([k, v]) => [k, Float64Array.from(v)])),
    lora: { r: adapter.config.r, alpha: adapter.config.loraAlpha, targets: adapter.config.targetModules, weights: lora },
  };
  return { model, refModel, V: config.vocab };
}

describe('generation', () => {
  it('reads the same logits as the float64 reference at every prompt length', async () => {
    const { model, refModel, V } = await fixture();
    const prompt = [1, 61, 12, 51, 13, 10, 43];
    const gen = new Generator(model, 12);
    const want = ref.llamaLogits(refModel, prompt, 1, prompt.length);
    for (let len = 1; len <= prompt.length; len++) {
      const got = await gen.nextLogits(prompt.slice(0, len));
      const d = relMaxDiff(got, want.subarray((len - 1) * V, len * V));
      expect(d, `length ${len}: maxdiff ${d}`).toBeLessThan(1e-5);
    }
  });

  it('greedy decoding follows the reference argmax chain', async () => {
    const { model, refModel, V } = await fixture();
    const prompt = [1, 27, 7];
    const got = await new Generator(model, 10).generate(prompt, { maxNewTokens: 6, temperature: 0, topK: 0, seed: 0 });
    const seq = [...prompt];
    for (let i = 0; i < 6; i++) {
      const logits = ref.llamaLogits(refModel, seq, 1, seq.length).subarray((seq.length - 1) * V);
      let best = 0;
      for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
      seq.push(best);
    }
    expect(got).toEqual(seq.slice(prompt.length));
  });

  it('samples only among the top k, and deterministically for a seed', () => {
    const logits = Float32Array.from([0, 5, 1, 4, 3]);
    expect(sampleToken(logits, { temperature: 0, topK: 0 }, Math.random)).toBe(1);
    const rand = mulberry32(5);
    const seen = new Set(Array.from({ length: 200 }, () => sampleToken(logits, { temperature: 1, topK: 2 }, rand)));
    expect([...seen].sort()).toEqual([1, 3]);
    const a = mulberry32(9), b = mulberry32(9);
    const draws = (r: () => number) => Array.from({ length: 20 }, () => sampleToken(logits, { temperature: 0.8, topK: 0 }, r));
    expect(draws(a)).toEqual(draws(b));
  });

  it('stops at a stop token and refuses a length past the context', async () => {
    const { model } = await fixture();
    const gen = new Generator(model, 10);
    const first = (await gen.generate([1, 27, 7], { maxNewTokens: 3, temperature: 0, topK: 0, seed: 0 }))[0];
    expect(await gen.generate([1, 27, 7], { maxNewTokens: 3, temperature: 0, topK: 0, seed: 0, stopIds: [first] })).toEqual([]);
    expect(() => new Generator(model, 65)).toThrow(/exceeds the model's context of 64 tokens/);
  });
});

describe('generation with a vocabulary bigger than one binding', () => {
  it('gives the same logits with the embedding and head split into chunks', async () => {
    const { writeTinyModel } = await import('../cli/tiny-model');
    const gpu = await testGpu();
    const { config, weights } = await loadModelDir(writeTinyModel(4, { vocab_size: 200 }));
    const whole = createModel(gpu, config, weights);
    const split = createModel(gpu, config, weights);
    split.maxBindingBytes = 70 * config.hidden * 4; // 70 rows per binding: head chunks of 64 columns, embedding of 70 rows
    const prompt = [3, 150, 7, 199, 64, 65];
    const a = await new Generator(whole, 8).nextLogits(prompt);
    const b = await new Generator(split, 8).nextLogits(prompt);
    expect(relMaxDiff(b, a)).toBe(0);
  });
});
