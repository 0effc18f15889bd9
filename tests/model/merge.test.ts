// Merging an adapter into its base (src/model/merge.ts), written as a model folder and loaded again as a
// base: its logits equal base + adapter on the GPU within 1e-5 relative (float32, plain, rsLoRA and DoRA, untied
// and tied), untargeted tensors are the base's bytes, a tied model gets no lm_head, and the base's tokenizer and
// generation files come along. For BF16 and F16 bases every merged value is the float64 W + s·B·A rounded
// once to nearest-even, checked against a reference that searches the table of every 16-bit value.

import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelDir, nodeFolderSource } from '../../src/cli/files';
import { bfloat16ToFloat32, float16ToFloat32, parseSafetensors, writeSafetensorsRaw } from '../../src/io/safetensors';
import { toBfloat16Bits, toFloat16Bits } from '../../src/io/float_encode';
import { loraKey, loraScale, loraSubmodule, LORA_TARGETS, type LoraTarget } from '../../src/io/peft';
import { parseModelConfig, projectionDims, weightShapes, type ModelConfig } from '../../src/model/config';
import { createModel } from '../../src/model/factory';
import { mergedModelFiles, type MergeAdapter } from '../../src/model/merge';
import { Generator } from '../../src/train/generate';
import { randomAdapter } from '../io/random_adapter';
import { mulberry32, randn } from '../reference/rng';
import { relMaxDiff, testGpu } from '../gpu/test-gpu';
import { TINY_CONFIG, writeTinyModel } from '../cli/tiny-model';

function adapterFor(config: ModelConfig, overrides: Parameters<typeof randomAdapter>[0], seed: number): MergeAdapter {
  const dims = Object.fromEntries(LORA_TARGETS.map((t) => [t, projectionDims(config, t)])) as Record<LoraTarget, { inFeatures: number; outFeatures: number }>;
  return randomAdapter(overrides, config.layers, seed, dims);
}

async function mergeToDir(dir: string, adapter: MergeAdapter): Promise<{ out: string; notes: string[] }> {
  const merged = await mergedModelFiles(nodeFolderSource(dir), adapter);
  const out = mkdtempSync(join(tmpdir(), 'lora-merged-'));
  for (const f of merged.files) writeFileSync(join(out, f.name), f.bytes);
  return { out, notes: merged.notes };
}

const PROMPT = [1, 5, 9, 30, 2, 17, 11];

async function logits(dir: string, adapter?: MergeAdapter): Promise<Float32Array> {
  const gpu = await testGpu();
  const { config, weights } = await loadModelDir(dir);
  const model = createModel(gpu, config, weights);
  if (adapter) model.setAdapter(adapter.config, new Map(adapter.weights));
  const gen = new Generator(model, 8);
  const rows: Float32Array[] = [];
  for (let len = 1; len <= PROMPT.length; len++) rows.push(await gen.nextLogits(PROMPT.slice(0, len)));
  const out = new Float32Array(rows.length * config.vocab);
  rows.forEach((r, i) => out.set(r, i * config.vocab));
  return out;
}

