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
// Tolerance: 1e-5 relative (max |engine − torch| over elements / max |torch|), the bar
// (parity_fixture.ts). The engine is fp32 end to end; the reference float64.

import { describe, it } from 'vitest';
import { expectAdamwSteps, expectLossAndGrads, expectSgdStep, setupFixture } from './parity_fixture';

for (const name of ['llama_gqa', 'qwen2_tied', 'qwen3', 'qwen2_dora']) {
  describe(`parity with PyTorch + PEFT: ${name}`, () => {
    it.each(['fast', 'v1'] as const)('loss and LoRA gradients (%s GEMM)', async (kernel) => {
      await expectLossAndGrads(await setupFixture(name, { kernel }));
    });

    it('loss and LoRA gradients with every layer\'s MLP recomputed in the backward', async () => {
      const f = await setupFixture(name);
      f.model.recomputeMlpEvery = 1;
      await expectLossAndGrads(f);
    });

    it('one SGD step with the LM head and loss split into vocabulary chunks', async () => {
      // 2 × 8 rows, 20 logit columns per chunk: V = 64 runs as chunks of 20, 20, 20 and 4, the logits
      // recomputed chunk by chunk in the backward.
      await expectSgdStep(await setupFixture(name, { maxLogitsBytes: 16 * 4 * 20 }));
    });

    it('one SGD step with the embedding table and the head bound in chunks smaller than the binding limit', async () => {
      // As if the device allowed only 18 rows of the (64, 32) table per binding: the embedding gathers from 4
      // chunks (18, 18, 18, 10 rows) and the head and loss run per chunk too.
      await expectSgdStep(await setupFixture(name, { maxBindingBytes: 18 * 32 * 4 }));
    });

    it('one SGD step', async () => {
      await expectSgdStep(await setupFixture(name));
    });

    it.each(['fast', 'v1'] as const)('three AdamW steps (%s GEMM)', async (kernel) => {
      await expectAdamwSteps(await setupFixture(name, { kernel }));
    });
  });
}
