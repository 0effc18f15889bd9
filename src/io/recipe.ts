// A training run's settings as a Python script that reruns the same job with Hugging Face PEFT + TRL on a
// GPU machine or cluster (`python train_lora.py`, or `accelerate launch` over several GPUs), so a recipe tried
// in the browser can be taken bigger. This file only writes text: settings come in as plain objects (the
// studio's LoraSettings / OptimSettings fit them), and nothing here runs Python or reads files.
//
// Each studio setting maps onto one argument:
//   targets, r, α, dropout, rsLoRA, DoRA      LoraConfig(target_modules, r, lora_alpha, lora_dropout, use_rslora, use_dora)
//   optimizer, lr, β1, β2, ε, weight decay      SFTConfig(optim "adamw_torch" | "sgd", learning_rate, adam_beta1/2, adam_epsilon, weight_decay)
//   schedule, warm-up                           lr_scheduler_type "constant" | "constant_with_warmup" | "linear" | "cosine", warmup_steps
//                                               (src/train/schedule.ts follows transformers' get_scheduler, so the lr per step agrees)
//   steps, batch, accumulation, clipping       max_steps, per_device_train_batch_size, gradient_accumulation_steps, max_grad_norm (0: off)
//   seed, sequence length, packing             seed / data_seed, max_length, packing (+ packing_strategy "wrapped": one stream cut into blocks)
//   prompt masking                             completion_only_loss for {"prompt","completion"} rows, assistant_only_loss for {"messages"}
//   data file, held-out share                  load_dataset(...), train_test_split(test_size, seed)
//   recompute activations                      gradient_checkpointing=True
//   NF4 / int8 base                            the model loaded with BitsAndBytesConfig (QLoRA's load_in_4bit, nf4; load_in_8bit)

import { LoraStudioError } from './errors.ts';
import type { DatasetFormat } from './dataset.ts';
import { LORA_TARGETS, type LoraTarget } from './peft.ts';

/** The name the script's own header runs it by. */
export const RECIPE_FILE = 'train_lora.py';

export interface RecipeSettings {
  /** Hub id (or path) of the base model. */
  baseModel: string;
  lora: { targets: readonly LoraTarget[]; r: number; alpha: number; dropout: number; rslora: boolean; dora?: boolean };
  optim: {
    /** Default "adamw" with β (0.9, 0.999), ε 1e-8, no weight decay: the studio's AdamW. */
    optimizer?: 'adamw' | 'sgd';
    lr: number;
    schedule: 'constant' | 'linear' | 'cosine';
    warmupSteps: number;
    /** Optimizer steps. */
    steps: number;
    /** Rows per micro-batch (per GPU in the script). */
    batchSize: number;
    /** Micro-batches per optimizer step. */
    gradAccum: number;
    /** Global gradient-norm clipping; 0: off. */
    maxGradNorm: number;
    weightDecay?: number;
    beta1?: number;
    beta2?: number;
    eps?: number;
    seed: number;
    /** Recompute activations in the backward (transformers' gradient checkpointing). */
    recompute?: boolean;
  };
  data: {
    /** The training file, as the script should open it (relative to where it runs). */
    file: string;
    format: DatasetFormat;
    /** T: tokens per row. */
    seqLen: number;
    pack: boolean;
    /** Share of examples held out for validation, in [0, 1). */
    validationShare?: number;
  };
  /** Where the script saves the adapter; default "lora-studio-adapter". */
  outputDir?: string;
  /**
   * How the studio held the frozen base ("f32", "bf16", "f16", "nf4", "int8"): a quantized base is loaded
   * quantized by bitsandbytes (QLoRA); the others load in bf16 as usual.
   */
  baseDtype?: string;
}

/** The studio's base dtypes (src/model/causal_lm.ts BASE_DTYPES; io sits beside the model, so it names them itself). */
const BASE_DTYPES = ['f32', 'bf16', 'f16', 'nf4', 'int8'];

/**
 * bitsandbytes' nearest equivalent of the studio's quantized bases: NF4 is QLoRA's type, with its scales
 * quantized again as the studio's are (double quantization); int8 is LLM.int8 (absmax per row, plus outliers).
 */
const QUANTIZED: Record<string, string> = {
  nf4: 'BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)',
  int8: 'BitsAndBytesConfig(load_in_8bit=True)',
};

/** A Python literal for a string, number or boolean (JSON's string escapes are Python's too). */
function py(v: string | number | boolean | readonly string[]): string {
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number') return String(v); // finite (checked): "16", "0.0002", "1e-8" all read back the same in Python
  if (typeof v === 'string') return JSON.stringify(v);
  return `[${v.map((s) => JSON.stringify(s)).join(', ')}]`;
}

