// `generate`: continue a prompt with a base model, one adapter, or a live blend of several, on the same engine
// and sampler as the studio's Try it.
//
//   generate --model DIR|HUB_ID|HUB_URL [--adapter DIR[:WEIGHT]]... --prompt TEXT [--max-tokens 32]
//            [--temperature 0] [--top-k 0] [--seed 0] [--base-dtype f32|bf16|f16|nf4|int8]
//            → one JSON line {"text", "tokens", "ids", "adapters": [{"dir", "weight"}]}; notes on stderr.
//
// Temperature 0 is greedy (the seed does not matter); above it, the same seed gives the same text. Several
// adapters blend live, PEFT's add_weighted_adapter "cat" applied at run time (src/autograd/lora_blend.ts):
// ΔW = Σ wᵢ·sᵢ·Bᵢ·Aᵢ, WEIGHT default 1, negative subtracts, 0 leaves the adapter out. Each adapter is
// attached beside the base weights, which are uploaded once; whether it fits the model is
// io/base_identity.ts's call, as in the studio. This file parses arguments and reads files.

import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { baseIdentity, judgeAdapterBase } from '../io/base_identity';
import { LoraStudioError } from '../io/errors';
import { readAdapter, readAdapterConfig } from '../io/peft';
import { parseSafetensors } from '../io/safetensors';
import type { Gpu } from '../gpu/gpu';
import { createNodeGpu } from '../gpu/node';
import type { BlendTerm } from '../model/causal_lm';
import { adapterExpectation } from '../model/lora';
import { loadStreamed } from '../model/streamed_model';
import { Generator } from '../train/generate';
import { parseAdapterArg } from './blend';
import { readText, readBytes, streamModelArg } from './files';
import { baseDtypeFlag, parseFlags } from './train';

const FLAGS = ['model', 'prompt', 'max-tokens', 'temperature', 'top-k', 'seed', 'base-dtype'];

const badInput = (message: string) => new LoraStudioError('bad-input', message);

/** "DIR" (weight 1) or "DIR:WEIGHT"; a folder that exists is taken whole, so its name may end in ":something". */
export function parseAdapterWeight(arg: string): { dir: string; weight: number } {
  if (existsSync(arg) || arg.lastIndexOf(':') <= 0) return { dir: arg, weight: 1 };
  return parseAdapterArg(arg);
}

/** Each --adapter (repeatable) apart from the other flags, which parseFlags checks. */
function splitAdapters(args: string[]): { adapters: { dir: string; weight: number }[]; rest: string[] } {
  const adapters: { dir: string; weight: number }[] = [];
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--adapter' || a.startsWith('--adapter=')) {
      const v = a === '--adapter' ? args[++i] : a.slice('--adapter='.length);
      if (v === undefined || v === '' || v.startsWith('--')) throw badInput('--adapter needs a value: DIR or DIR:WEIGHT');
      adapters.push(parseAdapterWeight(v));
    } else {
      rest.push(a);
    }
  }
  return { adapters, rest };
}

function number(raw: string | true | undefined, name: string, fallback: number, ok: (v: number) => boolean, what: string): number {
  if (raw === undefined) return fallback;
  const v = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  if (!Number.isFinite(v) || !ok(v)) throw badInput(`--${name} must be ${what} (got ${raw})`);
  return v;
}

export interface GenerateOptions {
  /** Notes and download progress (default: stderr). */
  log?: (line: string) => void;
  /** A device to run on, kept open afterwards (a test's, whose compiled pipelines then serve every call); default a fresh one. */
  gpu?: Gpu;
}

export async function generateCommand(args: string[], options: GenerateOptions = {}): Promise<string> {
  const log = options.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const { adapters, rest } = splitAdapters(args);
  const f = parseFlags(rest, FLAGS);
  // Every flag is checked before the model loads: a typo costs no loading time.
  const modelArg = f.get('model'), prompt = f.get('prompt');
  if (typeof modelArg !== 'string') throw badInput('--model is required');
  if (typeof prompt !== 'string') throw badInput('--prompt is required: the text to continue');
  const int = (v: number) => Number.isSafeInteger(v);
  const maxTokens = number(f.get('max-tokens'), 'max-tokens', 32, (v) => int(v) && v >= 1, 'a positive integer');
  const temperature = number(f.get('temperature'), 'temperature', 0, (v) => v >= 0, 'a number ≥ 0 (0: greedy)');
  const topK = number(f.get('top-k'), 'top-k', 0, (v) => int(v) && v >= 0, 'an integer ≥ 0 (0: no cut)');
  const seed = number(f.get('seed'), 'seed', 0, int, 'an integer');
  const baseDtype = baseDtypeFlag(f.get('base-dtype'));

  // The weights stream onto the device as they are read (src/model/streamed_model.ts); a test's device is kept.
  const { config, tokenizer, gpu, model } = await loadStreamed((open) => streamModelArg(modelArg, log, open),
    async () => options.gpu ?? (await createNodeGpu()), { model: { baseDtype }, ...(options.gpu && { discard: () => {} }) });
  try {
    if (!tokenizer) throw badInput(`${modelArg} has no tokenizer.json, so --prompt cannot be read; use a model folder with its tokenizer.`);
    const ids = tokenizer.encode(prompt, { addSpecialTokens: true });
    if (ids.length === 0) throw badInput('--prompt is empty: give some text to continue');
    if (ids.length >= config.maxPositions) throw badInput(`--prompt is ${ids.length} tokens; the model's context is ${config.maxPositions}: shorten it`);
    const identity = baseIdentity(config, modelArg);
    const read = [];
    for (const { dir, weight } of adapters) {
      const names = { config: join(dir, 'adapter_config.json'), weights: join(dir, 'adapter_model.safetensors') };
      const text = await readText(names.config), bytes = await readBytes(names.weights);
      // The base decision is the studio's (io/base_identity.ts): the shapes decide, a differing name is a note.
      const verdict = judgeAdapterBase(readAdapterConfig(text, names.config).config, parseSafetensors(bytes, names.weights).tensors, identity, names);
      if (!verdict.fits) throw new LoraStudioError('bad-shape', `--adapter ${dir} does not fit ${modelArg}: ${verdict.reason}`, { file: dir });
      const adapter = readAdapter(text, bytes, adapterExpectation(config), names);
      for (const note of [...adapter.notes, ...(verdict.note ? [verdict.note] : [])]) log(`note: ${dir}: ${note}`);
      read.push({ dir, weight, adapter });
    }

    const blend: BlendTerm[] = read.map(({ adapter, weight }, i) => {
      model.attach(String(i), adapter.config, adapter.weights);
      return { id: String(i), weight };
    });
    const eos = config.eosTokenId ?? tokenizer.eosId;
    const stopIds = eos === undefined ? [] : Array.isArray(eos) ? eos : [eos];
    const generator = new Generator(model, Math.min(config.maxPositions, ids.length + maxTokens), blend);
    const out = await generator.generate(ids, { maxNewTokens: maxTokens, temperature, topK, seed, stopIds });
    return JSON.stringify({
      text: tokenizer.decode(out, { skipSpecialTokens: true }), tokens: out.length, ids: out, adapters: read.map(({ dir, weight }) => ({ dir, weight })),
    });
  } finally {
    if (!options.gpu) gpu.destroy();
  }
}
