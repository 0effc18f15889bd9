// `npm run cli -- export` end to end on a tiny Llama on disk and a random PEFT adapter for it: peft, gguf and
// mlx come out as files their tools read (the GGUF through @huggingface/gguf), an rsLoRA adapter's converted
// scale is reported, and every refusal (an unknown format, a missing flag, an adapter of another
// model, an --out of the wrong kind) is one line on stderr with nothing written. --format merged is
// tests/cli/merge.test.ts's.

import { describe, expect, it } from 'vitest';
import { cli as runCli } from './run_cli';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf } from '@huggingface/gguf';
import { loraKey, readAdapter, writeAdapter, type LoraTarget } from '../../src/io/peft';
import { parseSafetensors } from '../../src/io/safetensors';
import { randomAdapter } from '../io/random_adapter';
import { TINY_CONFIG, writeTinyModel } from './tiny-model';

const cli = (args: string[]) => runCli(args, 600_000);

// TINY_CONFIG: hidden 32, 4 heads and 2 KV heads of 8, MLP 64, 1 layer.
const DIMS = {
  q_proj: { inFeatures: 32, outFeatures: 32 },
  k_proj: { inFeatures: 32, outFeatures: 16 },
  v_proj: { inFeatures: 32, outFeatures: 16 },
  o_proj: { inFeatures: 32, outFeatures: 32 },
  gate_proj: { inFeatures: 32, outFeatures: 64 },
  up_proj: { inFeatures: 32, outFeatures: 64 },
  down_proj: { inFeatures: 64, outFeatures: 32 },
} satisfies Record<LoraTarget, { inFeatures: number; outFeatures: number }>;
const expectation = { numLayers: 1, shapes: (t: LoraTarget) => DIMS[t] };

const work = mkdtempSync(join(tmpdir(), 'lora-export-'));
const model = writeTinyModel(1);

function writePeft(name: string, adapter: ReturnType<typeof randomAdapter>, shapes = expectation): string {
  const dir = join(work, name);
  mkdirSync(dir);
  const out = writeAdapter(adapter.config, adapter.weights, shapes);
  writeFileSync(join(dir, 'adapter_config.json'), out.configJson);
  writeFileSync(join(dir, 'adapter_model.safetensors'), out.weights);
  return dir;
}

const plain = randomAdapter({ targetModules: ['q_proj', 'v_proj', 'down_proj'], baseModel: model }, 1, 5, DIMS);
const plainDir = writePeft('plain', plain);
const rs = randomAdapter({ r: 4, loraAlpha: 8, useRslora: true, targetModules: ['k_proj'] }, 1, 6, DIMS);
const rsDir = writePeft('rslora', rs);

