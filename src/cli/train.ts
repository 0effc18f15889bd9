// `eval` and `train` over a Hugging Face model (a folder, or a Hub id where the network allows) and a dataset,
// on the same engine as the studio.
//
//   eval  --model DIR|ID [--adapter DIR [--alpha A]] --data FILE [--batch-size N] [--seq-len N] [--pack] [--limit N]
//         → {"loss": mean token cross-entropy over every row (the first N with --limit), "tokens": predicted tokens}
//   train --model DIR|ID --data FILE [--adapter DIR] [--targets q_proj,v_proj] [--rank 8] [--alpha 16]
//         [--dropout 0] [--rslora] [--dora] [--optimizer adamw|sgd] [--lr X] [--steps N] [--batch-size 8]
//         [--weight-decay 0] [--max-grad-norm 0] [--seed S] [--seq-len N] [--pack] [--base-dtype D] --out DIR
//         → one {"step": i, "loss": L} line per step (the loss before that step's update), then the
//           adapter in PEFT's layout in --out. --dora trains DoRA (PEFT's use_dora): a magnitude per output
//           row besides A and B, starting at the row norms of the base weights.
// Data: JSONL {"input_ids": [...]} rows of one length are used as they are (T = their length, loss on every
// next token), unless --seq-len or --pack is given. Anything else src/io/dataset.ts reads (plain text,
// {"text"}, {"prompt", "completion"}, {"messages"}) is tokenized with the model's tokenizer.json into rows
// of --seq-len tokens (default min(256, the model's context)), packed with --pack, padded otherwise.
// Defaults keep runs comparable with PyTorch: constant learning rate, no warmup, no clipping, no dropout.
// --base-dtype f32|bf16|f16|nf4|int8 (train and generate): how the frozen base weights are held on the GPU;
// default the checkpoint's stored dtype (F32, BF16, F16; a mix: f32). The adapter, its gradients and optimizer
// state are float32 whatever it is.

import { parseDataset } from '../io/dataset';
import { LoraStudioError } from '../io/errors';
import { LORA_TARGETS, parseAdapterConfig, type AdapterConfig, type LoraTarget } from '../io/peft';
import { createNodeGpu } from '../gpu/node';
import type { StreamedModel } from '../model/load';
import { initLora, checkAdapterSettings } from '../model/lora';
import { BASE_DTYPES, type BaseDtype } from '../model/causal_lm';
import { loadStreamed } from '../model/streamed_model';
import { batchAt, type DataRow } from '../train/batches';
import { Evaluator, Trainer } from '../train/trainer';
import { checkOutDir, loadAdapterDir, loadTokenRows, readDataText, saveAdapterDir, streamModelArg } from './files';

type Flags = Map<string, string | true>;

const BOOLEAN_FLAGS = new Set(['rslora', 'dora', 'pack', 'recompute']);

/** --name value, --name=value, and the boolean --rslora / --dora / --pack; an option given twice is refused. */
export function parseFlags(args: string[], allowed: string[]): Flags {
  const flags: Flags = new Map();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith('--')) throw new LoraStudioError('bad-input', `unexpected argument "${a}"; options start with --`);
    const eq = a.indexOf('=');
    const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
    if (!allowed.includes(name)) throw new LoraStudioError('bad-input', `unknown option --${name}; expected one of ${allowed.map((f) => `--${f}`).join(', ')}`);
    if (flags.has(name)) throw new LoraStudioError('bad-input', `--${name} is given twice; keep one`);
    if (BOOLEAN_FLAGS.has(name)) {
      if (eq >= 0) throw new LoraStudioError('bad-input', `--${name} takes no value; write --${name} alone`);
      flags.set(name, true);
      continue;
    }
    const v = eq >= 0 ? a.slice(eq + 1) : args[++i];
    if (v === undefined || v === '' || (eq < 0 && v.startsWith('--'))) throw new LoraStudioError('bad-input', `--${name} needs a value`);
    flags.set(name, v);
  }
  return flags;
}

function str(f: Flags, name: string, required = false): string | undefined {
  const v = f.get(name);
  if (v === undefined && required) throw new LoraStudioError('bad-input', `--${name} is required`);
  return v === undefined ? undefined : String(v);
}

function num(f: Flags, name: string, fallback: number, check: (v: number) => boolean, what: string): number {
  const raw = f.get(name);
  if (raw === undefined) return fallback;
  // Number('') and Number(' ') are 0: a blank is not a number here.
  const v = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  if (!Number.isFinite(v) || !check(v)) throw new LoraStudioError('bad-input', `--${name} must be ${what} (got ${raw})`);
  return v;
}

const posInt = (v: number) => Number.isInteger(v) && v >= 1;

/**
 * --base-dtype, checked before anything loads; undefined when not given: then the checkpoint's stored dtype
 * (streamed_model.ts storedBaseDtype).
 */
