// `npm run cli -- merge` and `export --format merged` end to end on a tiny Llama on disk: one model folder that
// loads again as a base (the same bytes from both commands), and every mistake one line on stderr with nothing
// written: a missing flag, an --out that is a file, a folder with files in it or the model itself, an adapter
// of another model, a quantized base; a failed write leaves no partial folder. The merge's numbers are
// tests/model/merge.test.ts's. `recipe` writes the train flags' script.

import { describe, expect, it, vi } from 'vitest';
import { cli } from './run_cli';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelDir } from '../../src/cli/files';
import { writeMergedModel } from '../../src/cli/merge';
import { LoraStudioError } from '../../src/io/errors';
import { writeAdapter, type LoraTarget } from '../../src/io/peft';
import { randomAdapter } from '../io/random_adapter';
import { TINY_CONFIG, writeTinyModel } from './tiny-model';

// A full disk for this process's writes whose path matches `disk.full` (the CLI processes are not affected).
const disk = vi.hoisted(() => ({ full: undefined as RegExp | undefined }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const writeFile: typeof real.writeFile = (path, ...rest) =>
    disk.full?.test(String(path)) ? Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })) : real.writeFile(path, ...rest);
  return { ...real, writeFile };
});

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

const work = mkdtempSync(join(tmpdir(), 'lora-merge-cli-'));
const model = writeTinyModel(1);
writeFileSync(join(model, 'generation_config.json'), '{"max_new_tokens": 8}');

function writePeft(name: string, adapter: ReturnType<typeof randomAdapter>, shapes = DIMS): string {
  const dir = join(work, name);
  mkdirSync(dir);
  const out = writeAdapter(adapter.config, adapter.weights, { numLayers: 1, shapes: (t) => shapes[t] });
  writeFileSync(join(dir, 'adapter_config.json'), out.configJson);
  writeFileSync(join(dir, 'adapter_model.safetensors'), out.weights);
  return dir;
}

const adapterDir = writePeft('plain', randomAdapter({ targetModules: ['q_proj', 'down_proj'], baseModel: model }, 1, 5, DIMS));

/** Exit 1, one line "error: ..." matching `message`, and nothing new in `work` or in the adapter and model folders. */
async function expectRefused(args: string[], message: RegExp) {
  const before = [readdirSync(work).sort(), readdirSync(adapterDir).sort(), readdirSync(model).sort()];
  const r = await cli(args);
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
  expect([readdirSync(work).sort(), readdirSync(adapterDir).sort(), readdirSync(model).sort()]).toEqual(before);
}

