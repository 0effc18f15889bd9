// A fresh DoRA adapter starts where PEFT starts it: the magnitude of every projection is the row norm of
// the base weight (B = 0), computed on the GPU when the adapter is set, so the model computes exactly the
// base model's loss, and the magnitude then trains like A and B. The PyTorch parity of a trained DoRA
// adapter is tests/model/parity.test.ts (qwen2_dora).

import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { testGpu, relMaxDiff } from '../gpu/test-gpu';
import { loadModelDir, loadTokenRows } from '../../src/cli/files';
import { createModel } from '../../src/model/factory';
import { initLora } from '../../src/model/lora';
import { loraMagnitudeKey, type AdapterConfig } from '../../src/io/peft';
import { Evaluator, Trainer } from '../../src/train/trainer';

describe('a fresh DoRA adapter', () => {
  it('starts with m = ‖W‖ per output row and the base model\'s loss, and trains its magnitudes', async () => {
    const dir = fileURLToPath(new URL('../fixtures/qwen2_dora/', import.meta.url));
    const gpu = await testGpu();
    const { config, weights } = await loadModelDir(`${dir}model`);
    const rows = await loadTokenRows(`${dir}data.jsonl`, config.vocab);
    const ids = Int32Array.from(rows.flat());
    const B = rows.length, T = rows[0].length;
    const model = createModel(gpu, config, weights);
    const base = await new Evaluator(model, B, T).loss(ids);

    const adapter: AdapterConfig = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'], useRslora: false, baseModel: '', useDora: true };
    model.setAdapter(adapter, initLora(config, adapter, 1));
    const got = await model.readAdapter();
    for (const [layer, target, name] of [[0, 'q_proj', 'model.layers.0.self_attn.q_proj.weight'], [1, 'down_proj', 'model.layers.1.mlp.down_proj.weight']] as const) {
      const W = weights.get(name)!, out = got.get(loraMagnitudeKey(layer, target))!;
      const inF = W.length / out.length;
      const norms = Array.from(out, (_, o) => Math.hypot(...W.subarray(o * inF, (o + 1) * inF)));
      const d = relMaxDiff(out, norms);
      expect(d, `${target} magnitude vs ‖W‖: maxdiff ${d}`).toBeLessThan(1e-6);
    }
    const fresh = await new Evaluator(model, B, T).loss(ids);
    expect(Math.abs(fresh.loss - base.loss) / base.loss, 'loss of a fresh DoRA adapter vs the base model').toBeLessThan(1e-6);

    const trainer = new Trainer(model, B, T, { kind: 'adamw', lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    const losses = [];
    for (let s = 0; s < 3; s++) losses.push(await trainer.step(ids));
    expect(losses[2]).toBeLessThan(losses[0]);
    const after = await model.readAdapter();
    const key = loraMagnitudeKey(0, 'q_proj');
    expect(after.get(key)!.some((v, i) => v !== got.get(key)![i]), 'the magnitude trained').toBe(true);
  });
});

describe('what a DoRA adapter cannot be', () => {
  it('a blend source: refused with the reason', async () => {
    const { blendAdapters } = await import('../../src/model/blend');
    const config: AdapterConfig = { r: 1, loraAlpha: 1, loraDropout: 0, targetModules: ['q_proj'], useRslora: false, baseModel: '', useDora: true };
    expect(() => blendAdapters([{ config, weights: new Map(), weight: 1, name: 'dora-run' }], { combination: 'cat' }))
      .toThrow(/dora-run is a DoRA adapter: DoRA rescales each output row .* Blend plain LoRA adapters/);
  });
});