export function baseDtypeFlag(raw: string | true | undefined, command = ''): BaseDtype | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw === 'string' && (BASE_DTYPES as readonly string[]).includes(raw)) return raw as BaseDtype;
  throw new LoraStudioError('bad-input', `${command}--base-dtype must be one of ${BASE_DTYPES.join(', ')} (got ${raw})`);
}

/** Rows of the data file (its text already read and checked by readDataText), all of length T. */
async function loadRows(f: Flags, path: string, text: string, model: StreamedModel, seed: number): Promise<{ rows: DataRow[]; T: number }> {
  const { config, tokenizer } = model;
  const first = text.split('\n').find((l) => l.trim() !== '') ?? '';
  let tokenRows = false;
  try {
    tokenRows = Object.hasOwn(JSON.parse(first), 'input_ids');
  } catch {
    // not JSONL: plain text, which parseDataset reads
  }
  if (tokenRows && !f.has('seq-len') && !f.has('pack')) {
    const rows = await loadTokenRows(path, config.vocab);
    return { rows: rows.map((r) => ({ ids: Int32Array.from(r) })), T: rows[0].length };
  }
  const seqLen = num(f, 'seq-len', Math.min(256, config.maxPositions), posInt, 'a positive integer');
  const data = parseDataset(text, path, tokenizer, {
    seqLen, pack: f.get('pack') === true, validationShare: 0, seed, contextLength: config.maxPositions, vocabSize: config.vocab,
  });
  return { rows: data.train, T: seqLen };
}

const progressLog = (line: string) => process.stderr.write(`${line}\n`);

export async function evalCommand(args: string[]): Promise<string> {
  const f = parseFlags(args, ['model', 'adapter', 'alpha', 'data', 'batch-size', 'seq-len', 'pack', 'limit']);
  // Flags are checked before the model loads, so a typo costs no loading time.
  const batchSize = num(f, 'batch-size', 8, posInt, 'a positive integer');
  const limit = num(f, 'limit', Infinity, posInt, 'a positive integer (the number of rows to evaluate)');
  if (f.has('seq-len')) num(f, 'seq-len', 0, posInt, 'a positive integer');
  const modelArg = str(f, 'model', true)!, dataPath = str(f, 'data', true)!;
  const text = await readDataText(dataPath);
  const loaded = await loadStreamed((open) => streamModelArg(modelArg, progressLog, open), createNodeGpu);
  const { config, gpu, model } = loaded;
  try {
    // --limit keeps the first N rows of T tokens, after tokenizing (and packing): a cheap, fixed held-out slice.
    // A file with fewer rows is evaluated whole; "tokens" in the output says how much was read.
    const all = await loadRows(f, dataPath, text, loaded, 0);
    const rows = all.rows.slice(0, limit), T = all.T;
    const adapterDir = str(f, 'adapter');
    if (adapterDir) {
      const a = await loadAdapterDir(adapterDir, config);
      // --alpha rescales the adapter (scale α/r): 0 switches B·A off and gives back the base model exactly, except
      // with DoRA, whose magnitudes still rescale each row of W (as PEFT's scaling does).
      const alpha = num(f, 'alpha', a.config.loraAlpha, () => true, 'a number');
      model.setAdapter({ ...a.config, loraAlpha: alpha }, a.weights);
    } else if (f.has('alpha')) {
      throw new LoraStudioError('bad-input', '--alpha rescales an adapter: give --adapter DIR too');
    }
    const evaluators = new Map<number, Evaluator>();
    let sum = 0, tokens = 0;
    // Consecutive batches; the last one may be smaller.
    for (let i = 0; i < rows.length; i += batchSize) {
      const size = Math.min(batchSize, rows.length - i);
      let ev = evaluators.get(size);
      if (!ev) evaluators.set(size, (ev = new Evaluator(model, size, T)));
      const { ids, targets } = batchAt(rows, i, size, T);
      const r = await ev.loss(ids, targets);
      sum += r.loss * r.tokens;
      tokens += r.tokens;
    }
    return JSON.stringify({ loss: tokens ? sum / tokens : 0, tokens });
  } finally {
    gpu.destroy();
  }
}

/** The flags `train` and `recipe` share. */
export const TRAIN_FLAGS = ['model', 'data', 'adapter', 'targets', 'rank', 'alpha', 'dropout', 'rslora', 'dora', 'optimizer', 'lr', 'steps',
  'batch-size', 'weight-decay', 'max-grad-norm', 'seed', 'out', 'seq-len', 'pack', 'recompute'];