function check(s: RecipeSettings): void {
  const bad = (what: string) => {
    throw new LoraStudioError('bad-input', `Training recipe: ${what}`);
  };
  const num = (name: string, v: unknown, ok: (x: number) => boolean, want: string) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) bad(`${name} must be ${want} (got ${JSON.stringify(v)}).`);
  };
  const posInt = (x: number) => Number.isInteger(x) && x >= 1;
  if (typeof s.baseModel !== 'string' || s.baseModel === '') bad('the base model is unnamed; the script must load it by Hub id or path.');
  if (typeof s.data.file !== 'string' || s.data.file === '') bad('the dataset file is unnamed.');
  if (s.lora.targets.length === 0 || s.lora.targets.some((t) => !LORA_TARGETS.includes(t))) bad(`targets must be some of ${LORA_TARGETS.join(', ')}.`);
  num('r', s.lora.r, posInt, 'a positive integer');
  num('alpha', s.lora.alpha, (x) => x > 0, 'a positive number');
  num('dropout', s.lora.dropout, (x) => x >= 0 && x < 1, 'in [0, 1)');
  num('lr', s.optim.lr, (x) => x >= 0, 'a non-negative number');
  num('warmupSteps', s.optim.warmupSteps, (x) => Number.isInteger(x) && x >= 0, 'a whole number ≥ 0');
  num('steps', s.optim.steps, posInt, 'a positive integer');
  num('batchSize', s.optim.batchSize, posInt, 'a positive integer');
  num('gradAccum', s.optim.gradAccum, posInt, 'a positive integer');
  num('maxGradNorm', s.optim.maxGradNorm, (x) => x >= 0, 'a non-negative number');
  num('weightDecay', s.optim.weightDecay ?? 0, (x) => x >= 0, 'a non-negative number');
  num('seed', s.optim.seed, (x) => Number.isSafeInteger(x) && x >= 0, 'a whole number ≥ 0');
  num('seqLen', s.data.seqLen, posInt, 'a positive integer');
  num('validationShare', s.data.validationShare ?? 0, (x) => x >= 0 && x < 1, 'in [0, 1)');
  if (s.baseDtype !== undefined && !BASE_DTYPES.includes(s.baseDtype)) bad(`the base dtype must be one of ${BASE_DTYPES.join(', ')} (got ${JSON.stringify(s.baseDtype)}).`);
}

function schedulerType(schedule: RecipeSettings['optim']['schedule'], warmup: number): string {
  if (schedule === 'constant') return warmup > 0 ? 'constant_with_warmup' : 'constant';
  return schedule;
}

