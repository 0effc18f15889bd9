// Tests for src/model/blend.ts, PEFT's add_weighted_adapter on the CPU: the cat blend's ΔW against
// Σ wᵢ·sᵢ·Bᵢ·Aᵢ computed here in float64 (1e-6 relative), the svd blend's error against the optimal rank-k
// error of a torch float64 SVD (tests/fixtures/blend/, made by make_blend.py beside it; 1e-4 relative),
// adapters with different targets, ranks and rsLoRA settings, and the refusals.

import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LoraStudioError, ShapeError } from '../../src/io/errors';
import { AdapterLibrary, type KeyValueStore } from '../../src/io/library';
import { adapterConfigToJson, loraKey, writeAdapter, readAdapter, type AdapterConfig, type LoraTarget } from '../../src/io/peft';
import { blendAdapters, type BlendSource } from '../../src/model/blend';
import { mulberry32, randn } from '../reference/rng';

const DIMS: Record<string, { inFeatures: number; outFeatures: number }> = {
  q_proj: { inFeatures: 12, outFeatures: 12 },
  k_proj: { inFeatures: 12, outFeatures: 6 },
  v_proj: { inFeatures: 12, outFeatures: 6 },
  down_proj: { inFeatures: 20, outFeatures: 12 },
};
const LAYERS = 2;

function adapter(seed: number, cfg: Partial<AdapterConfig> & { r: number }, weight: number, name?: string): BlendSource {
  const config: AdapterConfig = { loraAlpha: 2 * cfg.r, loraDropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false, baseModel: 'tiny/base', ...cfg };
  const rng = mulberry32(seed);
  const weights = new Map<string, Float32Array>();
  for (let l = 0; l < LAYERS; l++) {
    for (const t of config.targetModules) {
      const { inFeatures, outFeatures } = DIMS[t];
      weights.set(loraKey(l, t, 'A'), Float32Array.from(randn(rng, config.r * inFeatures, 0.3)));
      weights.set(loraKey(l, t, 'B'), Float32Array.from(randn(rng, outFeatures * config.r, 0.3)));
    }
  }
  return { config, weights, weight, name };
}

/** B·A in float64 for B (out, r) and A (r, in), row-major. */
function product(B: ArrayLike<number>, A: ArrayLike<number>, r: number, out: number, inF: number): Float64Array {
  const M = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) for (let j = 0; j < r; j++) for (let c = 0; c < inF; c++) M[o * inF + c] += B[o * r + j] * A[j * inF + c];
  return M;
}

/** Σ wᵢ·sᵢ·Bᵢ·Aᵢ in float64, the scale written out here rather than taken from the engine. */
function referenceDelta(sources: BlendSource[], layer: number, target: LoraTarget): Float64Array {
  const { inFeatures, outFeatures } = DIMS[target];
  const sum = new Float64Array(outFeatures * inFeatures);
  for (const s of sources) {
    if (!s.config.targetModules.includes(target)) continue;
    const scale = s.config.useRslora ? s.config.loraAlpha / Math.sqrt(s.config.r) : s.config.loraAlpha / s.config.r;
    const BA = product(s.weights.get(loraKey(layer, target, 'B'))!, s.weights.get(loraKey(layer, target, 'A'))!, s.config.r, outFeatures, inFeatures);
    for (let i = 0; i < sum.length; i++) sum[i] += s.weight * scale * BA[i];
  }
  return sum;
}

const frob = (M: ArrayLike<number>) => Math.sqrt(Array.from(M).reduce((a, x) => a + x * x, 0));
const diffNorm = (X: ArrayLike<number>, Y: ArrayLike<number>) => frob(Array.from(X, (x, i) => x - Y[i]));

/** The blend's ΔW for one matrix: scale · B'·A' with its own config's scale. */
function blendDelta(blend: ReturnType<typeof blendAdapters>, layer: number, target: LoraTarget, dims = DIMS[target]): Float64Array {
  const { r, loraAlpha, useRslora } = blend.config;
  const scale = useRslora ? loraAlpha / Math.sqrt(r) : loraAlpha / r;
  const M = product(blend.weights.get(loraKey(layer, target, 'B'))!, blend.weights.get(loraKey(layer, target, 'A'))!, r, dims.outFeatures, dims.inFeatures);
  return M.map((x) => scale * x);
}