describe('cli merge', () => {
  it('writes a model folder that loads as a base, and export --format merged writes the same bytes', async () => {
    const out = join(work, 'merged');
    const r = await cli(['merge', '--model', model, '--adapter', adapterDir, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.format).toBe('merged');
    expect(report.files).toEqual(['config.json', 'model.safetensors', 'generation_config.json'].map((f) => join(out, f)));
    expect(report.notes[0]).toMatch(/s = 2 .*q_proj, down_proj.*rounded once to F32/);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    const loaded = await loadModelDir(out);
    expect(loaded.config.hidden).toBe(TINY_CONFIG.hidden_size);

    const viaExport = join(work, 'exported', 'merged'); // a parent that does not exist yet is created
    const e = await cli(['export', '--model', model, '--adapter', adapterDir, '--format', 'merged', '--out', viaExport]);
    expect(e.code, e.stderr).toBe(0);
    for (const f of readdirSync(out)) expect(Buffer.compare(readFileSync(join(viaExport, f)), readFileSync(join(out, f))), f).toBe(0);
    // No partial folder is left beside either.
    expect(readdirSync(work).filter((n) => n.includes('partial'))).toEqual([]);
    expect(readdirSync(join(work, 'exported'))).toEqual(['merged']);
  });

  it('writes into an empty folder', async () => {
    const out = join(work, 'empty');
    mkdirSync(out);
    const r = await cli(['merge', '--model', model, '--adapter', adapterDir, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
  });

  it('refuses a missing flag, in one line, writing nothing', () =>
    expectRefused(['merge', '--model', model, '--adapter', adapterDir], /^error: --out is required/));

  it('refuses an --out that is a file', async () => {
    const file = join(work, 'a-file');
    writeFileSync(file, 'keep me');
    await expectRefused(['merge', '--model', model, '--adapter', adapterDir, '--out', file], /^error: --out .*a-file is a file; a merged model is a folder/);
    expect(readFileSync(file, 'utf8')).toBe('keep me');
  });

  it('refuses a folder with files in it, and the model folder itself, for merge and export alike', async () => {
    const full = join(work, 'full');
    mkdirSync(full);
    writeFileSync(join(full, 'model.safetensors.index.json'), '{}');
    await expectRefused(['merge', '--model', model, '--adapter', adapterDir, '--out', full], /^error: --out .*full already holds files; .*give a new or empty folder/);
    await expectRefused(['export', '--model', model, '--adapter', adapterDir, '--format', 'merged', '--out', full], /^error: --out .*full already holds files/);
    await expectRefused(['merge', '--model', model, '--adapter', adapterDir, '--out', model], /^error: --out .* is the model folder itself/);
    expect(readdirSync(full)).toEqual(['model.safetensors.index.json']);
  });

  it('refuses an adapter of another model', async () => {
    const wideDims = { ...DIMS, q_proj: { inFeatures: 48, outFeatures: 32 } };
    const wide = writePeft('wide', randomAdapter({ targetModules: ['q_proj'] }, 1, 8, wideDims), wideDims);
    await expectRefused(['merge', '--model', model, '--adapter', wide, '--out', join(work, 'never')],
      /^error: .*q_proj\.lora_A\.weight has shape \[4, 48\] but this model's q_proj needs \[4, 32\]/);
  });

  it('refuses a quantized base: a merge needs a bf16/f16/f32 base', async () => {
    // parseModelConfig refuses a quantized checkpoint for any use (io/quantized_checkpoint.ts), so config.json is
    // written after the tiny model is built; the CLI's merge reads the config first and says what to use instead.
    const quantized = writeTinyModel(2);
    const configFile = join(quantized, 'config.json');
    writeFileSync(configFile, JSON.stringify({ ...JSON.parse(readFileSync(configFile, 'utf8')), quantization_config: { quant_method: 'gptq', bits: 4 } }));
    await expectRefused(['merge', '--model', quantized, '--adapter', adapterDir, '--out', join(work, 'never')],
      /^error: .*config\.json: this checkpoint is quantized with GPTQ .*Use the model's unquantized checkpoint instead: its bf16, f16 or f32 safetensors/);
    expect(existsSync(join(work, 'never'))).toBe(false);
  });

  it('leaves no partial folder when a write fails', async () => {
    const out = join(work, 'full-disk');
    disk.full = /model\.safetensors$/;
    try {
      await expect(writeMergedModel(model, adapterDir, out)).rejects.toThrow(LoraStudioError);
      await expect(writeMergedModel(model, adapterDir, out)).rejects.toThrow(/cannot write the merged model there \(ENOSPC\); nothing was written/);
    } finally {
      disk.full = undefined;
    }
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(work).filter((n) => n.includes('partial'))).toEqual([]);
  });
});

describe('cli recipe', () => {
  it("writes the PEFT + TRL script of train's flags, with the data's format", async () => {
    const data = join(work, 'rows.jsonl');
    writeFileSync(data, '{"prompt": "a", "completion": "b"}\n');
    const out = join(work, 'train_lora.py');
    const r = await cli(['recipe', '--model', 'Qwen/Qwen2.5-0.5B', '--data', data, '--rank', '16', '--alpha', '32', '--targets', 'q_proj,o_proj',
      '--rslora', '--lr', '0.0003', '--steps', '40', '--batch-size', '4', '--seq-len', '128', '--seed', '7', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ file: out, format: 'prompt-completion' });
    const script = readFileSync(out, 'utf8');
    for (const line of ['BASE_MODEL = "Qwen/Qwen2.5-0.5B"', `DATA_FILE = ${JSON.stringify(data)}`, 'SEED = 7', '    r=16,', '    lora_alpha=32,',
      '    target_modules=["q_proj", "o_proj"],', '    use_rslora=True,', '    learning_rate=0.0003,', '    max_steps=40,',
      '    per_device_train_batch_size=4,', '    max_length=128,', '    lr_scheduler_type="constant",']) {
      expect(script.split('\n'), line).toContain(line);
    }
    expect(script).toMatch(/completion_only_loss=True/);
    expect(script).not.toMatch(/gradient_checkpointing|BitsAndBytesConfig/);

    // --recompute and an NF4 base carry over: activation checkpointing and QLoRA's 4-bit load.
    const qlora = join(work, 'qlora.py');
    const q = await cli(['recipe', '--model', 'Qwen/Qwen2.5-0.5B', '--data', data, '--recompute', '--base-dtype', 'nf4', '--out', qlora]);
    expect(q.code, q.stderr).toBe(0);
    const qs = readFileSync(qlora, 'utf8');
    expect(qs).toMatch(/gradient_checkpointing=True/);
    expect(qs).toMatch(/bnb_4bit_quant_type="nf4"/);
  });

  it('refuses --adapter and a folder as --out, in one line', async () => {
    const data = join(work, 'rows2.jsonl');
    writeFileSync(data, '{"text": "a"}\n');
    await expectRefused(['recipe', '--model', 'x/y', '--data', data, '--adapter', adapterDir, '--out', join(work, 'never.py')], /^error: --adapter: a recipe trains a fresh adapter/);
    await expectRefused(['recipe', '--model', 'x/y', '--data', data, '--out', work], /^error: --out .* is a folder; the recipe is one file/);
  });
});
