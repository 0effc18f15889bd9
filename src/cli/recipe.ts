// `recipe`: the training run `train` would make, written as a Python script that reruns it with PEFT + TRL on
// GPUs (src/io/recipe.ts writes the script).
//
//   recipe --model ID --data FILE [train's settings: --targets --rank --alpha --dropout --rslora --optimizer --lr
//          --steps --batch-size --weight-decay --max-grad-norm --seed --seq-len --pack] --out FILE.py
//     prints {"file": FILE.py, "format": the data's format}
//
// The flags and their defaults are train's (src/cli/train.ts trainSettings), so `train ARGS` and `recipe ARGS`
// describe the same job. Nothing is loaded: --model is written into the script as the base to download, and
// the data file is read only to tell its format (which decides the prompt masking). The script goes to a
// temporary name first, renamed when written.

import { existsSync, statSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import type { DatasetFormat } from '../io/dataset';
import { LoraStudioError } from '../io/errors';
import { writeTrainingRecipe } from '../io/recipe';
import { readDataText } from './files';
import { baseDtypeFlag, parseFlags, TRAIN_FLAGS, trainSettings } from './train';

export async function recipeCommand(args: string[]): Promise<string> {
  const flags = parseFlags(args, [...TRAIN_FLAGS, 'base-dtype']);
  const s = trainSettings(flags);
  const baseDtype = baseDtypeFlag(flags.get('base-dtype'));
  if (s.from !== undefined) {
    throw new LoraStudioError('bad-input', '--adapter: a recipe trains a fresh adapter; give its settings (--targets, --rank, --alpha, --dropout, --rslora) instead');
  }
  if (existsSync(s.out) && statSync(s.out).isDirectory()) throw new LoraStudioError('bad-input', `--out ${s.out} is a folder; the recipe is one file, e.g. ${s.out}/train_lora.py`);
  const { format, rowLength } = sniffFormat(await readDataText(s.dataPath));
  // train's T: token-id rows keep their own length unless --seq-len or --pack is given; else --seq-len, default 256.
  const seqLen = s.seqLen ?? (format === 'input_ids' && !s.pack && rowLength > 0 ? rowLength : 256);
  const a = s.settings!;
  const script = writeTrainingRecipe({
    baseModel: s.modelDir,
    lora: { targets: a.targetModules, r: a.r, alpha: a.loraAlpha, dropout: a.loraDropout, rslora: a.useRslora },
    optim: {
      optimizer: s.optimizer, lr: s.lr, schedule: 'constant', warmupSteps: 0, steps: s.steps, batchSize: s.batchFlag,
      gradAccum: 1, maxGradNorm: s.maxGradNorm, weightDecay: s.weightDecay, seed: s.seed, recompute: s.recompute,
    },
    ...(baseDtype !== undefined ? { baseDtype } : {}),
    data: { file: s.dataPath, format, seqLen, pack: s.pack, validationShare: 0 },
  });
  try {
    await writeFile(`${s.out}.tmp`, script);
    await rename(`${s.out}.tmp`, s.out);
  } catch (e) {
    await rm(`${s.out}.tmp`, { force: true });
    throw new LoraStudioError('storage', `--out ${s.out}: cannot write the recipe (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); nothing was written.`, { file: s.out });
  }
  return JSON.stringify({ file: s.out, format });
}

/** The data's format as src/io/dataset.ts reads it, from its first row: JSONL rows by their keys, else plain text. */
function sniffFormat(text: string): { format: DatasetFormat; rowLength: number } {
  const first = text.replace(/^\uFEFF/, '').split('\n').find((l) => l.trim() !== '') ?? '';
  let row: unknown;
  try {
    row = JSON.parse(first);
  } catch {
    return { format: 'text', rowLength: 0 };
  }
  if (typeof row !== 'object' || row === null || Array.isArray(row)) return { format: 'text', rowLength: 0 };
  const has = (k: string) => Object.hasOwn(row as object, k);
  if (has('input_ids')) return { format: 'input_ids', rowLength: Array.isArray((row as { input_ids: unknown }).input_ids) ? (row as { input_ids: unknown[] }).input_ids.length : 0 };
  if (has('messages')) return { format: 'chat', rowLength: 0 };
  if (has('prompt') || has('completion')) return { format: 'prompt-completion', rowLength: 0 };
  return { format: 'text-rows', rowLength: 0 };
}
