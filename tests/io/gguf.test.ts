// The GGUF LoRA export (src/io/gguf.ts) read back with Hugging Face's GGUF parser (@huggingface/gguf): the
// metadata llama.cpp checks on load with its types, every tensor's name, ggml shape, dtype and 32-byte
// alignment, and every value: lora_a is PEFT's A as stored, lora_b is PEFT's B, its rows permuted into ggml's
// RoPE pair order for the Llama architecture's q_proj and k_proj (as convert_hf_to_gguf permutes the base),
// so llama.cpp's update alpha/r · b·a equals the permuted PEFT update. Also rsLoRA's alpha and the refusals.

import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf, GGUFValueType } from '@huggingface/gguf';
import { LoraStudioError } from '../../src/io/errors.ts';
import { exportAdapter } from '../../src/io/export.ts';
import { ggufLoraName, permuteRopeRows, writeGgufAdapter } from '../../src/io/gguf.ts';
import { LORA_TARGETS, loraKey, type LoraTarget } from '../../src/io/peft.ts';
import { randomAdapter, tinyBase, TINY_DIMS } from './random_adapter.ts';

const work = mkdtempSync(join(tmpdir(), 'lora-gguf-'));
let files = 0;

/** Writes the bytes to disk and parses them as a GGUF file, as a user's tool would find them. */
async function parse(bytes: Uint8Array) {
  const path = join(work, `adapter-${files++}.gguf`);
  writeFileSync(path, bytes);
  const parsed = await gguf(path, { allowLocalFile: true, typedMetadata: true });
  const file = readFileSync(path);
  const values = (name: string): Float32Array => {
    const info = parsed.tensorInfos.find((t) => t.name === name)!;
    const n = info.shape.reduce((a, d) => a * Number(d), 1);
    const at = Number(parsed.tensorDataOffset + info.offset);
    const view = new DataView(file.buffer, file.byteOffset + at, 4 * n);
    return Float32Array.from({ length: n }, (_, i) => view.getFloat32(4 * i, true));
  };
  return { ...parsed, values };
}

const maxDiff = (x: ArrayLike<number>, y: ArrayLike<number>) => {
  expect(x.length).toBe(y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
};

/** ΔW = s · B·A in float64, (out, in) row-major. */
function delta(B: ArrayLike<number>, A: ArrayLike<number>, out: number, r: number, inF: number, s: number): Float64Array {
  const d = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) for (let k = 0; k < r; k++) for (let i = 0; i < inF; i++) d[o * inF + i] += s * B[o * r + k] * A[k * inF + i];
  return d;
}