/** A run's settings from train's flags, every one checked (with train's defaults), before anything is read. */
export function trainSettings(f: Flags) {
  const modelDir = str(f, 'model', true)!;
  const dataPath = str(f, 'data', true)!;
  const out = str(f, 'out', true)!;
  const seed = num(f, 'seed', 0, (v) => Number.isInteger(v), 'an integer');
  const optimizer = str(f, 'optimizer') ?? 'adamw';
  if (optimizer !== 'adamw' && optimizer !== 'sgd') throw new LoraStudioError('bad-input', `--optimizer must be adamw or sgd (got ${optimizer})`);
  const steps = num(f, 'steps', 100, (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer');
  const batchFlag = num(f, 'batch-size', 8, posInt, 'a positive integer');
  const lr = num(f, 'lr', optimizer === 'sgd' ? 1e-2 : 1e-4, (v) => v >= 0, 'a non-negative number');
  const weightDecay = num(f, 'weight-decay', 0, (v) => v >= 0, 'a non-negative number');
  const maxGradNorm = num(f, 'max-grad-norm', 0, (v) => v >= 0, 'a non-negative number (0: no clipping)');
  const seqLen = f.has('seq-len') ? num(f, 'seq-len', 0, posInt, 'a positive integer') : undefined;
  const from = str(f, 'adapter');
  let settings: AdapterConfig | undefined;
  if (from) {
    for (const k of ['targets', 'rank', 'alpha', 'dropout', 'rslora', 'dora']) {
      if (f.has(k)) throw new LoraStudioError('bad-input', `--${k} cannot be combined with --adapter: the adapter's own adapter_config.json sets it`);
    }
  } else {
    const targets = (str(f, 'targets') ?? 'q_proj,v_proj').split(',').map((t) => t.trim()).filter(Boolean);
    for (const t of targets) {
      if (!(LORA_TARGETS as readonly string[]).includes(t)) throw new LoraStudioError('bad-input', `--targets: unknown module "${t}"; choose from ${LORA_TARGETS.join(', ')}`);
    }
    settings = {
      r: num(f, 'rank', 8, () => true, 'a positive integer'),
      loraAlpha: num(f, 'alpha', 16, () => true, 'a number'),
      loraDropout: num(f, 'dropout', 0, () => true, 'in [0, 1)'),
      targetModules: targets as LoraTarget[],
      useRslora: f.get('rslora') === true,
      baseModel: modelDir,
      ...(f.get('dora') === true ? { useDora: true } : {}),
    };
    checkAdapterSettings(settings);
  }
  return { modelDir, dataPath, out, seed, optimizer: optimizer as 'adamw' | 'sgd', steps, batchFlag, lr, weightDecay, maxGradNorm, seqLen, pack: f.get('pack') === true, from, settings,
    recompute: f.get('recompute') === true };
}

export async function trainCommand(args: string[], print: (line: string) => void): Promise<string> {
  const f = parseFlags(args, [...TRAIN_FLAGS, 'base-dtype']);
  const baseDtype = baseDtypeFlag(f.get('base-dtype'));
  // Every flag, --out and the data file are checked before the model loads: a typo costs no loading time,
  // and a run refused for any reason writes nothing.
  const { modelDir, dataPath, out, seed, optimizer, steps, batchFlag, lr, weightDecay, maxGradNorm, from, settings, recompute } = trainSettings(f);
  await checkOutDir(out);
  const text = await readDataText(dataPath);

  const loaded = await loadStreamed((open) => streamModelArg(modelDir, progressLog, open), createNodeGpu, { model: { recompute, baseDtype } });
  const { config, gpu, model } = loaded;
  try {
    const { rows, T } = await loadRows(f, dataPath, text, loaded, seed);
    const batchSize = Math.min(batchFlag, rows.length);

    let adapter: AdapterConfig, tensors: Map<string, Float32Array>;
    if (settings) {
      adapter = settings;
      tensors = initLora(config, adapter, seed);
    } else {
      ({ config: adapter, weights: tensors } = await loadAdapterDir(from!, config));
    }
    // Round-trip through PEFT's own config format now, so a bad setting fails before any training.
    parseAdapterConfig(JSON.stringify({ peft_type: 'LORA', r: adapter.r, lora_alpha: adapter.loraAlpha, target_modules: adapter.targetModules }));

    model.setAdapter(adapter, tensors);
    const trainer = new Trainer(model, batchSize, T, { kind: optimizer, lr, weightDecay, beta1: 0.9, beta2: 0.999, eps: 1e-8, maxGradNorm }, seed);
    // Batches walk the rows in order, wrapping around: step i uses rows [i·B, (i+1)·B) mod rows.
    for (let s = 0; s < steps; s++) {
      const { ids, targets } = batchAt(rows, s * batchSize, batchSize, T);
      const loss = await trainer.step(ids, targets);
      print(JSON.stringify({ step: s, loss }));
      if (!Number.isFinite(loss)) throw new LoraStudioError('bad-input', `the loss became ${loss} at step ${s}: lower --lr (the adapter was not saved).`);
    }
    await saveAdapterDir(out, adapter, await model.readAdapter(), config);
    return '';
  } finally {
    gpu.destroy();
  }
}
