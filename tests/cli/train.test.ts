// `npm run cli -- train` and `eval` end to end on a tiny model written to disk: 200 steps on a repeated
// sequence must cut the loss at least 5×, the PEFT files it writes must reload through --adapter with
// the same loss, eval --limit reads only the first rows, and bad arguments are refused by name.

import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTinyModel } from './tiny-model';
import { parseSafetensors } from '../../src/io/safetensors';
import { createNodeGpu } from '../../src/gpu/node';
import { loadModelDir, loadAdapterDir, saveAdapterDir } from '../../src/cli/files';
import { createModel } from '../../src/model/factory';
import { initLora } from '../../src/model/lora';
import { Evaluator, Trainer, DEFAULT_OPTIMIZER } from '../../src/train/trainer';

const root = fileURLToPath(new URL('../..', import.meta.url));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['scripts/cli.mjs', ...args], { cwd: root, timeout: 600_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const SEQ = [1, 5, 9, 2, 17, 30, 4, 11, 23, 8, 14, 3, 27, 19, 6, 12];
const work = mkdtempSync(join(tmpdir(), 'lora-train-'));
const data = join(work, 'repeat.jsonl');
writeFileSync(data, JSON.stringify({ input_ids: SEQ }) + '\n');
const model = writeTinyModel(1);

describe('cli train / eval', () => {
  it('200 AdamW steps on a repeated sequence cut the loss at least 5×, and write PEFT files', async () => {
    const out = join(work, 'adapter');
    const r = await cli(['train', '--model', model, '--data', data, '--steps', '200', '--batch-size', '1', '--lr', '0.01',
      '--rank', '8', '--alpha', '16', '--seed', '3', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const steps = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(steps).toHaveLength(200);
    expect(steps.map((s) => s.step)).toEqual([...Array(200).keys()]);
    const first = steps[0].loss, last = steps[199].loss;
    expect(last, `loss ${first} → ${last}`).toBeLessThan(first / 5);
    // The adapter starts as the base model (B = 0), so step 0's loss is the base model's.
    const base = await cli(['eval', '--model', model, '--data', data]);
    expect(JSON.parse(base.stdout).loss).toBeCloseTo(first, 5);

    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] });
    const st = parseSafetensors(readFileSync(join(out, 'adapter_model.safetensors')));
    expect([...st.tensors.keys()].sort()).toEqual([
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
      'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight', 'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight',
    ]);
    expect(st.tensors.get('base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight')!.shape).toEqual([16, 8]);
  });

  it('an exported adapter reloads through --adapter with the same loss as in memory', async () => {
    const gpu = await createNodeGpu();
    const { config, weights } = await loadModelDir(model);
    const m = createModel(gpu, config, weights);
    const adapter = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'k_proj', 'o_proj', 'down_proj'] as const, useRslora: true, baseModel: model };
    m.setAdapter({ ...adapter, targetModules: [...adapter.targetModules] }, initLora(config, { ...adapter, targetModules: [...adapter.targetModules] }, 9));
    const ids = Int32Array.from(SEQ);
    const trainer = new Trainer(m, 1, SEQ.length, { ...DEFAULT_OPTIMIZER, lr: 0.01 });
    for (let i = 0; i < 5; i++) await trainer.step(ids);
    const inMemory = (await new Evaluator(m, 1, SEQ.length).loss(ids)).loss;
    const dir = join(work, 'exported');
    await saveAdapterDir(dir, m.adapter!, await m.readAdapter(), config);
    expect(existsSync(join(dir, 'adapter_model.safetensors.tmp'))).toBe(false);
    const reloaded = await loadAdapterDir(dir, config);
    expect(reloaded.config.useRslora).toBe(true);
    gpu.destroy();

    const r = await cli(['eval', '--model', model, '--adapter', dir, '--data', data]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens).toBe(SEQ.length - 1);
    // The same fp32 values through the same kernels: identical, not merely close.
    expect(out.loss).toBe(inMemory);
    // And the adapter really changed the model.
    const base = JSON.parse((await cli(['eval', '--model', model, '--data', data])).stdout).loss;
    expect(Math.abs(base - out.loss)).toBeGreaterThan(1e-3);
  });

  it('trains with LoRA dropout, rsLoRA, clipping and SGD, and records them in adapter_config.json', async () => {
    const out = join(work, 'dropout');
    const r = await cli(['train', '--model', model, '--data', data, '--steps', '3', '--batch-size', '1', '--dropout', '0.1', '--rslora',
      '--optimizer', 'sgd', '--lr', '0.05', '--max-grad-norm', '1', '--targets', 'gate_proj,up_proj,down_proj', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const losses = r.stdout.trim().split('\n').map((l) => JSON.parse(l).loss);
    expect(losses).toHaveLength(3);
    expect(losses.every(Number.isFinite)).toBe(true);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ lora_dropout: 0.1, use_rslora: true, target_modules: ['gate_proj', 'up_proj', 'down_proj'] });
  });

  it('trains DoRA with --dora (and dropout), writing use_dora and PEFT\'s magnitude vectors, which eval reloads', async () => {
    const out = join(work, 'dora');
    const r = await cli(['train', '--model', model, '--data', data, '--steps', '10', '--batch-size', '1', '--lr', '0.01', '--dora',
      '--dropout', '0.1', '--targets', 'q_proj,v_proj,down_proj', '--seed', '2', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const losses = r.stdout.trim().split('\n').map((l) => JSON.parse(l).loss);
    expect(losses[9]).toBeLessThan(losses[0]);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ use_dora: true, lora_dropout: 0.1 });
    const tensors = parseSafetensors(readFileSync(join(out, 'adapter_model.safetensors'))).tensors;
    const magnitudes = [...tensors.keys()].filter((k) => k.endsWith('.lora_magnitude_vector'));
    expect(magnitudes).toHaveLength(3); // one layer, three targets
    expect(tensors.get('base_model.model.model.layers.0.mlp.down_proj.lora_magnitude_vector')!.shape).toEqual([tensors.get('base_model.model.model.layers.0.mlp.down_proj.lora_B.weight')!.shape[0]]);
    const [base, adapted] = await Promise.all([cli(['eval', '--model', model, '--data', data]), cli(['eval', '--model', model, '--data', data, '--adapter', out])]);
    expect(adapted.code, adapted.stderr).toBe(0);
    expect(JSON.parse(adapted.stdout).loss).toBeLessThan(JSON.parse(base.stdout).loss);
  }, 300_000); // three CLI runs, each compiling its kernels on SwiftShader

  const bad: [string, string[], RegExp][] = [
    ['--dora with a value', ['--dora=1'], /--dora takes no value; write --dora alone/],
    ['--dora with --adapter', ['--dora', '--adapter', work], /--dora cannot be combined with --adapter/],
    ['dropout 1', ['--dropout', '1'], /LoRA dropout must be in \[0, 1\) \(got 1\)/],
    ['rank 0', ['--rank', '0'], /LoRA rank r must be a positive integer \(got 0\)/],
    ['an unknown target', ['--targets', 'q_proj,qkv'], /unknown module "qkv"/],
    ['an unknown optimizer', ['--optimizer', 'lion'], /--optimizer must be adamw or sgd/],
    ['a negative learning rate', ['--lr', '-1'], /--lr must be a non-negative number/],
    ['an unknown option', ['--epochs', '3'], /unknown option --epochs/],
    ['a missing value', ['--steps'], /--steps needs a value/],
  ];
  for (const [what, extra, message] of bad) {
    it(`train refuses ${what}`, async () => {
      const r = await cli(['train', '--model', model, '--data', data, '--out', join(work, 'never'), ...extra]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(existsSync(join(work, 'never'))).toBe(false);
    });
  }

  it('eval refuses a row with a token outside the vocabulary, naming the line', async () => {
    const bad = join(work, 'bad.jsonl');
    writeFileSync(bad, `${JSON.stringify({ input_ids: [1, 2, 3] })}\n${JSON.stringify({ input_ids: [1, 99, 3] })}\n`);
    const r = await cli(['eval', '--model', model, '--data', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.jsonl:2: token id 99 is not an integer in \[0, 32\)/);
  });

  it('eval --limit N evaluates the first N rows only', async () => {
    const SEQ2 = [7, 3, 29, 12, 1, 18, 25, 4, 9, 31, 2, 16, 20, 5, 13, 10];
    const two = join(work, 'two.jsonl');
    writeFileSync(two, `${JSON.stringify({ input_ids: SEQ })}\n${JSON.stringify({ input_ids: SEQ2 })}\n`);
    const [first, both, limited, beyond] = await Promise.all([
      cli(['eval', '--model', model, '--data', data]),
      cli(['eval', '--model', model, '--data', two]),
      cli(['eval', '--model', model, '--data', two, '--limit', '1']),
      cli(['eval', '--model', model, '--data', two, '--limit', '5']),
    ]);
    for (const r of [first, both, limited, beyond]) expect(r.code, r.stderr).toBe(0);
    // Row 1 of two.jsonl is SEQ, the only row of repeat.jsonl: the same batch of one through the same kernels.
    expect(JSON.parse(limited.stdout)).toEqual(JSON.parse(first.stdout));
    expect(JSON.parse(both.stdout).tokens).toBe(2 * (SEQ.length - 1));
    // A limit past the end evaluates the whole file.
    expect(JSON.parse(beyond.stdout)).toEqual(JSON.parse(both.stdout));
  });

  for (const [value, message] of [['0', /--limit must be a positive integer \(the number of rows to evaluate\) \(got 0\)/], ['1.5', /--limit must be a positive integer .* \(got 1\.5\)/]] as const) {
    it(`eval refuses --limit ${value}`, async () => {
      const r = await cli(['eval', '--model', model, '--data', data, '--limit', value]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
    });
  }

  it('eval refuses a model folder whose config names an unsupported architecture', async () => {
    const dir = writeTinyModel(2);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, architectures: ['GPT2LMHeadModel'] }));
    const r = await cli(['eval', '--model', dir, '--data', data]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/GPT2LMHeadModel is not supported; LoRA Studio trains LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM/);
  });
});
