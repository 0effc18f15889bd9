// `npm run bench -- --quick` end to end through the real CLI process, so the bench never rots: one JSON line
// with every field the GPU runs compare, each a sane positive number (timings on SwiftShader mean nothing).
// Also the pieces that do not need the GPU: the model shapes match the issue's, and the weight pattern.

import { describe, expect, it } from 'vitest';
import { cli } from '../cli/run_cli';
import { benchModelConfig, patternWeights, BENCH_MODELS } from '../../src/cli/bench';
import { weightShapes } from '../../src/model/config';

describe('bench', () => {
  it('--quick prints one JSON line with sane numbers', async () => {
    const r = await cli(['bench', '--quick']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const j = JSON.parse(lines[0]);
    expect(j).toMatchObject({ model: 'quick', gemm: 'fast', batch: 2, seq: 32, steps: 3 });
    expect(typeof j.device).toBe('string');
    for (const k of ['ms_per_step_median', 'ms_per_step_p90', 'tokens_per_s', 'peak_gpu_bytes', 'weights_bytes', 'first_step_ms']) {
      expect(j[k], k).toBeGreaterThan(0);
      expect(Number.isFinite(j[k]), k).toBe(true);
    }
    expect(j.ms_per_step_p90).toBeGreaterThanOrEqual(j.ms_per_step_median);
    expect(j.tokens_per_s).toBeCloseTo((2 * 32) / (j.ms_per_step_median / 1000), -1);
    // Weights, the adapter, its gradients and AdamW moments, and the activations all live on the GPU.
    expect(j.peak_gpu_bytes).toBeGreaterThan(j.weights_bytes);
    // Random weights of std 0.02 give nearly uniform logits: the loss starts near ln(V).
    expect(Math.abs(j.loss_first - Math.log(256))).toBeLessThan(0.5);
    expect(Number.isFinite(j.loss_last)).toBe(true);
    expect(['timestamp-query', 'wall-clock']).toContain(j.timing);
    for (const kernel of ['matmul', 'matmul_fast']) {
      expect(Object.keys(j[kernel]).sort(), kernel).toEqual(['256^3', 'lm_head', 'mlp_up', 'q_proj']);
      for (const [k, v] of Object.entries(j[kernel])) expect(v, `${kernel}.${k}`).toBeGreaterThan(0);
    }
    expect(j.matmul_shapes).toEqual({ '256^3': [256, 256, 256], q_proj: [64, 64, 64], mlp_up: [64, 128, 64], lm_head: [64, 256, 64] });
  });

  it('refuses an unknown model or flag by name', async () => {
    const r = await cli(['bench', '--model', 'gpt-5']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown --model "gpt-5"; choose smollm2-135m, qwen2.5-0.5b, tinyllama-1.1b, qwen3-0.6b, all/);
    const f = await cli(['bench', '--quick', '--batchsize', '3']);
    expect(f.code).toBe(1);
    expect(f.stderr).toMatch(/unknown argument "--batchsize"/);
    const g = await cli(['bench', '--quick', '--gemm', 'cublas']);
    expect(g.code).toBe(1);
    expect(g.stderr).toMatch(/--gemm must be fast or v1 \(got cublas\)/);
  });

  it('benchmarks the shapes the issue names', () => {
    expect(BENCH_MODELS).toEqual(['smollm2-135m', 'qwen2.5-0.5b', 'tinyllama-1.1b', 'qwen3-0.6b']);
    expect(benchModelConfig('smollm2-135m')).toMatchObject({ hidden: 576, layers: 30, heads: 9, kvHeads: 3, intermediate: 1536, vocab: 49152, tied: true, attnBias: false });
    expect(benchModelConfig('qwen2.5-0.5b')).toMatchObject({ hidden: 896, layers: 24, heads: 14, kvHeads: 2, headDim: 64, intermediate: 4864, vocab: 151936, tied: true, attnBias: true });
    expect(benchModelConfig('tinyllama-1.1b')).toMatchObject({ hidden: 2048, layers: 22, heads: 32, kvHeads: 4, intermediate: 5632, vocab: 32000, tied: false });
    expect(benchModelConfig('qwen3-0.6b')).toMatchObject({
      architecture: 'Qwen3ForCausalLM', hidden: 1024, layers: 28, heads: 16, kvHeads: 8, headDim: 128, intermediate: 3072, vocab: 151936,
      tied: true, attnBias: false, qkNorm: true, rmsEps: 1e-6, ropeTheta: 1000000, maxPositions: 40960,
    });
  });

  it('pattern weights fill every tensor at its shape: norms 1, the rest periodic with std ≈ 0.02', () => {
    const config = benchModelConfig('quick');
    const w = patternWeights(config);
    for (const [name, shape] of weightShapes(config)) {
      const t = w.get(name)!;
      expect(t.length, name).toBe(shape.reduce((a, b) => a * b, 1));
      if (name.endsWith('norm.weight')) expect(t.every((v) => v === 1), name).toBe(true);
    }
    const e = w.get('model.embed_tokens.weight')!; // 16384 values, within one period
    const std = Math.sqrt(e.reduce((s, v) => s + v * v, 0) / e.length);
    expect(std).toBeGreaterThan(0.018);
    expect(std).toBeLessThan(0.022);
    // Past one period the table repeats: w[i] = w[i mod 65521].
    const big = patternWeights({ ...config, vocab: 4096, hidden: 64 }).get('model.embed_tokens.weight')!;
    expect(big[65521 + 5]).toBe(big[5]);
    expect(big[3 * 65521 + 17]).toBe(big[17]);
    expect(big[65521 - 1]).not.toBe(big[65521]);
  });
});
