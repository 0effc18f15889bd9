// The PEFT + TRL training recipe (src/io/recipe.ts): every setting of the run is parsed back out of the
// script's text and compared with what went in, for each dataset format's prompt masking, both optimizers and
// every schedule; Python compiles each script (py_compile); bad settings are refused before any text exists.

import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LoraStudioError } from '../../src/io/errors.ts';
import { writeTrainingRecipe, type RecipeSettings } from '../../src/io/recipe.ts';

const PYTHON = '/usr/bin/python3';
const work = mkdtempSync(join(tmpdir(), 'lora-recipe-'));

const RUN: RecipeSettings = {
  baseModel: 'Qwen/Qwen2.5-0.5B',
  lora: { targets: ['v_proj', 'q_proj', 'down_proj'], r: 16, alpha: 32, dropout: 0.05, rslora: true, dora: false },
  optim: { lr: 2e-4, schedule: 'cosine', warmupSteps: 10, steps: 300, batchSize: 8, gradAccum: 4, maxGradNorm: 1, weightDecay: 0.01, seed: 42 },
  data: { file: 'data/train.jsonl', format: 'prompt-completion', seqLen: 512, pack: false, validationShare: 0.1 },
};

/** A Python literal (as the recipe writes them) as a JS value. */
function literal(text: string): unknown {
  const t = text.trim();
  if (t === 'True' || t === 'False') return t === 'True';
  if (t === 'None') return null;
  return JSON.parse(t);
}