/** The script, as text. Throws LoraStudioError('bad-input') for a setting the script could not carry. */
export function writeTrainingRecipe(s: RecipeSettings): string {
  check(s);
  const { lora, optim, data } = s;
  const optimizer = optim.optimizer ?? 'adamw';
  const share = data.validationShare ?? 0;
  const rowsPerStep = optim.batchSize * optim.gradAccum;
  const quantized = s.baseDtype !== undefined ? QUANTIZED[s.baseDtype] : undefined;
  // The studio streams plain text into blocks always; TRL's "wrapped" packing is that stream cut every max_length tokens.
  const packing = data.pack || data.format === 'text';
  const load =
    data.format === 'text'
      ? `load_dataset("text", data_files=DATA_FILE, sample_by="document", split="train")`
      : `load_dataset("json", data_files=DATA_FILE, split="train")`;
  const masking: Record<DatasetFormat, string[]> = {
    text: ['completion_only_loss=False,  # plain text: loss on every token'],
    'text-rows': ['completion_only_loss=False,  # {"text"} rows: loss on every token'],
    input_ids: ['completion_only_loss=False,  # pre-tokenized {"input_ids"} rows: loss on every token'],
    'prompt-completion': ['completion_only_loss=True,  # loss on the completion (and its EOS) only, as in the studio'],
    chat: [
      'assistant_only_loss=True,  # loss on assistant turns only, as in the studio; TRL needs a chat template',
      '# with {% generation %} markers for this: if the model\'s has none, set chat_template_path to one that does',
    ],
  };

  const lines = [
    '# Training recipe exported by LoRA Studio: the same LoRA job, rerun with Hugging Face PEFT + TRL on GPUs.',
    '#',
    `#   pip install "trl>=0.20" "peft>=0.10" accelerate datasets${quantized ? ' bitsandbytes' : ''}`,
    `#   python ${RECIPE_FILE}                                                 # one GPU`,
    `#   accelerate launch --multi_gpu --num_processes 8 ${RECIPE_FILE}        # 8 GPUs on this machine`,
    '#',
    `# Each GPU takes per_device_train_batch_size rows, so N GPUs make an optimizer step N times larger than the`,
    `# studio's ${rowsPerStep} rows (batch ${optim.batchSize} × accumulation ${optim.gradAccum}): divide gradient_accumulation_steps by N`,
    '# (or the batch size) to keep the same step. The settings below match the run; what cannot match is the',
    '# random stream (LoRA init, dropout masks and row order come from PyTorch here) and the precision (bf16 on',
    '# GPU, float32 in the studio).',
    '',
    ...(quantized ? ['import torch'] : []),
    'from datasets import load_dataset',
    'from peft import LoraConfig',
    `from transformers import ${quantized ? 'AutoModelForCausalLM, BitsAndBytesConfig, ' : ''}set_seed`,
    'from trl import SFTConfig, SFTTrainer',
    '',
    `BASE_MODEL = ${py(s.baseModel)}`,
    `DATA_FILE = ${py(data.file)}`,
    `SEED = ${py(optim.seed)}`,
    '',
    'set_seed(SEED)',
    '',
    `dataset = ${load}`,
    ...(share > 0
      ? [
          `split = dataset.train_test_split(test_size=${py(share)}, seed=SEED)  # the studio's held-out share`,
          'train_dataset, eval_dataset = split["train"], split["test"]',
        ]
      : ['train_dataset, eval_dataset = dataset, None']),
    '',
    'peft_config = LoraConfig(',
    `    r=${py(lora.r)},`,
    `    lora_alpha=${py(lora.alpha)},`,
    `    lora_dropout=${py(lora.dropout)},`,
    `    target_modules=${py(LORA_TARGETS.filter((t) => lora.targets.includes(t)))},`,
    `    use_rslora=${py(lora.rslora)},`,
    `    use_dora=${py(lora.dora ?? false)},`,
    '    bias="none",',
    '    task_type="CAUSAL_LM",',
    ')',
    '',
    'training_args = SFTConfig(',
    `    output_dir=${py(s.outputDir ?? 'lora-studio-adapter')},`,
    `    max_steps=${py(optim.steps)},`,
    `    per_device_train_batch_size=${py(optim.batchSize)},`,
    `    gradient_accumulation_steps=${py(optim.gradAccum)},`,
    `    learning_rate=${py(optim.lr)},`,
    `    lr_scheduler_type=${py(schedulerType(optim.schedule, optim.warmupSteps))},`,
    `    warmup_steps=${py(optim.warmupSteps)},`,
    ...(optimizer === 'adamw'
      ? [
          '    optim="adamw_torch",',
          `    adam_beta1=${py(optim.beta1 ?? 0.9)},`,
          `    adam_beta2=${py(optim.beta2 ?? 0.999)},`,
          `    adam_epsilon=${py(optim.eps ?? 1e-8)},`,
        ]
      : ['    optim="sgd",']),
    `    weight_decay=${py(optim.weightDecay ?? 0)},`,
    `    max_grad_norm=${py(optim.maxGradNorm)},${optim.maxGradNorm === 0 ? '  # 0: no clipping' : ''}`,
    '    seed=SEED,',
    '    data_seed=SEED,',
    `    max_length=${py(data.seqLen)},`,
    `    packing=${py(packing)},`,
    ...(packing ? ['    packing_strategy="wrapped",'] : []),
    ...masking[data.format].map((l) => `    ${l}`),
    ...(optim.recompute ? ['    gradient_checkpointing=True,  # the studio recomputed activations in the backward'] : []),
    '    bf16=True,',
    '    logging_steps=1,',
    '    save_strategy="no",',
    '    report_to="none",',
    ')',
    '',
    ...(quantized
      ? [
          `# The studio trained over ${s.baseDtype === 'nf4' ? 'a 4-bit NF4' : 'an 8-bit'} base: the frozen weights load quantized (QLoRA), the adapter trains over them.`,
          'model = AutoModelForCausalLM.from_pretrained(',
          '    BASE_MODEL,',
          `    quantization_config=${quantized},`,
          '    torch_dtype=torch.bfloat16,',
          ')',
          '',
        ]
      : []),
    'trainer = SFTTrainer(',
    `    model=${quantized ? 'model' : 'BASE_MODEL'},`,
    '    args=training_args,',
    '    train_dataset=train_dataset,',
    '    eval_dataset=eval_dataset,',
    '    peft_config=peft_config,',
    ')',
    'trainer.train()',
    ...(share > 0 ? ['print(trainer.evaluate())'] : []),
    'trainer.save_model(training_args.output_dir)  # adapter_config.json + adapter_model.safetensors: import them into LoRA Studio',
    '',
  ];
  return lines.join('\n');
}
