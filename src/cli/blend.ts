// `blend`: a weighted mixture of PEFT adapters of one base model, written as a new PEFT adapter folder.
//
//   blend --model DIR --adapter DIR:WEIGHT [--adapter DIR:WEIGHT]... [--combination svd|cat] [--rank K] --out DIR
//         → one JSON line {"out", "combination", "r", "lora_alpha", "targets", "relative_error"}; notes on stderr.
//
// The math is src/model/blend.ts (PEFT's add_weighted_adapter: "cat" exact at rank Σ rᵢ, "svd", PEFT's default,
// truncated to --rank, default the largest rᵢ). Weights may be negative, as in PEFT. --model's config.json gives
// the shapes every adapter must fit; its weights are not read. This file parses arguments and moves files.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LoraStudioError } from '../io/errors';
import { readAdapter } from '../io/peft';
import { parseModelConfig } from '../model/config';
import { blendAdapters, COMBINATIONS, type BlendSource, type Combination } from '../model/blend';
import { adapterExpectation } from '../model/lora';
import { saveAdapterDir } from './files';

const FLAGS = ['model', 'adapter', 'combination', 'rank', 'out'];

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;

const badInput = (message: string) => new LoraStudioError('bad-input', message);

async function read(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new LoraStudioError('bad-input', `${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`, { file: path });
  }
}

/** "DIR:WEIGHT", split at the last colon, so a folder name may hold colons of its own. */
export function parseAdapterArg(arg: string): { dir: string; weight: number } {
  const at = arg.lastIndexOf(':');
  const dir = arg.slice(0, at), text = arg.slice(at + 1);
  const weight = Number(text);
  if (at <= 0 || !NUMBER.test(text) || !Number.isFinite(weight)) {
    throw badInput(`--adapter ${arg}: write DIR:WEIGHT with WEIGHT a finite number, e.g. ./math:0.7 or ./style:-0.5 (weights may be negative).`);
  }
  return { dir, weight };
}

export async function blendCommand(args: string[], log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<string> {
  const single = new Map<string, string>();
  const adapters: { dir: string; weight: number }[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith('--')) throw badInput(`unexpected argument "${a}"; options start with --`);
    const name = a.slice(2);
    if (!FLAGS.includes(name)) throw badInput(`unknown option --${name}; expected one of ${FLAGS.map((f) => `--${f}`).join(', ')}`);
    const v = args[++i];
    if (v === undefined || v.startsWith('--')) throw badInput(`--${name} needs a value`);
    if (name === 'adapter') adapters.push(parseAdapterArg(v));
    else if (single.has(name)) throw badInput(`--${name} is given twice; give it once`);
    else single.set(name, v);
  }
  for (const name of ['model', 'out']) if (!single.has(name)) throw badInput(`--${name} is required`);
  if (adapters.length === 0) throw badInput('give at least one --adapter DIR:WEIGHT (usually two or more)');
  const combination = (single.get('combination') ?? 'svd') as Combination;
  if (!COMBINATIONS.includes(combination)) throw badInput(`--combination must be cat or svd (got ${combination})`);
  let rank: number | undefined;
  if (single.has('rank')) {
    if (combination !== 'svd') throw badInput('--rank applies to --combination svd; cat keeps every rank (r = the sum of the ranks)');
    rank = Number(single.get('rank'));
    if (!Number.isSafeInteger(rank) || rank < 1) throw badInput(`--rank must be a positive integer (got ${single.get('rank')})`);
  }

  const modelDir = single.get('model')!;
  const configPath = join(modelDir, 'config.json');
  const model = parseModelConfig(new TextDecoder().decode(await read(configPath)), configPath);
  const expected = adapterExpectation(model);
  const sources: BlendSource[] = [];
  for (const { dir, weight } of adapters) {
    const names = { config: join(dir, 'adapter_config.json'), weights: join(dir, 'adapter_model.safetensors') };
    const text = new TextDecoder().decode(await read(names.config));
    const { config, weights, notes } = readAdapter(text, await read(names.weights), expected, names);
    for (const note of notes) log(`note: ${note}`);
    sources.push({ config, weights, weight, name: dir });
  }
  const blend = blendAdapters(sources, { combination, rank });
  const out = single.get('out')!;
  await saveAdapterDir(out, blend.config, blend.weights, model);
  return JSON.stringify({
    out, combination, r: blend.config.r, lora_alpha: blend.config.loraAlpha, targets: blend.config.targetModules, relative_error: blend.relativeError,
  });
}