describe('cat blend', () => {
  it('equals Σ wᵢ·sᵢ·Bᵢ·Aᵢ to 1e-6 relative, across different targets, ranks, rsLoRA and a negative weight', () => {
    const sources = [
      adapter(1, { r: 4, targetModules: ['q_proj', 'v_proj'] }, 0.8),
      adapter(2, { r: 2, loraAlpha: 16, useRslora: true, targetModules: ['q_proj', 'k_proj', 'down_proj'] }, -1.5),
      adapter(3, { r: 3, loraAlpha: 1, targetModules: ['v_proj'] }, 2.25),
    ];
    const blend = blendAdapters(sources, { combination: 'cat' });
    expect(blend.config).toEqual({ r: 9, loraAlpha: 9, loraDropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'down_proj'], useRslora: false, baseModel: 'tiny/base' });
    expect(blend.relativeError).toBe(0);
    for (let l = 0; l < LAYERS; l++) {
      for (const t of blend.config.targetModules) {
        const want = referenceDelta(sources, l, t);
        const rel = diffNorm(blendDelta(blend, l, t), want) / frob(want);
        expect(rel, `layer ${l} ${t}: relative difference ${rel}`).toBeLessThan(1e-6);
      }
    }
  });

  it('puts wᵢ·sᵢ into A and keeps B, stacking in source order with zero rows and columns where a target is missing', () => {
    const a = adapter(4, { r: 2, loraAlpha: 4 }, -0.5);
    const b = adapter(5, { r: 3, targetModules: ['q_proj'] }, 1);
    const blend = blendAdapters([a, b], { combination: 'cat' });
    const vA = blend.weights.get(loraKey(1, 'v_proj', 'A'))!;
    const vB = blend.weights.get(loraKey(1, 'v_proj', 'B'))!;
    const srcA = a.weights.get(loraKey(1, 'v_proj', 'A'))!, srcB = a.weights.get(loraKey(1, 'v_proj', 'B'))!;
    const inF = DIMS.v_proj.inFeatures;
    expect(vA.length).toBe(5 * inF);
    for (let i = 0; i < 2 * inF; i++) expect(vA[i]).toBe(Math.fround(-0.5 * 2 * srcA[i]));
    expect(vA.subarray(2 * inF).every((x) => x === 0)).toBe(true);
    for (let o = 0; o < DIMS.v_proj.outFeatures; o++) {
      expect([...vB.subarray(o * 5, o * 5 + 2)]).toEqual([srcB[o * 2], srcB[o * 2 + 1]]);
      expect([...vB.subarray(o * 5 + 2, o * 5 + 5)]).toEqual([0, 0, 0]);
    }
  });

  it('is written and read back as PEFT files whose scale is 1', () => {
    const sources = [adapter(6, { r: 2, useRslora: true, loraAlpha: 8 }, 1), adapter(7, { r: 2 }, -1)];
    const blend = blendAdapters(sources, { combination: 'cat' });
    const model = { numLayers: LAYERS, shapes: (t: LoraTarget) => DIMS[t] };
    const files = writeAdapter(blend.config, blend.weights, model);
    expect(JSON.parse(files.configJson)).toMatchObject({ r: 4, lora_alpha: 4, use_rslora: false, base_model_name_or_path: 'tiny/base' });
    const back = readAdapter(files.configJson, files.weights, model);
    const want = referenceDelta(sources, 0, 'q_proj');
    expect(diffNorm(blendDelta({ ...blend, ...back }, 0, 'q_proj'), want) / frob(want)).toBeLessThan(1e-6);
  });

  it('is saved as a new library entry, from library entries, and exports as PEFT files', async () => {
    const data = new Map<string, unknown>();
    const store: KeyValueStore = {
      get: async (k) => structuredClone(data.get(k)),
      set: async (k, v) => void data.set(k, structuredClone(v)),
      del: async (k) => void data.delete(k),
      keys: async () => [...data.keys()],
    };
    const library = new AdapterLibrary({ store, estimate: async () => undefined });
    const model = { numLayers: LAYERS, shapes: (t: LoraTarget) => DIMS[t] };
    const saved = await Promise.all([adapter(8, { r: 2 }, 1), adapter(9, { r: 3, targetModules: ['k_proj'] }, 1)].map((s, i) =>
      library.save({ name: `source ${i}`, baseModel: 'tiny/base', config: s.config, weights: writeAdapter(s.config, new Map(s.weights)).weights, steps: 1, lossHistory: [] })));
    // As the studio would: library entries → blend sources, the weights read back against the model.
    const sources = await Promise.all(saved.map(async (e, i) => {
      const entry = await library.get(e.id);
      const { config, weights } = readAdapter(JSON.stringify(adapterConfigToJson(entry.config)), entry.weights, model);
      return { config, weights, weight: i === 0 ? 0.5 : -2, name: entry.name };
    }));
    const blend = blendAdapters(sources, { combination: 'svd', rank: 3 });
    const entry = await library.save({ name: 'blend', baseModel: blend.config.baseModel, config: blend.config, weights: writeAdapter(blend.config, blend.weights, model).weights, steps: 0, lossHistory: [] });
    expect((await library.list()).map((a) => [a.name, a.r, a.targetModules])).toContainEqual(['blend', 3, ['q_proj', 'k_proj', 'v_proj']]);
    const { files } = await library.exportPeft(entry.id);
    expect(JSON.parse(new TextDecoder().decode(files[0].bytes))).toMatchObject({ r: 3, lora_alpha: 3, use_rslora: false, base_model_name_or_path: 'tiny/base' });
    const back = readAdapter(new TextDecoder().decode(files[0].bytes), files[1].bytes, model);
    // k_proj comes from one adapter of rank 3: the rank-3 blend holds it exactly.
    const want = referenceDelta(sources, 1, 'k_proj');
    expect(diffNorm(blendDelta({ ...blend, ...back }, 1, 'k_proj'), want) / frob(want)).toBeLessThan(1e-6);
  });
});

