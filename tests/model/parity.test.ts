// The whole engine against PyTorch: a tiny Llama with grouped-query attention, a tied-embedding Qwen2
// with q/k/v biases and a tied-embedding Qwen3 with q_norm/k_norm and head_dim ≠ hidden/heads
// (tests/fixtures/make_fixtures.py, float64, following transformers + PEFT), LoRA with non-zero A and B;
// and a Qwen2 with DoRA on all seven projections (PEFT's DoraLinearLayer: the magnitude moved off its
// initial norm, so its gradient and the rescaling both show). Loss, LoRA (and magnitude) gradients, one SGD
// step and three AdamW steps.
//
// The model runs on the fast GEMM (src/autograd/matmul.ts); the loss-and-gradients and AdamW cases run on
// version 1 too, so both kernels meet the bar.
//
// Tolerance: 1e-5 relative (max |engine − torch| over elements / max |torch|), the bar. The engine
// is fp32 end to end; the reference float64.

import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { testGpu, relMaxDiff } from '../gpu/test-gpu';
import { loadAdapterDir, loadModelDir, loadTokenRows } from '../../src/cli/files';
import { createModel } from '../../src/model/factory';
import { Trainer, DEFAULT_OPTIMIZER } from '../../src/train/trainer';
import { setGemmKernel, type GemmKernel } from '../../src/autograd/matmul_fast';

const TOL = 1e-5;

async function setup(name: string, maxLogitsBytes?: number, maxBindingBytes?: number, kernel: GemmKernel = 'fast') {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  const gpu = await testGpu();
  setGemmKernel(gpu, kernel);
  const { config, weights } = await loadModelDir(`${dir}model`);
  const adapter = await loadAdapterDir(`${dir}adapter`, config);
  const rows = await loadTokenRows(`${dir}data.jsonl`, config.vocab);
  const expected = JSON.parse(readFileSync(`${dir}expected.json`, 'utf8'));
  const model = createModel(gpu, config, weights);
  if (maxLogitsBytes) model.maxLogitsBytes = maxLogitsBytes;
  if (maxBindingBytes) model.maxBindingBytes = maxBindingBytes;
  model.setAdapter(adapter.config, adapter.weights);
  const ids = Int32Array.from(rows.flat());
  return { gpu, model, adapter, ids, B: rows.length, T: rows[0].length, expected };
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = TOL) {
  const d = relMaxDiff(got, want);
  expect(d, `${what}: maxdiff ${d.toExponential(2)}`).toBeLessThan(tol);
}

for (const name of ['llama_gqa', 'qwen2_tied', 'qwen3', 'qwen2_dora']) {
  describe(`parity with PyTorch + PEFT: ${name}`, () => {
    it.each(['fast', 'v1'] as const)('loss and LoRA gradients (%s GEMM)', async (kernel) => {
      const { model, ids, B, T, expected } = await setup(name, undefined, undefined, kernel);
      const trainer = new Trainer(model, B, T, { ...DEFAULT_OPTIMIZER, kind: 'sgd', lr: 0 });
      const loss = await trainer.lossAndGrads(ids);
      expectClose([loss], [expected.loss], 'loss');
      for (const [key, want] of Object.entries(expected.grads) as [string, number[]][]) {
        expectClose(await trainer.readGrad(key), want, `grad ${key}`);
      }
    });

    it('loss and LoRA gradients with every layer\'s MLP recomputed in the backward', async () => {
      const { model, ids, B, T, expected } = await setup(name);
      model.recomputeMlpEvery = 1;
      const trainer = new Trainer(model, B, T, { ...DEFAULT_OPTIMIZER, kind: 'sgd', lr: 0 });
      const loss = await trainer.lossAndGrads(ids);
      expectClose([loss], [expected.loss], 'loss');
      for (const [key, want] of Object.entries(expected.grads) as [string, number[]][]) {
        expectClose(await trainer.readGrad(key), want, `grad ${key}`);
      }
    });

    it('one SGD step with the LM head and loss split into vocabulary chunks', async () => {
      // 2 × 8 rows, 20 logit columns per chunk: V = 64 runs as chunks of 20, 20, 20 and 4, the logits
      // recomputed chunk by chunk in the backward.
      const { model, ids, B, T, expected } = await setup(name, 16 * 4 * 20);
      const trainer = new Trainer(model, B, T, { ...DEFAULT_OPTIMIZER, kind: 'sgd', lr: expected.sgd.lr });
      expectClose([await trainer.step(ids)], [expected.sgd.loss_before], 'loss before the step');
      const after = await model.readAdapter();
      for (const [key, want] of Object.entries(expected.sgd.params) as [string, number[]][]) expectClose(after.get(key)!, want, `sgd ${key}`);
    });

    it('one SGD step with the embedding table and the head bound in chunks smaller than the binding limit', async () => {
      // As if the device allowed only 18 rows of the (64, 32) table per binding: the embedding gathers from 4
      // chunks (18, 18, 18, 10 rows) and the head and loss run per chunk too.
      const { model, ids, B, T, expected } = await setup(name, undefined, 18 * 32 * 4);
      const trainer = new Trainer(model, B, T, { ...DEFAULT_OPTIMIZER, kind: 'sgd', lr: expected.sgd.lr });
      expectClose([await trainer.step(ids)], [expected.sgd.loss_before], 'loss before the step');
      const after = await model.readAdapter();
      for (const [key, want] of Object.entries(expected.sgd.params) as [string, number[]][]) expectClose(after.get(key)!, want, `sgd ${key}`);
    });

    it('one SGD step', async () => {
      const { model, ids, B, T, expected } = await setup(name);
      const trainer = new Trainer(model, B, T, { ...DEFAULT_OPTIMIZER, kind: 'sgd', lr: expected.sgd.lr });
      const loss = await trainer.step(ids);
      expectClose([loss], [expected.sgd.loss_before], 'loss before the step');
      const after = await model.readAdapter();
      for (const [key, want] of Object.entries(expected.sgd.params) as [string, number[]][]) expectClose(after.get(key)!, want, `sgd ${key}`);
    });

    it.each(['fast', 'v1'] as const)('three AdamW steps (%s GEMM)', async (kernel) => {
      const { model, ids, B, T, expected } = await setup(name, undefined, undefined, kernel);
      const a = expected.adamw;
      const trainer = new Trainer(model, B, T, { kind: 'adamw', lr: a.lr, beta1: a.betas[0], beta2: a.betas[1], eps: a.eps, weightDecay: a.weight_decay });
      for (let s = 0; s < 3; s++) expectClose([await trainer.step(ids)], [a.losses[s]], `loss before AdamW step ${s + 1}`);
      const after = await model.readAdapter();
      for (const [key, want] of Object.entries(a.params) as [string, number[]][]) expectClose(after.get(key)!, want, `adamw ${key}`);
    });
  });
}
