// One PyTorch fixture of tests/fixtures/ (made by make_fixtures.py) loaded onto the engine, and the checks every
// parity test makes against it: loss and LoRA gradients, an SGD step, three AdamW steps, each to 1e-5 relative
// (max |engine − torch| / max |torch|), the bar. Shared by parity.test.ts (float32 bases) and
// parity_dtype.test.ts (bases held in bf16, f16, NF4, int8).

import { expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { testGpu, relMaxDiff } from '../gpu/test-gpu';
import { loadAdapterDir, loadModelDir, loadTokenRows } from '../../src/cli/files';
import type { CausalLM, ModelOptions } from '../../src/model/causal_lm';
import { createModel } from '../../src/model/factory';
import { setGemmKernel, type GemmKernel } from '../../src/autograd/matmul_fast';
import { Trainer, DEFAULT_OPTIMIZER } from '../../src/train/trainer';

export const TOL = 1e-5;

export interface FixtureSetup {
  maxLogitsBytes?: number;
  maxBindingBytes?: number;
  kernel?: GemmKernel;
  options?: ModelOptions;
}

/** The fixture `name`'s model with its adapter installed, its token rows, and what PyTorch computed. */
export async function setupFixture(name: string, s: FixtureSetup = {}) {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  const gpu = await testGpu();
  setGemmKernel(gpu, s.kernel ?? 'fast');
  const { config, weights } = await loadModelDir(`${dir}model`);
  const adapter = await loadAdapterDir(`${dir}adapter`, config);
  const rows = await loadTokenRows(`${dir}data.jsonl`, config.vocab);
  const expected = JSON.parse(readFileSync(`${dir}expected.json`, 'utf8'));
  const model = createModel(gpu, config, weights, s.options);
  if (s.maxLogitsBytes) model.maxLogitsBytes = s.maxLogitsBytes;
  if (s.maxBindingBytes) model.maxBindingBytes = s.maxBindingBytes;
  model.setAdapter(adapter.config, adapter.weights);
  const ids = Int32Array.from(rows.flat());
  return { gpu, model, adapter, ids, B: rows.length, T: rows[0].length, expected };
}

type Fixture = Awaited<ReturnType<typeof setupFixture>>;

export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = TOL) {
  const d = relMaxDiff(got, want);
  expect(d, `${what}: maxdiff ${d.toExponential(2)}`).toBeLessThan(tol);
}

/** The adapter's values against the fixture's `params` (by PEFT key). */
async function expectParams(model: CausalLM, params: Record<string, number[]>, what: string) {
  const after = await model.readAdapter();
  for (const [key, want] of Object.entries(params)) expectClose(after.get(key)!, want, `${what} ${key}`);
}

/** The loss and every LoRA gradient of one forward and backward. */
export async function expectLossAndGrads({ model, ids, B, T, expected }: Fixture) {
  const trainer = new Trainer(model, B, T, { ...DEFAULT_OPTIMIZER, kind: 'sgd', lr: 0 });
  expectClose([await trainer.lossAndGrads(ids)], [expected.loss], 'loss');
  for (const [key, want] of Object.entries(expected.grads) as [string, number[]][]) expectClose(await trainer.readGrad(key), want, `grad ${key}`);
}

/** The loss before one SGD step, and the adapter after it. */
export async function expectSgdStep({ model, ids, B, T, expected }: Fixture) {
  const trainer = new Trainer(model, B, T, { ...DEFAULT_OPTIMIZER, kind: 'sgd', lr: expected.sgd.lr });
  expectClose([await trainer.step(ids)], [expected.sgd.loss_before], 'loss before the step');
  await expectParams(model, expected.sgd.params, 'sgd');
}

/** The losses before three AdamW steps, and the adapter after them. */
export async function expectAdamwSteps({ model, ids, B, T, expected }: Fixture) {
  const a = expected.adamw;
  const trainer = new Trainer(model, B, T, { kind: 'adamw', lr: a.lr, beta1: a.betas[0], beta2: a.betas[1], eps: a.eps, weightDecay: a.weight_decay });
  for (let s = 0; s < 3; s++) expectClose([await trainer.step(ids)], [a.losses[s]], `loss before AdamW step ${s + 1}`);
  await expectParams(model, a.params, 'adamw');
}
