// The mlx-lm adapter export (src/io/mlx.ts) read back: adapter_config.json as mlx_lm's load_adapters reads it,
// adapters.safetensors with mlx-lm's parameter names and LoRALinear's (in, r) / (r, out) layouts, each value the
// transpose of PEFT's, and, in float64, mlx-lm's scale·(x·lora_a)·lora_b equal to PEFT's s·x·Aᵀ·Bᵀ on a random x
// (s = α/r, or α/√r for rsLoRA). Also the PEFT export's round trip and the refusals.

import { describe, expect, it } from 'vitest';
import { exportAdapter, exportStoredAdapter } from '../../src/io/export.ts';
import { mlxLoraKey, writeMlxAdapter } from '../../src/io/mlx.ts';
import { LORA_TARGETS, loraKey, readAdapter, type LoraTarget } from '../../src/io/peft.ts';
import { parseSafetensors } from '../../src/io/safetensors.ts';
import { mulberry32, randn } from '../reference/rng';
import { randomAdapter, tinyBase, TINY_DIMS } from './random_adapter.ts';

/** (N, k) · (k, m) in float64. */
function matmul(x: ArrayLike<number>, y: ArrayLike<number>, n: number, k: number, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) for (let l = 0; l < m; l++) out[i * m + l] += x[i * k + j] * y[j * m + l];
  return out;
}

function transposed(m: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = m[i * cols + j];
  return out;
}

function relDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < x.length; i++) {
    num = Math.max(num, Math.abs(x[i] - y[i]));
    den = Math.max(den, Math.abs(y[i]));
  }
  return num / den;
}

