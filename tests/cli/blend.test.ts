// `npm run cli -- blend` end to end on a tiny model written to disk: a cat blend of three PEFT adapter folders
// (different targets, ranks, rsLoRA, a negative weight, and one made elsewhere: ".default" keys, no lora_alpha)
// is written as PEFT files whose ΔW is Σ wᵢ·sᵢ·Bᵢ·Aᵢ; an svd blend has the asked rank; bad input gets one
// line naming what to fix, no stack trace, and no output folder.

import { describe, expect, it } from 'vitest';
import { cli as runCli } from './run_cli';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TINY_CONFIG, writeTinyModel } from './tiny-model';
import { saveAdapterDir } from '../../src/cli/files';
import { loraKey, readAdapter, type AdapterConfig, type LoraTarget } from '../../src/io/peft';
import { writeSafetensors } from '../../src/io/safetensors';
import { parseModelConfig, projectionDims } from '../../src/model/config';
import { mulberry32, randn } from '../reference/rng';

const cli = (args: string[]) => runCli(args, 120_000);

const model = writeTinyModel(1);
const config = parseModelConfig(JSON.stringify(TINY_CONFIG));
const work = mkdtempSync(join(tmpdir(), 'lora-blend-'));

function randomWeights(cfg: AdapterConfig, seed: number): Map<string, Float32Array> {
  const rng = mulberry32(seed);
  const w = new Map<string, Float32Array>();
  for (let l = 0; l < config.layers; l++) {
    for (const t of cfg.targetModules) {
      const { inFeatures, outFeatures } = projectionDims(config, t);
      w.set(loraKey(l, t, 'A'), Float32Array.from(randn(rng, cfg.r * inFeatures, 0.2)));
      w.set(loraKey(l, t, 'B'), Float32Array.from(randn(rng, outFeatures * cfg.r, 0.2)));
    }
  }
  return w;
}

const base = { loraDropout: 0, baseModel: 'tiny-llama' };
const math: AdapterConfig = { ...base, r: 4, loraAlpha: 8, targetModules: ['q_proj', 'v_proj'], useRslora: false };
const style: AdapterConfig = { ...base, r: 2, loraAlpha: 4, targetModules: ['q_proj', 'k_proj'], useRslora: true };
const elsewhere: AdapterConfig = { ...base, r: 3, loraAlpha: 8, targetModules: ['down_proj'], useRslora: false };
const sources = [
  { dir: join(work, 'math'), config: math, weights: randomWeights(math, 1), weight: 0.7 },
  { dir: join(work, 'style'), config: style, weights: randomWeights(style, 2), weight: -1.25 },
  { dir: join(work, 'elsewhere'), config: elsewhere, weights: randomWeights(elsewhere, 3), weight: 2 },
];
const ready = (async () => {
  await saveAdapterDir(sources[0].dir, math, sources[0].weights, config);
  await saveAdapterDir(sources[1].dir, style, sources[1].weights, config);
  // As another tool saves it: the adapter name in every key, and no lora_alpha (PEFT's default 8).
  mkdirSync(sources[2].dir);
  writeFileSync(join(sources[2].dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 3, target_modules: ['down_proj'] }));
  const tensors = [...sources[2].weights].map(([name, data]) => ({
    name: name.replace(/\.weight$/, '.default.weight'),
    shape: name.includes('lora_A') ? [3, data.length / 3] : [data.length / 3, 3],
    data,
  }));
  writeFileSync(join(sources[2].dir, 'adapter_model.safetensors'), writeSafetensors(tensors, { format: 'pt' }));
})();

function readOut(dir: string) {
  const expected = { numLayers: config.layers, shapes: (t: LoraTarget) => projectionDims(config, t) };
  return readAdapter(readFileSync(join(dir, 'adapter_config.json'), 'utf8'), readFileSync(join(dir, 'adapter_model.safetensors')), expected);
}

/** scale·B·A in float64 over one matrix. */
function delta(cfg: AdapterConfig, w: Map<string, Float32Array>, layer: number, t: LoraTarget): Float64Array {
  const { inFeatures: inF, outFeatures: outF } = projectionDims(config, t);
  const scale = cfg.useRslora ? cfg.loraAlpha / Math.sqrt(cfg.r) : cfg.loraAlpha / cfg.r;
  const A = w.get(loraKey(layer, t, 'A'))!, B = w.get(loraKey(layer, t, 'B'))!;
  const M = new Float64Array(outF * inF);
  for (let o = 0; o < outF; o++) for (let j = 0; j < cfg.r; j++) for (let c = 0; c < inF; c++) M[o * inF + c] += scale * B[o * cfg.r + j] * A[j * inF + c];
  return M;
}

const frob = (M: ArrayLike<number>) => Math.sqrt(Array.from(M).reduce((a, x) => a + x * x, 0));