describe('cli export', () => {
  it('--format peft rewrites the PEFT files, which read back identically', async () => {
    const out = join(work, 'out-peft');
    const r = await cli(['export', '--model', model, '--adapter', plainDir, '--format', 'peft', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ format: 'peft', files: [join(out, 'adapter_config.json'), join(out, 'adapter_model.safetensors')], notes: [] });
    const back = readAdapter(readFileSync(join(out, 'adapter_config.json'), 'utf8'), readFileSync(join(out, 'adapter_model.safetensors')), expectation);
    for (const [key, w] of plain.weights) expect(back.weights.get(key), key).toEqual(w);
    expect(readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']); // no .tmp left
  });

  it('--format gguf writes one llama.cpp adapter file that the GGUF parser reads', async () => {
    const out = join(work, 'plain.gguf');
    const r = await cli(['export', '--model', model, '--adapter', plainDir, '--format', 'gguf', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ format: 'gguf', files: [out], notes: [] });
    const g = await gguf(out, { allowLocalFile: true });
    expect(g.metadata as Record<string, unknown>).toMatchObject({
      'general.architecture': 'llama',
      'general.type': 'adapter',
      'adapter.type': 'lora',
      'adapter.lora.alpha': 8,
      'general.name': 'plain',
    });
    expect(g.tensorInfos.map((t) => [t.name, t.shape.map(Number)])).toEqual([
      ['blk.0.attn_q.weight.lora_a', [32, 4]],
      ['blk.0.attn_q.weight.lora_b', [4, 32]],
      ['blk.0.attn_v.weight.lora_a', [32, 4]],
      ['blk.0.attn_v.weight.lora_b', [4, 16]],
      ['blk.0.ffn_down.weight.lora_a', [64, 4]],
      ['blk.0.ffn_down.weight.lora_b', [4, 32]],
    ]);
    const bytes = readFileSync(out);
    const down = g.tensorInfos.find((t) => t.name === 'blk.0.ffn_down.weight.lora_a')!;
    const at = Number(g.tensorDataOffset + down.offset);
    const values = new Float32Array(bytes.buffer.slice(bytes.byteOffset + at, bytes.byteOffset + at + 4 * 64 * 4));
    expect(values).toEqual(plain.weights.get(loraKey(0, 'down_proj', 'A')));
  });

  it('--format mlx writes adapters.safetensors + adapter_config.json, and reports the rsLoRA scale it wrote', async () => {
    const out = join(work, 'out-mlx');
    const r = await cli(['export', '--model', model, '--adapter', rsDir, '--format', 'mlx', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.files).toEqual([join(out, 'adapter_config.json'), join(out, 'adapters.safetensors')]);
    expect(report.notes).toHaveLength(1);
    expect(report.notes[0]).toMatch(/rsLoRA.*α\/√r = 4/);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ fine_tune_type: 'lora', num_layers: TINY_CONFIG.num_hidden_layers, lora_parameters: { rank: 4, scale: 8 / Math.sqrt(4), keys: ['self_attn.k_proj'] } });
    const st = parseSafetensors(readFileSync(join(out, 'adapters.safetensors')));
    expect([...st.tensors].map(([k, t]) => [k, t.shape])).toEqual([
      ['model.layers.0.self_attn.k_proj.lora_a', [32, 4]],
      ['model.layers.0.self_attn.k_proj.lora_b', [4, 16]],
    ]);
  });

  const refusals: [string, (out: string) => string[], RegExp][] = [
    ['an unknown format', (out) => ['--model', model, '--adapter', plainDir, '--format', 'onnx', '--out', out], /^error: --format must be one of peft, gguf, mlx, merged \(got onnx\)/],
    ['a missing --out', () => ['--model', model, '--adapter', plainDir, '--format', 'gguf'], /^error: --out is required/],
    ['a model folder without config.json', (out) => ['--model', work, '--adapter', plainDir, '--format', 'mlx', '--out', out], /^error: .*config\.json: cannot read it \(.*ENOENT\)/],
    ['--out the adapter folder itself', () => ['--model', model, '--adapter', plainDir, '--format', 'mlx', '--out', plainDir], /^error: --out .* is the adapter folder itself/],
  ];
  for (const [what, args, message] of refusals) {
    it(`refuses ${what} in one line, writing nothing`, async () => {
      const out = join(work, `never-${what.replace(/\W+/g, '-')}`);
      const before = readdirSync(plainDir).sort();
      const r = await cli(['export', ...args(out)]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(plainDir).sort()).toEqual(before);
    });
  }

  it('refuses an adapter trained for another model, and a folder as the GGUF --out, writing nothing', async () => {
    const wide = randomAdapter({ targetModules: ['q_proj'] }, 1, 8, { ...DIMS, q_proj: { inFeatures: 48, outFeatures: 32 } });
    const wideDir = writePeft('wide', wide, { numLayers: 1, shapes: (t) => ({ ...DIMS, q_proj: { inFeatures: 48, outFeatures: 32 } })[t] });
    const out = join(work, 'never-wide');
    const r = await cli(['export', '--model', model, '--adapter', wideDir, '--format', 'gguf', '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: .*q_proj\.lora_A\.weight has shape \[4, 48\] but this model's q_proj needs \[4, 32\]/);
    expect(existsSync(out)).toBe(false);

    const dir = join(work, 'a-folder');
    mkdirSync(dir);
    const f = await cli(['export', '--model', model, '--adapter', plainDir, '--format', 'gguf', '--out', dir]);
    expect(f.code).toBe(1);
    expect(f.stderr).toMatch(/^error: --out .* is a folder; a GGUF adapter is one file/);
    expect(readdirSync(dir)).toEqual([]);
  });
});
