// Generation with adapters attached beside the base (swap) and blended live (PEFT's "cat" at run time,
// src/autograd/lora_blend.ts), on a tiny random Llama: an adapter at weight 0 is the base model bit for bit,
// one adapter at weight 1 is that adapter installed alone bit for bit, a live blend of three adapters (other
// targets, ranks, rsLoRA, a negative weight) gives the logits of the materialised cat blend (src/model/blend.ts)
// within 1e-5 and the same greedy tokens, a seed repeats a sample, and switching between base, adapters and
// blends uploads no base weight again and reuses the cached programs.

import { describe, expect, it, vi } from 'vitest';
import { relMaxDiff, testGpu } from '../gpu/test-gpu';
import { writeTinyModel } from '../cli/tiny-model';
import { loadModelDir } from '../../src/cli/files';
import { loraKey, type AdapterConfig } from '../../src/io/peft';
import { blendAdapters } from '../../src/model/blend';
import type { BlendTerm } from '../../src/model/causal_lm';
import { projectionDims, type ModelConfig } from '../../src/model/config';
import { createModel } from '../../src/model/factory';
import { weightBuffers } from '../../src/model/gpu_weights';
import { Generator } from '../../src/train/generate';
import { GeneratorCache } from '../../src/worker/generators';
import { mulberry32, randn } from '../reference/rng';

function randomWeights(config: ModelConfig, cfg: AdapterConfig, seed: number): Map<string, Float32Array> {
  const rng = mulberry32(seed);
  const w = new Map<string, Float32Array>();
  for (let l = 0; l < config.layers; l++) {
    for (const t of cfg.targetModules) {
      const { inFeatures, outFeatures } = projectionDims(config, t);
      w.set(loraKey(l, t, 'A'), Float32Array.from(randn(rng, cfg.r * inFeatures, 0.3)));
      w.set(loraKey(l, t, 'B'), Float32Array.from(randn(rng, outFeatures * cfg.r, 0.3)));
    }
  }
  return w;
}

const base = { loraDropout: 0, baseModel: 'tiny' };
const math: AdapterConfig = { ...base, r: 4, loraAlpha: 8, targetModules: ['q_proj', 'v_proj'], useRslora: false };
const style: AdapterConfig = { ...base, r: 2, loraAlpha: 4, targetModules: ['q_proj', 'k_proj', 'down_proj'], useRslora: true };
const tone: AdapterConfig = { ...base, r: 3, loraAlpha: 6, targetModules: ['o_proj', 'up_proj', 'v_proj'], useRslora: false };

async function setup() {
  const gpu = await testGpu();
  const { config, weights } = await loadModelDir(writeTinyModel(3, { num_hidden_layers: 2 }));
  const adapters = {
    math: { config: math, weights: randomWeights(config, math, 1) },
    style: { config: style, weights: randomWeights(config, style, 2) },
    tone: { config: tone, weights: randomWeights(config, tone, 3) },
  };
  const model = createModel(gpu, config, weights);
  for (const [id, a] of Object.entries(adapters)) model.attach(id, a.config, a.weights);
  return { gpu, config, weights, model, adapters };
}

const prompt = [1, 7, 30, 12, 5];
const greedy = { maxNewTokens: 8, temperature: 0, topK: 0, seed: 0 };

