// Recomputed layers (ModelOptions.recompute, tape.checkpoint): each decoder layer keeps only its input, and
// the backward records the layer's forward again before the layer's own backward. Same kernels on the same
// values in the same order, so the loss, every gradient and the parameters after AdamW steps equal the run
// that keeps its activations bit for bit (not merely within a tolerance), for a GQA Llama, Qwen3's q/k norms,
// DoRA on all seven projections, and LoRA dropout (whose mask the recomputed forward must draw again
// identically); and the tape's activation peak is lower.

import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { testGpu } from '../gpu/test-gpu';
import { loadAdapterDir, loadModelDir, loadTokenRows } from '../../src/cli/files';
import { createModel } from '../../src/model/factory';
import { Trainer, DEFAULT_OPTIMIZER } from '../../src/train/trainer';

async function run(name: string, recompute: boolean, dropout: number) {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  const gpu = await testGpu();
  const { config, weights } = await loadModelDir(`${dir}model`);
  const adapter = await loadAdapterDir(`${dir}adapter`, config);
  const rows = await loadTokenRows(`${dir}data.jsonl`, config.vocab);
  const ids = Int32Array.from(rows.flat());
  const model = createModel(gpu, config, weights, { recompute });
  model.setAdapter({ ...adapter.config, loraDropout: dropout }, adapter.weights);
  const B = rows.length, T = rows[0].length;
  const grads = new Trainer(model, B, T, { ...DEFAULT_OPTIMIZER, kind: 'sgd', lr: 0 }, 7);
  const loss = await grads.lossAndGrads(ids);
  const g = new Map<string, Float32Array>();
  for (const p of model.lora) g.set(p.key, await grads.readGrad(p.key));
  const peak = grads.transientBytes;
  const adamw = new Trainer(model, B, T, { ...DEFAULT_OPTIMIZER, lr: 1e-2 }, 7);
  const losses = [];
  for (let s = 0; s < 3; s++) losses.push(await adamw.step(ids));
  return { loss, grads: g, peak, losses, after: await model.readAdapter() };
}

/** The float32 bits of each value: a bit-for-bit comparison that also tells -0 from 0 and NaN payloads apart. */
const bits = (a: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(a).buffer));

describe('recomputed layers', () => {
  it.each([
    ['llama_gqa', 0],
    ['qwen3', 0],
    ['qwen2_dora', 0],
    ['llama_gqa', 0.25],
  ] as const)('%s (LoRA dropout %s): loss, gradients and three AdamW steps bit for bit, with a lower activation peak', async (name, dropout) => {
    const kept = await run(name, false, dropout);
    const again = await run(name, true, dropout);
    expect(Number.isFinite(kept.loss)).toBe(true);
    expect(bits([again.loss])).toEqual(bits([kept.loss]));
    expect([...again.grads.keys()]).toEqual([...kept.grads.keys()]);
    let nonzero = 0;
    for (const [key, g] of kept.grads) {
      expect(bits(again.grads.get(key)!), `gradient ${key}`).toEqual(bits(g));
      if (g.some((v) => v !== 0)) nonzero++;
    }
    expect(nonzero).toBeGreaterThan(kept.grads.size / 2); // the gradients compared are real ones
    expect(bits(again.losses)).toEqual(bits(kept.losses));
    for (const [key, p] of kept.after) expect(bits(again.after.get(key)!), `after AdamW ${key}`).toEqual(bits(p));
    expect(again.peak).toBeLessThan(kept.peak);
  }, 240_000);
});