describe('cli blend', () => {
  it('writes a cat blend as PEFT files whose ΔW is Σ wᵢ·sᵢ·Bᵢ·Aᵢ, with a note for the missing lora_alpha', async () => {
    await ready;
    const out = join(work, 'cat');
    const r = await cli(['blend', '--model', model, ...sources.flatMap((s) => ['--adapter', `${s.dir}:${s.weight}`]), '--combination', 'cat', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ out, combination: 'cat', r: 9, lora_alpha: 9, targets: ['q_proj', 'k_proj', 'v_proj', 'down_proj'], relative_error: 0 });
    expect(r.stderr).toMatch(/^note: .*elsewhere\/adapter_config\.json: has no lora_alpha, so PEFT's default 8 applies/m);
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'))).toMatchObject({ r: 9, lora_alpha: 9, use_rslora: false, base_model_name_or_path: 'tiny-llama' });
    const blend = readOut(out);
    for (const t of blend.config.targetModules) {
      const want = new Float64Array(projectionDims(config, t).outFeatures * projectionDims(config, t).inFeatures);
      for (const s of sources) {
        if (!s.config.targetModules.includes(t)) continue;
        const d = delta(s.config, s.weights, 0, t);
        for (let i = 0; i < want.length; i++) want[i] += s.weight * d[i];
      }
      const got = delta(blend.config, blend.weights, 0, t);
      const rel = frob(got.map((x, i) => x - want[i])) / frob(want);
      expect(rel, `${t}: relative difference ${rel}`).toBeLessThan(1e-6);
    }
    expect(existsSync(join(out, 'adapter_model.safetensors.tmp'))).toBe(false);
  });

  it('writes an svd blend of the asked rank (PEFT\'s default combination)', async () => {
    await ready;
    const out = join(work, 'svd');
    const r = await cli(['blend', '--model', model, '--adapter', `${sources[0].dir}:1`, '--adapter', `${sources[1].dir}:0.5`, '--rank', '3', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const line = JSON.parse(r.stdout);
    expect(line).toMatchObject({ combination: 'svd', r: 3, lora_alpha: 3, targets: ['q_proj', 'k_proj', 'v_proj'] });
    expect(line.relative_error).toBeGreaterThan(0);
    expect(line.relative_error).toBeLessThan(1);
    expect(readOut(out).config.r).toBe(3);
  });

  const bad: [string, string[], RegExp][] = [
    ['a weight that is not a number', ['--adapter', `${join(work, 'math')}:abc`], /--adapter .*math:abc: write DIR:WEIGHT with WEIGHT a finite number/],
    ['a weight of NaN', ['--adapter', `${join(work, 'math')}:NaN`], /WEIGHT a finite number/],
    ['an adapter without a weight', ['--adapter', join(work, 'math')], /write DIR:WEIGHT/],
    ['--rank with cat', ['--adapter', `${join(work, 'math')}:1`, '--combination', 'cat', '--rank', '2'], /--rank applies to --combination svd/],
    ['an unknown combination', ['--adapter', `${join(work, 'math')}:1`, '--combination', 'ties'], /--combination must be cat or svd \(got ties\)/],
    ['a missing adapter folder', ['--adapter', `${join(work, 'nowhere')}:1`], /nowhere\/adapter_config\.json: cannot read it \(ENOENT\)/],
  ];
  for (const [what, extra, message] of bad) {
    it(`refuses ${what} in one line, writing nothing`, async () => {
      await ready;
      const out = join(work, `bad-${what.replace(/\W+/g, '-')}`);
      const r = await cli(['blend', '--model', model, ...extra, '--out', out]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^error: .*${message.source}`));
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(existsSync(out)).toBe(false);
    });
  }

  it('refuses adapters of another base, and of another model\'s shapes, in one line', async () => {
    await ready;
    const other = join(work, 'other-base');
    await saveAdapterDir(other, { ...math, baseModel: 'someone/else' }, randomWeights(math, 4), config);
    const r = await cli(['blend', '--model', model, '--adapter', `${sources[0].dir}:1`, '--adapter', `${other}:1`, '--out', join(work, 'x')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: Cannot blend .*other-base, trained on “someone\/else”, with .*math, trained on “tiny-llama”/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);

    const wider = writeTinyModel(2, { hidden_size: 48, head_dim: 12 });
    const r2 = await cli(['blend', '--model', wider, '--adapter', `${sources[0].dir}:1`, '--out', join(work, 'y')]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/^error: .*math\/adapter_model\.safetensors: .* has shape \[4, 32\] but this model's q_proj needs \[4, 48\]/);
    expect(existsSync(join(work, 'x')) || existsSync(join(work, 'y'))).toBe(false);
  });
});