interface Fixture {
  targets: Record<string, { in: number; out: number }>;
  adapters: { name: string; r: number; lora_alpha: number; use_rslora: boolean; weight: number; factors: Record<string, { A: number[]; B: number[] }> }[];
  reference: Record<string, { R: number; singular_values: number[]; optimal_error: number[]; norm: number; delta_k: { k: number; values: number[] } }>;
}

describe('svd blend against a torch float64 SVD (tests/fixtures/blend/svd.json)', () => {
  const fx = JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/blend/svd.json', import.meta.url)), 'utf8')) as Fixture;
  const sources: BlendSource[] = fx.adapters.map((a) => ({
    name: a.name,
    weight: a.weight,
    config: { r: a.r, loraAlpha: a.lora_alpha, loraDropout: 0, targetModules: Object.keys(a.factors) as LoraTarget[], useRslora: a.use_rslora, baseModel: '' },
    weights: new Map(Object.entries(a.factors).flatMap(([t, f]) => [
      [loraKey(0, t as LoraTarget, 'A'), Float32Array.from(f.A)],
      [loraKey(0, t as LoraTarget, 'B'), Float32Array.from(f.B)],
    ])),
  }));
  const dims = (t: string) => ({ inFeatures: fx.targets[t].in, outFeatures: fx.targets[t].out });
  const exact = blendAdapters(sources, { combination: 'cat' });

  for (const k of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) {
    it(`rank ${k}: ‖ΔW − ΔW_k‖_F is the optimal rank-${k} error to 1e-4`, () => {
      const blend = blendAdapters(sources, { combination: 'svd', rank: k });
      expect(blend.config).toMatchObject({ r: k, loraAlpha: k, useRslora: false });
      for (const t of ['q_proj', 'k_proj'] as const) {
        const ref = fx.reference[t];
        const dW = blendDelta(exact, 0, t, dims(t));
        const err = diffNorm(dW, blendDelta(blend, 0, t, dims(t)));
        const best = ref.optimal_error[Math.min(k, ref.optimal_error.length - 1)];
        // Past the rank of ΔW the best error is 0 up to rounding; float32 factors leave ~1e-7·‖ΔW‖.
        const tol = best > 1e-9 * ref.norm ? 1e-4 * best : 1e-6 * ref.norm;
        expect(Math.abs(err - best), `${t}: error ${err}, optimal ${best}`).toBeLessThanOrEqual(tol);
      }
    });
  }

  it('splits as PEFT does: B = U_k·S_k (columns orthogonal, norms the singular values), A = V_kᵀ (orthonormal rows)', () => {
    const k = 4;
    const blend = blendAdapters(sources, { combination: 'svd', rank: k });
    for (const t of ['q_proj', 'k_proj'] as const) {
      const { inFeatures: inF, outFeatures: outF } = dims(t);
      const A = blend.weights.get(loraKey(0, t, 'A'))!, B = blend.weights.get(loraKey(0, t, 'B'))!;
      for (let i = 0; i < k; i++) {
        for (let j = 0; j < k; j++) {
          let aa = 0, bb = 0;
          for (let c = 0; c < inF; c++) aa += A[i * inF + c] * A[j * inF + c];
          for (let o = 0; o < outF; o++) bb += B[o * k + i] * B[o * k + j];
          expect(Math.abs(aa - (i === j ? 1 : 0)), `${t} A·Aᵀ[${i}, ${j}]`).toBeLessThan(1e-6);
          const want = i === j ? fx.reference[t].singular_values[i] ** 2 : 0;
          expect(Math.abs(bb - want), `${t} Bᵀ·B[${i}, ${j}]`).toBeLessThan(1e-5 * fx.reference[t].singular_values[0] ** 2);
        }
      }
      const ref = fx.reference[t].delta_k.values;
      expect(diffNorm(blendDelta(blend, 0, t, dims(t)), ref) / fx.reference[t].norm).toBeLessThan(1e-6);
    }
  });

  it('defaults to the largest rank, and reports the relative error it dropped', () => {
    const blend = blendAdapters(sources, { combination: 'svd' });
    expect(blend.config.r).toBe(4);
    const dropped = ['q_proj', 'k_proj'].reduce((a, t) => a + fx.reference[t].optimal_error[4] ** 2, 0);
    const total = ['q_proj', 'k_proj'].reduce((a, t) => a + fx.reference[t].norm ** 2, 0);
    expect(blend.relativeError).toBeCloseTo(Math.sqrt(dropped / total), 8);
  });
});