describe('MLX-LM adapter folder', () => {
  it('writes adapter_config.json as load_adapters reads it', () => {
    const { configJson, notes } = writeMlxAdapter(randomAdapter({ targetModules: ['q_proj', 'v_proj', 'down_proj'] }), tinyBase());
    expect(notes).toEqual([]);
    expect(JSON.parse(configJson)).toEqual({
      fine_tune_type: 'lora',
      model: 'tiny/llama',
      num_layers: 2,
      lora_parameters: { rank: 4, scale: 2, dropout: 0.05, keys: ['self_attn.q_proj', 'self_attn.v_proj', 'mlp.down_proj'] },
    });
  });

  it("names and transposes every factor as mlx-lm's LoRALinear holds it, and applies as PEFT does", () => {
    const adapter = randomAdapter();
    const r = adapter.config.r;
    const { configJson, weights } = writeMlxAdapter(adapter, tinyBase());
    const scale: number = JSON.parse(configJson).lora_parameters.scale; // what LoRALinear multiplies by
    const st = parseSafetensors(weights, 'adapters.safetensors');
    expect(st.metadata.format).toBe('mlx');
    const want: string[] = [];
    for (let layer = 0; layer < 2; layer++) for (const t of LORA_TARGETS) want.push(mlxLoraKey(layer, t, 'a'), mlxLoraKey(layer, t, 'b'));
    expect([...st.tensors.keys()].sort()).toEqual([...want].sort());
    expect(want).toContain('model.layers.0.self_attn.q_proj.lora_a');
    expect(want).toContain('model.layers.1.mlp.gate_proj.lora_b');

    const N = 3; // rows of x
    const rng = mulberry32(11);
    for (let layer = 0; layer < 2; layer++) {
      for (const t of LORA_TARGETS as LoraTarget[]) {
        const { inFeatures, outFeatures } = TINY_DIMS[t];
        const a = st.tensors.get(mlxLoraKey(layer, t, 'a'))!;
        const b = st.tensors.get(mlxLoraKey(layer, t, 'b'))!;
        expect([a.dtype, b.dtype]).toEqual(['F32', 'F32']);
        expect(a.shape).toEqual([inFeatures, r]);
        expect(b.shape).toEqual([r, outFeatures]);
        const A = adapter.weights.get(loraKey(layer, t, 'A'))!; // (r, in)
        const B = adapter.weights.get(loraKey(layer, t, 'B'))!; // (out, r)
        const la = st.readF32(mlxLoraKey(layer, t, 'a'));
        const lb = st.readF32(mlxLoraKey(layer, t, 'b'));
        expect(relDiff(la, transposed(A, r, inFeatures))).toBe(0);
        expect(relDiff(lb, transposed(B, outFeatures, r))).toBe(0);

        const x = randn(rng, N * inFeatures);
        const mlx = matmul(matmul(x, la, N, inFeatures, r), lb, N, r, outFeatures).map((v) => scale * v);
        const peft = matmul(matmul(x, transposed(A, r, inFeatures), N, inFeatures, r), transposed(B, outFeatures, r), N, r, outFeatures).map((v) => (8 / 4) * v); // α/r
        const rel = relDiff(mlx, peft);
        expect(rel, `${t} layer ${layer}: max relative difference ${rel}`).toBeLessThan(1e-12);
      }
    }
  });

  it('writes rsLoRA as scale = α/√r and says so', () => {
    const adapter = randomAdapter({ r: 8, loraAlpha: 16, useRslora: true, targetModules: ['o_proj'] }, 1);
    const { configJson, weights, notes } = writeMlxAdapter(adapter, tinyBase('Qwen3ForCausalLM', 1));
    const scale = JSON.parse(configJson).lora_parameters.scale;
    expect(scale).toBe(16 / Math.sqrt(8));
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(/rsLoRA.*α\/√r/);
    // The update with that scale is PEFT's rsLoRA update.
    const st = parseSafetensors(weights);
    const x = randn(mulberry32(3), 32);
    const mlx = matmul(matmul(x, st.readF32(mlxLoraKey(0, 'o_proj', 'a')), 1, 32, 8), st.readF32(mlxLoraKey(0, 'o_proj', 'b')), 1, 8, 32).map((v) => scale * v);
    const A = adapter.weights.get(loraKey(0, 'o_proj', 'A'))!, B = adapter.weights.get(loraKey(0, 'o_proj', 'B'))!;
    const peft = matmul(matmul(x, transposed(A, 8, 32), 1, 32, 8), transposed(B, 32, 8), 1, 8, 32).map((v) => (16 / Math.sqrt(8)) * v);
    expect(relDiff(mlx, peft)).toBeLessThan(1e-12);
  });

  it('refuses DoRA with the reason, and exports PEFT files that read back identically', () => {
    expect(() => writeMlxAdapter(randomAdapter({ useDora: true }), tinyBase())).toThrow(/DoRA/);
    expect(() => exportAdapter('mlx', randomAdapter({ useDora: true }), tinyBase())).toThrow(/MLX export: this is a DoRA adapter/);
    // PEFT's files hold DoRA: use_dora and one magnitude vector per projection.
    const dora = exportAdapter('peft', randomAdapter({ useDora: true }), tinyBase()).files;
    expect(JSON.parse(new TextDecoder().decode(dora[0].bytes)).use_dora).toBe(true);
    expect([...parseSafetensors(dora[1].bytes).tensors.keys()].filter((k) => k.endsWith('.lora_magnitude_vector'))).toHaveLength(2 * 7);
    expect(() => exportAdapter('onnx', randomAdapter(), tinyBase())).toThrow(/Unknown export format "onnx"; choose one of peft, gguf, mlx/);

    const adapter = randomAdapter({ useRslora: true });
    const { files, notes } = exportAdapter('peft', adapter, tinyBase());
    expect(notes).toEqual([]);
    expect(files.map((f) => f.name)).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const back = readAdapter(new TextDecoder().decode(files[0].bytes), files[1].bytes, tinyBase().expectation);
    expect(back.config).toEqual({ ...adapter.config });
    for (const [key, w] of adapter.weights) expect(relDiff(back.weights.get(key)!, w), key).toBe(0);

    // A stored adapter (PEFT bytes, as the library keeps it) exports to the same MLX files as the one in memory.
    const stored = exportStoredAdapter('mlx', { config: adapter.config, weights: files[1].bytes }, tinyBase());
    const direct = exportAdapter('mlx', adapter, tinyBase());
    expect(stored.files.map((f) => f.name)).toEqual(direct.files.map((f) => f.name));
    stored.files.forEach((f, i) => expect(Buffer.from(f.bytes).equals(Buffer.from(direct.files[i].bytes)), f.name).toBe(true));
    expect(stored.notes).toEqual(direct.notes);
    expect(() => exportStoredAdapter('mlx', { config: adapter.config, weights: files[1].bytes }, tinyBase('LlamaForCausalLM', 3))).toThrow(/missing base_model\.model\.model\.layers\.2\./);
  });
});