describe('GGUF LoRA adapter', () => {
  it('carries the metadata llama.cpp checks, with the types its converter writes', async () => {
    const adapter = randomAdapter();
    const { bytes, notes } = writeGgufAdapter(adapter, tinyBase());
    expect(notes).toEqual([]);
    const g = await parse(bytes);
    expect(g.littleEndian).toBe(true);
    expect(g.metadata.version).toBe(3);
    expect(g.metadata.tensor_count).toBe(BigInt(2 * 2 * LORA_TARGETS.length));
    const kv = Object.fromEntries(
      Object.entries(g.typedMetadata).filter(([k]) => !['version', 'tensor_count', 'kv_count'].includes(k)).map(([k, v]) => [k, [v.value, v.type]]),
    );
    expect(kv).toEqual({
      'general.architecture': ['llama', GGUFValueType.STRING],
      'general.type': ['adapter', GGUFValueType.STRING],
      'adapter.type': ['lora', GGUFValueType.STRING],
      'general.name': ['tiny-adapter', GGUFValueType.STRING],
      'adapter.lora.alpha': [8, GGUFValueType.FLOAT32],
      'general.quantization_version': [2, GGUFValueType.UINT32],
    });
    expect(g.metadata.kv_count).toBe(BigInt(Object.keys(kv).length));
  });

  it('names, shapes, aligns and fills every tensor as llama.cpp maps them (Llama: q/k rows in RoPE pair order)', async () => {
    const adapter = randomAdapter();
    const base = tinyBase();
    const g = await parse(writeGgufAdapter(adapter, base).bytes);
    const want: string[] = [];
    for (let layer = 0; layer < 2; layer++) for (const t of LORA_TARGETS) want.push(ggufLoraName(layer, t, 'a'), ggufLoraName(layer, t, 'b'));
    expect(g.tensorInfos.map((t) => t.name)).toEqual(want);
    expect(want.slice(0, 4)).toEqual(['blk.0.attn_q.weight.lora_a', 'blk.0.attn_q.weight.lora_b', 'blk.0.attn_k.weight.lora_a', 'blk.0.attn_k.weight.lora_b']);
    expect(want).toContain('blk.1.attn_output.weight.lora_b');
    expect(want).toContain('blk.1.ffn_down.weight.lora_a');
    expect(Number(g.tensorDataOffset) % 32).toBe(0);

    const r = adapter.config.r;
    for (let layer = 0; layer < 2; layer++) {
      for (const t of LORA_TARGETS) {
        const { inFeatures, outFeatures } = TINY_DIMS[t];
        const infoA = g.tensorInfos.find((x) => x.name === ggufLoraName(layer, t, 'a'))!;
        const infoB = g.tensorInfos.find((x) => x.name === ggufLoraName(layer, t, 'b'))!;
        // ggml's ne: a is [in, r] and b is [r, out], so that llama.cpp's checks model.ne[0] == a.ne[0],
        // model.ne[1] == b.ne[1] and a.ne[1] == b.ne[0] hold for a model weight of ne [in, out].
        expect(infoA.shape).toEqual([BigInt(inFeatures), BigInt(r)]);
        expect(infoB.shape).toEqual([BigInt(r), BigInt(outFeatures)]);
        expect([infoA.dtype, infoB.dtype]).toEqual([0, 0]); // F32, the converter's default --outtype
        expect([Number(infoA.offset) % 32, Number(infoB.offset) % 32]).toEqual([0, 0]);

        const A = adapter.weights.get(loraKey(layer, t, 'A'))!;
        const B = adapter.weights.get(loraKey(layer, t, 'B'))!;
        expect(maxDiff(g.values(infoA.name), A)).toBe(0);
        const b = g.values(infoB.name);
        const heads = t === 'q_proj' ? 4 : t === 'k_proj' ? 2 : 0;
        if (heads === 0) {
          expect(maxDiff(b, B)).toBe(0);
          continue;
        }
        // HF pairs rotary dims (i, i + D/2) in each head; ggml's RoPE pairs (2i, 2i + 1).
        const D = outFeatures / heads;
        for (let h = 0; h < heads; h++) {
          for (let i = 0; i < D / 2; i++) {
            for (let k = 0; k < r; k++) {
              expect(b[(h * D + 2 * i) * r + k]).toBe(B[(h * D + i) * r + k]);
              expect(b[(h * D + 2 * i + 1) * r + k]).toBe(B[(h * D + D / 2 + i) * r + k]);
            }
          }
        }
        // So llama.cpp's update on the permuted base weight is the permuted PEFT update.
        const s = 8 / r;
        const fromGguf = delta(b, g.values(infoA.name), outFeatures, r, inFeatures, s);
        const peft = delta(B, A, outFeatures, r, inFeatures, s);
        const permuted = permuteRopeRows(Float32Array.from(peft), outFeatures, inFeatures, heads);
        const diff = maxDiff(fromGguf, permuted);
        expect(diff, `max |ΔW_gguf − P·ΔW_peft| = ${diff}`).toBeLessThan(1e-6);
      }
    }
  });

  it('names the architecture as llama.cpp does, and permutes only the Llama layout', async () => {
    const adapter = randomAdapter({ targetModules: ['q_proj', 'k_proj', 'v_proj'] }, 1);
    const cases: [string, string, boolean][] = [
      ['LlamaForCausalLM', 'llama', true],
      ['MistralForCausalLM', 'llama', true],
      ['Qwen2ForCausalLM', 'qwen2', false],
      ['Qwen3ForCausalLM', 'qwen3', false],
    ];
    for (const [hf, arch, permuted] of cases) {
      const g = await parse(writeGgufAdapter(adapter, tinyBase(hf, 1)).bytes);
      expect(g.metadata['general.architecture'], hf).toBe(arch);
      const B = adapter.weights.get(loraKey(0, 'q_proj', 'B'))!;
      const same = maxDiff(g.values('blk.0.attn_q.weight.lora_b'), B) === 0;
      expect(same, `${hf}: q_proj lora_b ${permuted ? 'permuted' : 'as PEFT stores it'}`).toBe(!permuted);
      expect(maxDiff(g.values('blk.0.attn_v.weight.lora_b'), adapter.weights.get(loraKey(0, 'v_proj', 'B'))!)).toBe(0);
    }
  });

  it('writes rsLoRA as alpha = α·√r, so that llama.cpp\'s alpha / r is α/√r, and says so', async () => {
    const adapter = randomAdapter({ r: 8, loraAlpha: 16, useRslora: true, targetModules: ['v_proj'] }, 1);
    const { bytes, notes } = writeGgufAdapter(adapter, tinyBase('Qwen2ForCausalLM', 1));
    const alpha = ((await parse(bytes)).metadata as Record<string, unknown>)['adapter.lora.alpha'] as number;
    expect(alpha).toBe(Math.fround(16 * Math.sqrt(8)));
    const rel = Math.abs(alpha / 8 - 16 / Math.sqrt(8)) / (16 / Math.sqrt(8));
    expect(rel, `relative error of alpha/r against α/√r: ${rel}`).toBeLessThan(2 ** -23);
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(/rsLoRA/);
    expect(notes[0]).toMatch(/α·√r/);
  });

  it('refuses DoRA, an architecture llama.cpp is not known to name, and an adapter that does not fit the base', () => {
    expect(() => writeGgufAdapter(randomAdapter({ useDora: true }), tinyBase())).toThrow(/DoRA.*magnitude/);
    expect(() => writeGgufAdapter(randomAdapter(), tinyBase('GPT2LMHeadModel'))).toThrow(LoraStudioError);
    expect(() => writeGgufAdapter(randomAdapter(), tinyBase('GPT2LMHeadModel'))).toThrow(/GPT2LMHeadModel.*supported: LlamaForCausalLM/);
    // One layer of weights for a two-layer base: refused before any bytes exist.
    expect(() => exportAdapter('gguf', randomAdapter({}, 1), tinyBase())).toThrow(/missing .*layers\.1\./);
    const wide = randomAdapter({ targetModules: ['q_proj'] }, 2, 7, { ...TINY_DIMS, q_proj: { inFeatures: 64, outFeatures: 32 } } as Record<LoraTarget, { inFeatures: number; outFeatures: number }>);
    expect(() => exportAdapter('gguf', wide, tinyBase())).toThrow(/shape \[4, 64\].*\[4, 32\]/);
  });
});