describe('live blend in generation', () => {
  it('weight 0 is the base model and weight 1 is the adapter alone, bit for bit', async () => {
    const { gpu, config, weights, model, adapters } = await setup();
    const baseLogits = await new Generator(model, 16, []).nextLogits(prompt);
    expect(relMaxDiff(await new Generator(model, 16, [{ id: 'math', weight: 0 }]).nextLogits(prompt), baseLogits)).toBe(0);
    expect(relMaxDiff(await new Generator(model, 16).nextLogits(prompt), baseLogits)).toBe(0); // no adapter installed
    const baseTokens = await new Generator(model, 16, [{ id: 'style', weight: 0 }, { id: 'tone', weight: 0 }]).generate(prompt, greedy);
    expect(baseTokens).toEqual(await new Generator(model, 16, []).generate(prompt, greedy));

    const alone = createModel(gpu, config, weights);
    alone.setAdapter(adapters.style.config, adapters.style.weights);
    const want = await new Generator(alone, 16).nextLogits(prompt);
    expect(relMaxDiff(await new Generator(model, 16, [{ id: 'style', weight: 1 }]).nextLogits(prompt), want)).toBe(0);
    expect(relMaxDiff(baseLogits, want)).toBeGreaterThan(1e-3); // the adapter does change the logits
    // The held (trainable) adapter as a term: weight 1 is it as installed.
    expect(relMaxDiff(await new Generator(alone, 16, [{ id: null, weight: 1 }]).nextLogits(prompt), want)).toBe(0);
  });

  it('a live blend equals the materialised cat blend: logits within 1e-5, the same greedy tokens', async () => {
    const { gpu, config, weights, model, adapters } = await setup();
    const w = { math: 0.7, style: -1.25, tone: 2 };
    const blend: BlendTerm[] = Object.entries(w).map(([id, weight]) => ({ id, weight }));
    const cat = blendAdapters(Object.entries(w).map(([id, weight]) => ({ ...adapters[id as keyof typeof w], weight, name: id })), { combination: 'cat' });
    const materialised = createModel(gpu, config, weights);
    materialised.setAdapter(cat.config, cat.weights);
    const live = new Generator(model, 16, blend), reference = new Generator(materialised, 16);
    for (let len = 1; len <= prompt.length; len++) {
      const d = relMaxDiff(await live.nextLogits(prompt.slice(0, len)), await reference.nextLogits(prompt.slice(0, len)));
      expect(d, `length ${len}: maxdiff ${d}`).toBeLessThan(1e-5);
    }
    expect(await live.generate(prompt, greedy)).toEqual(await reference.generate(prompt, greedy));
    // The held adapter blends with attached ones too: math held, style attached.
    const held = createModel(gpu, config, weights);
    held.setAdapter(math, adapters.math.weights);
    held.attach('style', style, adapters.style.weights);
    const two = blendAdapters([{ ...adapters.math, weight: 0.7 }, { ...adapters.style, weight: -1.25 }], { combination: 'cat' });
    materialised.setAdapter(two.config, two.weights);
    const d = relMaxDiff(await new Generator(held, 16, [{ id: null, weight: 0.7 }, { id: 'style', weight: -1.25 }]).nextLogits(prompt),
      await new Generator(materialised, 16).nextLogits(prompt));
    expect(d, `maxdiff ${d}`).toBeLessThan(1e-5);
  });

  it('the same seed gives the same sample', async () => {
    const { model } = await setup();
    const gen = new Generator(model, 24, [{ id: 'math', weight: 0.5 }, { id: 'tone', weight: 1 }]);
    const s = { maxNewTokens: 10, temperature: 1.5, topK: 0, seed: 11 };
    const first = await gen.generate(prompt, s);
    expect(first).toHaveLength(10);
    expect(await gen.generate(prompt, s)).toEqual(first);
    const draws: string[] = [];
    for (const seed of [12, 13]) draws.push((await gen.generate(prompt, { ...s, seed })).join()); // one at a time: one generator's buffers
    expect(draws.some((d) => d !== first.join())).toBe(true); // another seed, another sample
  });

  it('switching adapters uploads no base weight and reuses the cached programs', async () => {
    const { gpu, model, adapters } = await setup();
    const baseBuffers = new Set(weightBuffers(model.weights));
    const before = weightBuffers(model.weights);
    let written: GPUBuffer[] = [], made: string[] = [];
    // Spies that call through: every buffer written and every upload's label, while switching.
    const write = vi.spyOn(gpu, 'write');
    const zeros = vi.spyOn(gpu, 'zeros');
    const upload = vi.spyOn(gpu, 'upload');
    try {
      const cache = new GeneratorCache(6);
      const blends: BlendTerm[][] = [[], [{ id: 'math', weight: 1 }], [{ id: 'style', weight: 1 }], [{ id: 'math', weight: 0.3 }, { id: 'tone', weight: -1 }]];
      const run = async (b: BlendTerm[]) => cache.use(model, b, 16, (g) => g.generate(prompt, greedy));
      const first = [];
      for (const b of blends) first.push(await run(b));
      expect(cache.built).toBe(4);
      // Back and forth: the same texts from the programs already recorded, nothing new built.
      for (const [i, b] of [...blends.entries()].reverse()) expect(await run(b)).toEqual(first[i]);
      expect(cache.built).toBe(4);
      model.detach('tone');
      model.attach('tone', tone, adapters.tone.weights); // the only uploads: the adapter's own A and B
      made = upload.mock.calls.map((c) => c[0]);
      written = write.mock.calls.map((c) => c[0]);
    } finally {
      write.mockRestore();
      zeros.mockRestore();
      upload.mockRestore();
    }
    expect(written.length).toBeGreaterThan(0); // token ids and the adapter: the spy saw the writes
    expect(written.filter((b) => baseBuffers.has(b))).toEqual([]);
    expect(zeros).not.toHaveBeenCalled();
    expect(made.length).toBe(2 * 2 * tone.targetModules.length); // 2 layers × targets × (A, B)
    expect(made.every((label) => label.startsWith('attached.'))).toBe(true);
    expect(weightBuffers(model.weights)).toEqual(before);
  });
});
