// The memory plan against the engine: at two run shapes on a tiny model, the plan built on the recording
// device is within 10% of the peak a real device (Dawn, SwiftShader here) allocates when the model, adapter,
// Trainer and Evaluator of that shape are built and one step runs; its parts add up and are what they say
// (the adapter and its gradients, AdamW's moments and the last-good copies, the tape's activations). The
// recording device also counts what a step submits.

import { describe, expect, it } from 'vitest';
import { packLayout, slabsOf } from '../../src/autograd/packed';
import { adapterSpecs } from '../../src/model/gpu_weights';
import { OPTIMIZER_PARAMS } from '../../src/autograd/optimizer';
import { writeTinyModel } from '../cli/tiny-model';
import { loadModelDir } from '../../src/cli/files';
import { createNodeGpu } from '../../src/gpu/node';
import { recordingGpu } from '../../src/gpu/recording';
import type { AdapterConfig } from '../../src/io/peft';
import { weightShapes } from '../../src/model/config';
import { createModel } from '../../src/model/factory';
import { initLora } from '../../src/model/lora';
import { planRun, type RunShape } from '../../src/train/memory_plan';
import { trainableParams } from '../../src/model/params';
import { Evaluator, Trainer, DEFAULT_OPTIMIZER } from '../../src/train/trainer';

const adapter = (r: number, targets: AdapterConfig['targetModules'], dropout: number): AdapterConfig =>
  ({ r, loraAlpha: 2 * r, loraDropout: dropout, targetModules: targets, useRslora: false, baseModel: 'tiny' });

const SHAPES: [string, RunShape][] = [
  ['B=2 T=8 r=4 on q, v; validation batch 2',
    { adapter: adapter(4, ['q_proj', 'v_proj'], 0), batch: 2, seqLen: 8, gradAccum: 1, optimizer: DEFAULT_OPTIMIZER, keepLastGood: true, evalBatch: 2 }],
  ['B=1 T=16 r=8 on every projection, dropout, K=2, clipping',
    { adapter: adapter(8, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], 0.1), batch: 1, seqLen: 16, gradAccum: 2,
      optimizer: { ...DEFAULT_OPTIMIZER, maxGradNorm: 1 }, keepLastGood: true, evalBatch: 0 }],
];

const ids = (B: number, T: number, vocab: number, k: number) => Int32Array.from({ length: B * T }, (_, i) => (i * 7 + k * 3 + 1) % vocab);

describe('memory plan', () => {
  for (const [name, shape] of SHAPES) {
    it(`is within 10% of the peak the engine allocates: ${name}`, async () => {
      const { config, weights } = await loadModelDir(writeTinyModel(5, { num_hidden_layers: 2, vocab_size: 96 }));
      const gpu = await createNodeGpu(); // a fresh device, so its peak is this run's alone
      try {
        const plan = planRun(config, shape, gpu.limits.maxStorageBufferBindingSize);

        const model = createModel(gpu, config, weights);
        model.setAdapter(shape.adapter, initLora(config, shape.adapter, 1));
        const trainer = new Trainer(model, shape.batch, shape.seqLen, shape.optimizer, 0, { gradAccum: shape.gradAccum, keepLastGood: shape.keepLastGood });
        const evaluator = shape.evalBatch > 0 ? new Evaluator(model, shape.evalBatch, shape.seqLen) : null;
        const batches = Array.from({ length: shape.gradAccum }, (_, k) => ({ ids: ids(shape.batch, shape.seqLen, config.vocab, k) }));
        expect(Number.isFinite(await trainer.stepBatches(batches))).toBe(true);
        if (evaluator) await evaluator.loss(ids(shape.evalBatch, shape.seqLen, config.vocab, 9));

        const real = gpu.peakBytes;
        const off = Math.abs(plan.bytes - real) / real;
        expect(off, `plan ${plan.bytes} B vs the engine's peak ${real} B (${(100 * off).toFixed(2)}% off)`).toBeLessThanOrEqual(0.1);

        expect(plan.weights + plan.adapter + plan.optimizer + plan.activations + plan.other).toBe(plan.bytes);
        const weightBytes = [...weightShapes(config).values()].reduce((n, s) => n + Math.ceil((4 * s.reduce((a, b) => a * b, 1)) / 16) * 16, 0);
        expect(plan.weights).toBe(weightBytes);
        // The adapter is packed (src/autograd/packed.ts): 4·params and the gaps that put every tensor on a
        // 256-byte binding offset, exactly as packLayout lays it out, twice (values, gradients).
        const adapterBytes = packLayout(adapterSpecs(config, shape.adapter), gpu.limits.maxStorageBufferBindingSize).slabBytes.reduce((a, b) => a + b, 0);
        const params = 4 * trainableParams(config, { targets: shape.adapter.targetModules, r: shape.adapter.r });
        expect(adapterBytes).toBeGreaterThanOrEqual(params);
        expect(adapterBytes).toBeLessThan(params + 256 * 4 * config.layers * shape.adapter.targetModules.length);
        expect(plan.adapter).toBe(2 * adapterBytes);
        expect(plan.optimizer).toBe(4 * adapterBytes); // m, v and two last-good copies
        expect(plan.activations).toBeGreaterThanOrEqual(plan.transientBytes);
        expect(plan.transientBytes).toBe(trainer.transientBytes);
        expect(plan.other).toBeGreaterThan(0);
        expect(plan.largestBuffer).toBeGreaterThanOrEqual(plan.largestWeight);
      } finally {
        gpu.destroy();
      }
    });
  }

  it('counts what a training step submits on the recording device', async () => {
    const { config } = await loadModelDir(writeTinyModel(5));
    const gpu = recordingGpu();
    const model = createModel(gpu, config, null);
    const a = adapter(4, ['q_proj', 'v_proj'], 0);
    model.setAdapter(a, null);
    const K = 2, B = 1, T = 8;
    const trainer = new Trainer(model, B, T, DEFAULT_OPTIMIZER, 0, { gradAccum: K });
    const stats = gpu.device.stats;
    expect(stats.buffers * 16).toBeLessThanOrEqual(stats.bufferBytes);
    expect(stats.liveBytes).toBe(gpu.allocatedBytes);
    const before = { ...stats };
    const loss = await trainer.stepBatches(Array.from({ length: K }, (_, k) => ({ ids: ids(B, T, config.vocab, k) })));
    expect(loss).toBe(0); // nothing ran: reads give zeros
    expect(stats.submits - before.submits).toBe(K + 1); // K micro-batches, then the loss read-back
    expect(stats.copies - before.copies).toBe(1);
    expect(stats.cpuWaits - before.cpuWaits).toBe(1); // the read-back's mapAsync, once per optimizer step
    expect(stats.dispatches - before.dispatches).toBeGreaterThan(K * config.layers * 10);
    // Per micro-batch the ids and targets (N i32 each), plus one AdamW uniform per packed slab of the adapter.
    const slabs = slabsOf(model.lora.map((p) => p.tensor)).length;
    expect(stats.writeBytes - before.writeBytes).toBeGreaterThanOrEqual(K * 2 * 4 * B * T + slabs * 4 * OPTIMIZER_PARAMS.length);
    expect(stats.liveBytes).toBe(gpu.allocatedBytes); // the read-back's staging buffer is gone again
  });
});
