// Learning-rate schedules: the values transformers' get_constant_schedule_with_warmup,
// get_linear_schedule_with_warmup and get_cosine_schedule_with_warmup give (LambdaLR × lr), step by step.

import { describe, expect, it } from 'vitest';
import { learningRate } from '../../src/train/schedule';

const lrs = (kind: 'constant' | 'linear' | 'cosine', warmupSteps: number, steps: number) =>
  Array.from({ length: steps }, (_, i) => learningRate({ lr: 1, kind, warmupSteps, steps }, i));

describe('learning-rate schedules', () => {
  it('warm up linearly from 0, as transformers does', () => {
    expect(lrs('constant', 4, 6)).toEqual([0, 0.25, 0.5, 0.75, 1, 1]);
  });

  it('decay linearly to 0 after the warm-up', () => {
    // transformers: max(0, (S − step) / max(1, S − W)) with S = 6, W = 2
    expect(lrs('linear', 2, 6)).toEqual([0, 0.5, 1, 0.75, 0.5, 0.25]);
  });

  it('follow half a cosine after the warm-up', () => {
    const got = lrs('cosine', 1, 5);
    const want = [0, 1, 0.5 * (1 + Math.cos(Math.PI * 0.25)), 0.5, 0.5 * (1 + Math.cos(Math.PI * 0.75))];
    got.forEach((v, i) => expect(v, `step ${i}`).toBeCloseTo(want[i], 12));
  });

  it('are constant without warm-up, and never negative past the end', () => {
    expect(lrs('constant', 0, 3)).toEqual([1, 1, 1]);
    expect(learningRate({ lr: 2, kind: 'linear', warmupSteps: 0, steps: 4 }, 9)).toBe(0);
    expect(learningRate({ lr: 2, kind: 'cosine', warmupSteps: 0, steps: 4 }, 9)).toBe(0);
  });
});