describe('merge into a float32 base', () => {
  const cases: [string, Record<string, unknown>, Parameters<typeof randomAdapter>[0]][] = [
    ['Llama, every target', { num_hidden_layers: 2 }, { r: 4, loraAlpha: 8 }],
    ['Llama, rsLoRA on q, v and down', { num_hidden_layers: 2 }, { r: 4, loraAlpha: 6, useRslora: true, targetModules: ['q_proj', 'v_proj', 'down_proj'] }],
    ['Qwen2 with tied embeddings and q/k/v biases', { architectures: ['Qwen2ForCausalLM'], tie_word_embeddings: true }, { r: 2, loraAlpha: 4, targetModules: ['q_proj', 'k_proj', 'o_proj', 'up_proj'] }],
    ['Llama, DoRA on q, v and down (m / ‖W + s·B·A‖ per row)', { num_hidden_layers: 2 }, { r: 4, loraAlpha: 8, useDora: true, targetModules: ['q_proj', 'v_proj', 'down_proj'] }],
  ];
  for (const [what, overrides, settings] of cases) {
    it(`${what}: the reloaded folder's logits equal base + adapter within 1e-5`, async () => {
      const base = writeTinyModel(3, overrides);
      const config = parseModelConfig(JSON.stringify({ ...TINY_CONFIG, ...overrides }));
      const adapter = adapterFor(config, settings, 11);
      const { out, notes } = await mergeToDir(base, adapter);
      const want = await logits(base, adapter);
      const got = await logits(out);
      const d = relMaxDiff(got, want);
      expect(d, `maxdiff ${d}`).toBeLessThan(1e-5);
      // The adapter really changed the model (so the parity above is not base against base).
      expect(relMaxDiff(await logits(base), want)).toBeGreaterThan(1e-2);
      expect(notes[0]).toMatch(new RegExp(`s = ${+loraScale(adapter.config).toPrecision(6)}.*rounded once to F32`));
      if (adapter.config.useDora) expect(notes[0]).toMatch(/^Merged DoRA's m \/ ‖W \+ s·B·A‖/);

      const before = parseSafetensors(new Uint8Array(await nodeFolderSource(base).read('model.safetensors')));
      const after = parseSafetensors(new Uint8Array(await nodeFolderSource(out).read('model.safetensors')));
      expect([...after.tensors.keys()].sort()).toEqual([...before.tensors.keys()].sort());
      expect(after.tensors.has('lm_head.weight')).toBe(!config.tied);
      for (const name of before.tensors.keys()) {
        const targeted = adapter.config.targetModules.some((t) => name.endsWith(`.${loraSubmodule(t)}.${t}.weight`));
        expect(after.tensors.get(name)!.dtype).toBe('F32');
        if (!targeted) expect(Buffer.compare(after.bytes(name), before.bytes(name)), `${name} copied bit-exact`).toBe(0);
        else expect(Buffer.compare(after.bytes(name), before.bytes(name)), `${name} merged`).not.toBe(0);
      }
    });
  }

  it('copies config.json, the tokenizer and generation files the base has, and no others', async () => {
    const base = writeTinyModel(4);
    const extra = { 'generation_config.json': '{"do_sample": false}', 'special_tokens_map.json': '{"eos_token": "</s>"}', 'tokenizer_config.json': '{"model_max_length": 64}' };
    for (const [name, text] of Object.entries(extra)) writeFileSync(join(base, name), text);
    writeFileSync(join(base, 'notes.txt'), 'not part of a model');
    const config = parseModelConfig(JSON.stringify(TINY_CONFIG));
    const merged = await mergedModelFiles(nodeFolderSource(base), adapterFor(config, { targetModules: ['v_proj'] }, 2));
    expect(merged.files.map((f) => f.name).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer_config.json']);
    const src = nodeFolderSource(base);
    for (const name of ['config.json', ...Object.keys(extra)]) {
      expect(Buffer.compare(merged.files.find((f) => f.name === name)!.bytes, await src.read(name)), name).toBe(0);
    }
  });
});

/** Every finite value of a 16-bit format with its bits, sorted: the reference rounds by searching it. */
function table(decode: (bits: number) => number): { values: Float64Array; bits: Uint16Array } {
  const all: [number, number][] = [];
  for (let b = 0; b < 65536; b++) {
    const v = decode(b);
    if (Number.isFinite(v) && !(v === 0 && b !== 0)) all.push([v, b]); // one zero (+0)
  }
  all.sort((x, y) => x[0] - y[0]);
  return { values: Float64Array.from(all, (e) => e[0]), bits: Uint16Array.from(all, (e) => e[1]) };
}

/** The nearest value of the table to x, ties to the one with an even last bit: rounding by definition. */
function nearest(t: { values: Float64Array; bits: Uint16Array }, x: number): number {
  let lo = 0, hi = t.values.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (t.values[mid] <= x) lo = mid;
    else hi = mid;
  }
  const dl = Math.abs(x - t.values[lo]), dh = Math.abs(t.values[hi] - x);
  const pick = dl < dh ? lo : dh < dl ? hi : (t.bits[lo] & 1) === 0 ? lo : hi;
  return t.values[pick];
}

describe('merge into a half-precision base', () => {
  for (const [dtype, decode, encode] of [['BF16', bfloat16ToFloat32, toBfloat16Bits], ['F16', float16ToFloat32, toFloat16Bits]] as const) {
    it(`${dtype}: each merged weight is the float64 W + s·B·A rounded once to nearest-even, the rest copied`, async () => {
      const overrides = { num_hidden_layers: 2, torch_dtype: dtype === 'BF16' ? 'bfloat16' : 'float16' };
      const config = parseModelConfig(JSON.stringify({ ...TINY_CONFIG, ...overrides }));
      const base = mkdtempSync(join(tmpdir(), `lora-${dtype}-`));
      const rng = mulberry32(5);
      const tensors = [...weightShapes(config)].map(([name, shape]) => {
        const n = shape.reduce((a, b) => a * b, 1);
        const half = Uint16Array.from(randn(rng, n, 0.15), (v) => encode(v));
        return { name, dtype, shape, bytes: new Uint8Array(half.buffer) };
      });
      writeFileSync(join(base, 'config.json'), JSON.stringify({ ...TINY_CONFIG, ...overrides }));
      writeFileSync(join(base, 'model.safetensors'), writeSafetensorsRaw(tensors, { format: 'pt' }));
      const adapter = adapterFor(config, { r: 4, loraAlpha: 16, useRslora: true }, 9);
      const { out, notes } = await mergeToDir(base, adapter);
      expect(notes[0]).toMatch(new RegExp(`rounded once to ${dtype} \\(round to nearest, ties to even\\)`));

      const ref = table(decode);
      const s = loraScale(adapter.config);
      const before = parseSafetensors(new Uint8Array(await nodeFolderSource(base).read('model.safetensors')));
      const after = parseSafetensors(new Uint8Array(await nodeFolderSource(out).read('model.safetensors')));
      let changed = 0;
      for (const t of tensors) {
        expect(after.tensors.get(t.name)!.dtype).toBe(dtype);
        const m = /^model\.layers\.(\d+)\.\w+\.(\w+)\.weight$/.exec(t.name);
        const target = m?.[2] as LoraTarget | undefined;
        if (!target || !LORA_TARGETS.includes(target)) {
          expect(Buffer.compare(after.bytes(t.name), t.bytes), t.name).toBe(0);
          continue;
        }
        const layer = Number(m![1]);
        const { inFeatures, outFeatures } = projectionDims(config, target);
        const A = adapter.weights.get(loraKey(layer, target, 'A'))!, B = adapter.weights.get(loraKey(layer, target, 'B'))!;
        const W = before.readF32(t.name), got = after.readF32(t.name);
        for (let o = 0; o < outFeatures; o++) {
          for (let i = 0; i < inFeatures; i++) {
            let d = 0;
            for (let j = 0; j < adapter.config.r; j++) d += B[o * adapter.config.r + j] * A[j * inFeatures + i];
            const want = nearest(ref, W[o * inFeatures + i] + s * d);
            if (got[o * inFeatures + i] !== want) expect.fail(`${t.name}[${o}, ${i}]: got ${got[o * inFeatures + i]}, want ${want}`);
            if (want !== W[o * inFeatures + i]) changed++;
          }
        }
      }
      expect(changed).toBeGreaterThan(1000);
      // The folder loads again as a base.
      const reloaded = await loadModelDir(out);
      expect(reloaded.config.layers).toBe(2);
    });
  }

  it('rounds float64 values of every magnitude (subnormals included) as the table search does', () => {
    const rng = mulberry32(17);
    for (const [decode, encode, lo, hi] of [[bfloat16ToFloat32, toBfloat16Bits, -140, 127], [float16ToFloat32, toFloat16Bits, -27, 15]] as const) {
      const ref = table(decode);
      for (let k = 0; k < 20_000; k++) {
        const x = (rng() < 0.5 ? -1 : 1) * (1 + rng()) * 2 ** Math.floor(lo + rng() * (hi - lo));
        const want = nearest(ref, x), got = decode(encode(x));
        if (got !== want && !(got === 0 && want === 0)) expect.fail(`${x}: got ${got}, want ${want}`);
      }
    }
  });

  it('rounds a float64 value once: a value just above a tie goes up, where rounding through float32 first would go to even', () => {
    expect(bfloat16ToFloat32(toBfloat16Bits(1 + 2 ** -8))).toBe(1); // the tie itself: to even
    expect(bfloat16ToFloat32(toBfloat16Bits(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6); // tie between odd and even: to even (up)
    expect(bfloat16ToFloat32(toBfloat16Bits(1 + 2 ** -8 + 2 ** -40))).toBe(1 + 2 ** -7);
    expect(float16ToFloat32(toFloat16Bits(1 + 2 ** -11))).toBe(1);
    expect(float16ToFloat32(toFloat16Bits(1 + 2 ** -11 + 2 ** -40))).toBe(1 + 2 ** -10);
    expect(float16ToFloat32(toFloat16Bits(-(2 ** -24) * 1.5 - 2 ** -60))).toBe(-(2 ** -23)); // subnormal, just past a tie
    expect(float16ToFloat32(toFloat16Bits(65519.99))).toBe(65504);
    expect(float16ToFloat32(toFloat16Bits(65520))).toBe(Infinity);
  });
});