describe('refusals', () => {
  const a = adapter(8, { r: 2 }, 1, 'math');
  const catch_ = (f: () => unknown): LoraStudioError => {
    try {
      f();
    } catch (e) {
      return e as LoraStudioError;
    }
    throw new Error('expected a refusal');
  };

  it('adapters trained on another base model', () => {
    const b = adapter(9, { r: 2, baseModel: 'other/model' }, 1, 'poetry');
    const e = catch_(() => blendAdapters([a, b], { combination: 'cat' }));
    expect(e).toBeInstanceOf(LoraStudioError);
    expect(e.message).toMatch(/Cannot blend poetry, trained on “other\/model”, with math, trained on “tiny\/base”.*same base/);
    // A local path ending in the same name is the same base (sameBaseModel), and an unnamed base blends with any.
    expect(() => blendAdapters([a, adapter(9, { r: 2, baseModel: './models/base' }, 1)], { combination: 'cat' })).not.toThrow();
    expect(() => blendAdapters([a, adapter(9, { r: 2, baseModel: '' }, 1)], { combination: 'cat' })).not.toThrow();
  });

  it('shapes of another model, or another layer count', () => {
    const wide = adapter(10, { r: 2 }, 1, 'wide');
    wide.weights = new Map([...wide.weights].map(([k, v]) => [k, k.includes('lora_A') ? new Float32Array(v.length * 2) : v]));
    const e = catch_(() => blendAdapters([a, wide], { combination: 'svd' }));
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.message).toMatch(/wide's q_proj is 12 × 24 \(out × in\) but math's is 12 × 12: the adapters were trained on different models/);
    const shallow = adapter(11, { r: 2 }, 1, 'shallow');
    shallow.weights = new Map([...shallow.weights].filter(([k]) => k.includes('layers.0.')));
    expect(catch_(() => blendAdapters([a, shallow], { combination: 'cat' })).message).toMatch(/shallow has weights for 1 layers but math for 2/);
    const broken = adapter(12, { r: 2 }, 1, 'broken');
    broken.weights = new Map([...broken.weights].filter(([k]) => k !== loraKey(1, 'v_proj', 'B')));
    expect(catch_(() => blendAdapters([a, broken], { combination: 'cat' })).message).toMatch(/broken: layer 1's v_proj needs lora_A \[2, in\] and lora_B \[out, 2\]/);
  });

  it('a weight that is not a finite number', () => {
    for (const w of [NaN, Infinity, -Infinity, '0.5' as unknown as number]) {
      const e = catch_(() => blendAdapters([a, { ...adapter(13, { r: 2 }, 1), weight: w, name: 'x' }], { combination: 'cat' }));
      expect(e.code).toBe('bad-input');
      expect(e.message).toMatch(/The weight of x is .*: give a finite number/);
    }
  });

  it('no adapters, an unknown combination, a rank with cat, a rank that is not a positive integer', () => {
    expect(catch_(() => blendAdapters([], { combination: 'cat' })).message).toMatch(/at least one adapter/);
    expect(catch_(() => blendAdapters([a], { combination: 'linear' as 'cat' })).message).toMatch(/Unknown combination "linear"/);
    expect(catch_(() => blendAdapters([a], { combination: 'cat', rank: 2 })).message).toMatch(/svd combination only/);
    for (const rank of [0, -1, 1.5]) expect(catch_(() => blendAdapters([a], { combination: 'svd', rank })).message).toMatch(/positive integer/);
  });
});
