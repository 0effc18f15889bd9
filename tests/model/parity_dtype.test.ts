// The whole engine against PyTorch with the frozen base held in fewer bits (issue 15, points 1 and 2), as
// parity.test.ts does for float32: tests/fixtures/make_fixtures.py's float64 reference computes with
//   llama_bf16, qwen2_f16   every base weight rounded to bf16 / f16 (the checkpoints are stored so), and the
//                           engine holds them as bf16 / f16 (--base-dtype bf16|f16), dequantized in WGSL;
//   llama_nf4, qwen2_int8   the seven projections quantized to NF4 (double-quantized scales) or int8 per
//                           channel by the float64 reference of src/model/quant.ts (tests/fixtures/quant), the
//                           embedding and LM head rounded to bf16, from an F32 checkpoint the engine quantizes at
//                           load (--base-dtype nf4|int8): the reference is given the same dequantized weights.
// Loss, LoRA gradients (also with every decoder layer recomputed in the backward, --recompute), one SGD step with the embedding and head read in row chunks (each chunk dequantized on
// its own), and three AdamW steps. The adapter, its gradients and optimizer state and all arithmetic are
// float32 whatever the base's dtype.
//
// Tolerance: 1e-5 relative (max |engine − torch| / max |torch|), the bar (parity_fixture.ts).

import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import type { BaseDtype } from '../../src/model/causal_lm';
import { Trainer, DEFAULT_OPTIMIZER } from '../../src/train/trainer';
import { expectAdamwSteps, expectLossAndGrads, expectSgdStep, setupFixture } from './parity_fixture';

const CASES: [string, BaseDtype][] = [['llama_bf16', 'bf16'], ['qwen2_f16', 'f16'], ['llama_nf4', 'nf4'], ['qwen2_int8', 'int8']];

for (const [name, baseDtype] of CASES) {
  describe(`parity with PyTorch + PEFT over a ${baseDtype} base: ${name}`, () => {
    it('the fixture expects the base it names: its reference is the model held in that dtype', () => {
      const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
      expect(JSON.parse(readFileSync(`${dir}expected.json`, 'utf8')).base_dtype).toBe(baseDtype);
    });

    it.each([false, true])('loss and LoRA gradients (layers recomputed: %s)', async (recompute) => {
      await expectLossAndGrads(await setupFixture(name, { options: { baseDtype, recompute } }));
    });

    it('one SGD step with the embedding table and the head dequantized in row chunks', async () => {
      // As if the device allowed only 18 rows of the (64, 32) table per binding: 4 chunks, each dequantized
      // right before its gather or its GEMM, and again for the head's backward.
      await expectSgdStep(await setupFixture(name, { maxBindingBytes: 18 * 32 * 4, options: { baseDtype } }));
    });

    it('three AdamW steps', async () => {
      await expectAdamwSteps(await setupFixture(name, { options: { baseDtype } }));
    });
  });
}

describe('the quantized fixtures tell the formats apart', () => {
  it.each(['llama_nf4', 'qwen2_int8'])('%s over a float32 base misses its reference loss by far more than 1e-5', async (name) => {
    const { model, ids, B, T, expected } = await setupFixture(name, { options: { baseDtype: 'f32' } });
    const trainer = new Trainer(model, B, T, { ...DEFAULT_OPTIMIZER, kind: 'sgd', lr: 0 });
    const loss = await trainer.lossAndGrads(ids);
    expect(Math.abs(loss - expected.loss) / Math.abs(expected.loss)).toBeGreaterThan(1e-4);
  });
});