/** `name=value` arguments of the call `head(` … `)` in the script, each value parsed; comments dropped. */
function callArgs(script: string, head: string): Record<string, unknown> {
  const start = script.indexOf(`${head}(\n`);
  expect(start, `${head}( in the script`).toBeGreaterThanOrEqual(0);
  const body = script.slice(start + head.length + 2, script.indexOf('\n)', start));
  const out: Record<string, unknown> = {};
  for (const line of body.split('\n')) {
    const m = /^\s+(\w+)=(.*?),\s*(#.*)?$/.exec(line);
    if (m === null) continue;
    out[m[1]] = /^[A-Z_]+$/.test(m[2]) ? m[2] : literal(m[2]); // SEED and the like are names, not literals
  }
  return out;
}

function assignment(script: string, name: string): unknown {
  const m = new RegExp(`^${name} = (.*)$`, 'm').exec(script);
  expect(m, `${name} = … in the script`).not.toBeNull();
  return literal(m![1]);
}

function compiles(script: string, name: string): void {
  if (!existsSync(PYTHON)) {
    console.warn(`skipping py_compile: ${PYTHON} is absent`);
    return;
  }
  const file = join(work, `${name}.py`);
  writeFileSync(file, script);
  execFileSync(PYTHON, ['-m', 'py_compile', file], { stdio: 'pipe' }); // throws with Python's SyntaxError
}

describe('training recipe (PEFT + TRL)', () => {
  it('carries every setting of the run into LoraConfig, SFTConfig and the data loading, and compiles', () => {
    const script = writeTrainingRecipe(RUN);
    compiles(script, 'prompt_completion');
    expect(assignment(script, 'BASE_MODEL')).toBe(RUN.baseModel);
    expect(assignment(script, 'DATA_FILE')).toBe(RUN.data.file);
    expect(assignment(script, 'SEED')).toBe(RUN.optim.seed);
    expect(script).toMatch(/^# .*accelerate launch --multi_gpu --num_processes \d+ train_lora\.py/m);
    expect(script).toContain('load_dataset("json", data_files=DATA_FILE, split="train")');
    expect(script).toContain(`train_test_split(test_size=${RUN.data.validationShare}, seed=SEED)`);

    expect(callArgs(script, 'LoraConfig')).toEqual({
      r: RUN.lora.r,
      lora_alpha: RUN.lora.alpha,
      lora_dropout: RUN.lora.dropout,
      target_modules: ['q_proj', 'v_proj', 'down_proj'], // PEFT's order of the same set
      use_rslora: true,
      use_dora: false,
      bias: 'none',
      task_type: 'CAUSAL_LM',
    });
    const sft = callArgs(script, 'SFTConfig');
    expect(sft).toMatchObject({
      max_steps: RUN.optim.steps,
      per_device_train_batch_size: RUN.optim.batchSize,
      gradient_accumulation_steps: RUN.optim.gradAccum,
      learning_rate: RUN.optim.lr,
      lr_scheduler_type: 'cosine',
      warmup_steps: RUN.optim.warmupSteps,
      optim: 'adamw_torch',
      adam_beta1: 0.9,
      adam_beta2: 0.999,
      adam_epsilon: 1e-8,
      weight_decay: RUN.optim.weightDecay,
      max_grad_norm: RUN.optim.maxGradNorm,
      seed: 'SEED',
      data_seed: 'SEED',
      max_length: RUN.data.seqLen,
      packing: false,
      completion_only_loss: true,
    });
    expect(sft).not.toHaveProperty('assistant_only_loss');
    expect(sft).not.toHaveProperty('packing_strategy');
  });

  it('masks the prompt as the studio does for each data format, and packs plain text', () => {
    const chat = writeTrainingRecipe({ ...RUN, data: { ...RUN.data, format: 'chat', pack: true, validationShare: 0 } });
    compiles(chat, 'chat');
    expect(callArgs(chat, 'SFTConfig')).toMatchObject({ assistant_only_loss: true, packing: true, packing_strategy: 'wrapped' });
    expect(callArgs(chat, 'SFTConfig')).not.toHaveProperty('completion_only_loss');
    expect(chat).toContain('train_dataset, eval_dataset = dataset, None');

    const text = writeTrainingRecipe({ ...RUN, data: { ...RUN.data, format: 'text', file: 'book.txt', pack: false } });
    compiles(text, 'text');
    expect(text).toContain('load_dataset("text", data_files=DATA_FILE, sample_by="document", split="train")');
    expect(callArgs(text, 'SFTConfig')).toMatchObject({ completion_only_loss: false, packing: true, packing_strategy: 'wrapped' });

    for (const format of ['text-rows', 'input_ids'] as const) {
      const s = writeTrainingRecipe({ ...RUN, data: { ...RUN.data, format } });
      compiles(s, format);
      expect(callArgs(s, 'SFTConfig'), format).toMatchObject({ completion_only_loss: false, packing: false });
    }
  });

  it('maps every schedule and both optimizers, and writes any file name as a valid Python string', () => {
    const cases: [RecipeSettings['optim']['schedule'], number, string][] = [
      ['constant', 0, 'constant'],
      ['constant', 5, 'constant_with_warmup'],
      ['linear', 3, 'linear'],
      ['cosine', 0, 'cosine'],
    ];
    for (const [schedule, warmupSteps, want] of cases) {
      const s = writeTrainingRecipe({ ...RUN, optim: { ...RUN.optim, schedule, warmupSteps } });
      expect(callArgs(s, 'SFTConfig'), `${schedule}, ${warmupSteps} warm-up steps`).toMatchObject({ lr_scheduler_type: want, warmup_steps: warmupSteps });
    }
    const sgd = writeTrainingRecipe({
      ...RUN,
      lora: { ...RUN.lora, rslora: false, dora: true },
      optim: { ...RUN.optim, optimizer: 'sgd', lr: 0.05, maxGradNorm: 0, weightDecay: 0 },
      data: { ...RUN.data, file: 'my "data"\\\n été.jsonl' },
    });
    compiles(sgd, 'sgd');
    const args = callArgs(sgd, 'SFTConfig');
    expect(args).toMatchObject({ optim: 'sgd', learning_rate: 0.05, max_grad_norm: 0, weight_decay: 0 });
    expect(args).not.toHaveProperty('adam_beta1');
    expect(callArgs(sgd, 'LoraConfig')).toMatchObject({ use_rslora: false, use_dora: true });
    expect(assignment(sgd, 'DATA_FILE')).toBe('my "data"\\\n été.jsonl');
  });

  it('recomputes activations as gradient checkpointing, and loads a 4-bit or 8-bit base as the studio held it', () => {
    const plain = writeTrainingRecipe(RUN);
    expect(callArgs(plain, 'SFTConfig')).not.toHaveProperty('gradient_checkpointing');
    expect(plain).not.toContain('BitsAndBytesConfig');
    expect(plain).toContain('\n    model=BASE_MODEL,\n');

    const recompute = writeTrainingRecipe({ ...RUN, optim: { ...RUN.optim, recompute: true }, baseDtype: 'bf16' });
    compiles(recompute, 'recompute');
    expect(callArgs(recompute, 'SFTConfig')).toMatchObject({ gradient_checkpointing: true });
    expect(recompute).not.toContain('BitsAndBytesConfig'); // a bf16 base is how the script loads anyway

    const nf4 = writeTrainingRecipe({ ...RUN, baseDtype: 'nf4' });
    compiles(nf4, 'nf4');
    expect(nf4).toMatch(/^#\s+pip install .* bitsandbytes$/m);
    expect(nf4).toContain(
      'model = AutoModelForCausalLM.from_pretrained(\n    BASE_MODEL,\n' +
        '    quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16),\n',
    );
    expect(nf4).toContain('\n    model=model,\n');
    const int8 = writeTrainingRecipe({ ...RUN, baseDtype: 'int8' });
    compiles(int8, 'int8');
    expect(int8).toContain('    quantization_config=BitsAndBytesConfig(load_in_8bit=True),\n');
  });

  it('refuses a setting the script could not carry, naming it', () => {
    const bad: [string, RecipeSettings, RegExp][] = [
      ['no base model', { ...RUN, baseModel: '' }, /base model is unnamed/],
      ['rank 0', { ...RUN, lora: { ...RUN.lora, r: 0 } }, /r must be a positive integer/],
      ['an unknown target', { ...RUN, lora: { ...RUN.lora, targets: ['qkv' as never] } }, /targets must be some of/],
      ['NaN lr', { ...RUN, optim: { ...RUN.optim, lr: NaN } }, /lr must be a non-negative number \(got null\)/],
      ['no steps', { ...RUN, optim: { ...RUN.optim, steps: 0 } }, /steps must be a positive integer/],
      ['a held-out share of 1', { ...RUN, data: { ...RUN.data, validationShare: 1 } }, /validationShare must be in \[0, 1\)/],
      ['an unknown base dtype', { ...RUN, baseDtype: 'fp8' }, /base dtype must be one of f32, bf16, f16, nf4, int8 \(got "fp8"\)/],
    ];
    for (const [what, settings, message] of bad) {
      expect(() => writeTrainingRecipe(settings), what).toThrow(LoraStudioError);
      expect(() => writeTrainingRecipe(settings), what).toThrow(message);
    }
  });
});
