// Training checkpoints without a GPU: the moments written by buildCheckpoint read back bit for bit under
// AdamW's state names, the settings parse back (and a foreign record is refused), the data cursor counts
// the rows consumed since the run's origin, and a missing moment refuses to resume.

import { describe, expect, it } from 'vitest';
import { buildCheckpoint, dataCursor, dataDifferences, MOMENT_NAMES, parseRunSettings, readCheckpointMoments, textHash, type RunPlan } from '../../src/train/checkpoint';
import { parseSafetensors } from '../../src/io/safetensors';

const PLAN: RunPlan = {
  lora: { targets: ['q_proj'], r: 2, alpha: 4, dropout: 0, rslora: false },
  optim: { lr: 1e-3, schedule: 'cosine', warmupSteps: 1, steps: 10, batchSize: 2, gradAccum: 3, maxGradNorm: 1, seed: 5 },
  origin: 4,
  data: { name: 'd.jsonl', chars: 11, hash: textHash('hello world'), seqLen: 16, validationShare: 0.1, pack: true, seed: 0 },
};

describe('training checkpoint', () => {
  it('round-trips the moments and the settings', () => {
    const params = [{ key: 'a.lora_A.weight', shape: [2, 3] }, { key: 'a.lora_B.weight', shape: [3, 2] }];
    const moments = new Map(params.map((p, i) => [p.key, { m: Float32Array.from({ length: 6 }, (_, j) => i + j / 7), v: Float32Array.from({ length: 6 }, (_, j) => (i + 1) * j) }]));
    const ck = buildCheckpoint(9, PLAN, { kind: 'default' }, 7, params, moments);
    expect(ck.step).toBe(9);
    expect(ck.totalSteps).toBe(14);
    expect([...parseSafetensors(ck.optimizer, 'x').tensors.keys()].sort()).toEqual(params.flatMap((p) => [`${MOMENT_NAMES.m}.${p.key}`, `${MOMENT_NAMES.v}.${p.key}`]).sort());
    const back = readCheckpointMoments(ck, params.map((p) => p.key), 'run');
    for (const [k, mv] of moments) {
      expect(back.get(k)!.m).toEqual(mv.m);
      expect(back.get(k)!.v).toEqual(mv.v);
    }
    const settings = parseRunSettings(ck.settings, 'run');
    expect(settings).toEqual({ version: 1, lora: PLAN.lora, optim: PLAN.optim, origin: 4, model: { kind: 'default' }, data: PLAN.data });
    expect(() => parseRunSettings({ version: 2 }, 'old run')).toThrow('The checkpoint of “old run” was not written by this version');
    expect(() => readCheckpointMoments(ck, ['other.lora_A.weight'], 'run')).toThrow('lacks the optimizer state of other.lora_A.weight');
  });

  it('counts the data consumed since the origin, and names what differs in the data', () => {
    // 5 steps after the origin, 3 micro-batches of 2 rows each: 30 rows of 7 → epoch 4, row 2.
    expect(dataCursor(9, PLAN, 7)).toEqual({ epoch: 4, index: 2 });
    expect(dataCursor(4, PLAN, 0)).toEqual({ epoch: 0, index: 0 });
    expect(dataDifferences(PLAN.data, PLAN.data)).toEqual([]);
    expect(dataDifferences(PLAN.data, { ...PLAN.data, hash: textHash('hello there'), seqLen: 32 })).toEqual([
      '“d.jsonl” holds other text than when the run started',
      'the sequence length is 32, not 16',
    ]);
  });
});
