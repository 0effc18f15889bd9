// Node-side loading of a Hugging Face model folder (config.json + model.safetensors or shards via
// model.safetensors.index.json), a PEFT adapter folder, and JSONL token rows. The parsing itself is the
// engine's (src/io, src/model); this file only reads files, and names them in every error.

import { readFile, mkdir, writeFile, rename } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LoraStudioError } from '../io/errors';
import { readAdapter, writeAdapter, type AdapterConfig } from '../io/peft';
import { parseModelConfig, projectionDims, type ModelConfig } from '../model/config';
import { loadWeights, type Weights } from '../model/weights';

async function read(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new LoraStudioError('bad-input', `${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`, { file: path });
  }
}

export async function loadModelDir(dir: string): Promise<{ config: ModelConfig; weights: Weights }> {
  const configPath = join(dir, 'config.json');
  const config = parseModelConfig(new TextDecoder().decode(await read(configPath)), configPath);
  const index = join(dir, 'model.safetensors.index.json');
  let names = ['model.safetensors'];
  if (!existsSync(join(dir, 'model.safetensors')) && existsSync(index)) {
    let map: unknown;
    try {
      map = JSON.parse(new TextDecoder().decode(await read(index))).weight_map;
    } catch (e) {
      throw new LoraStudioError('bad-file', `${index}: not valid JSON (${(e as Error).message}).`, { file: index });
    }
    if (typeof map !== 'object' || map === null) throw new LoraStudioError('bad-file', `${index}: "weight_map" is missing.`, { file: index });
    names = [...new Set(Object.values(map as Record<string, string>))].sort();
  }
  const files = await Promise.all(names.map(async (n) => ({ name: join(dir, n), bytes: await read(join(dir, n)) })));
  return { config, weights: loadWeights(config, files) };
}

export function adapterExpectation(config: ModelConfig) {
  return { numLayers: config.layers, shapes: (t: Parameters<typeof projectionDims>[1]) => projectionDims(config, t) };
}

export async function loadAdapterDir(dir: string, config: ModelConfig): Promise<{ config: AdapterConfig; weights: Map<string, Float32Array> }> {
  const c = join(dir, 'adapter_config.json'), w = join(dir, 'adapter_model.safetensors');
  return readAdapter(new TextDecoder().decode(await read(c)), await read(w), adapterExpectation(config), { config: c, weights: w });
}

/** Write both PEFT files; each goes to a temporary name first, so a failed write leaves the old adapter intact. */
export async function saveAdapterDir(dir: string, adapter: AdapterConfig, weights: Map<string, Float32Array>, config: ModelConfig): Promise<void> {
  const out = writeAdapter(adapter, weights, adapterExpectation(config));
  await mkdir(dir, { recursive: true });
  const files: [string, string | Uint8Array][] = [['adapter_model.safetensors', out.weights], ['adapter_config.json', out.configJson]];
  for (const [name, data] of files) await writeFile(join(dir, `${name}.tmp`), data);
  for (const [name] of files) await rename(join(dir, `${name}.tmp`), join(dir, name));
}

/** Rows of token ids from JSONL `{"input_ids": [...]}` lines, all of one length. */
export async function loadTokenRows(path: string, vocab: number): Promise<number[][]> {
  const text = new TextDecoder().decode(await read(path));
  const rows: number[][] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new LoraStudioError('bad-input', `${path}:${i + 1}: not valid JSON.`, { file: path });
    }
    const ids = (obj as { input_ids?: unknown })?.input_ids;
    if (!Array.isArray(ids) || ids.length < 2) throw new LoraStudioError('bad-input', `${path}:${i + 1}: needs "input_ids", an array of at least 2 token ids.`, { file: path });
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new LoraStudioError('bad-input', `${path}:${i + 1}: token id ${JSON.stringify(id)} is not an integer in [0, ${vocab}) (the model's vocabulary).`, { file: path });
    }
    if (rows.length && ids.length !== rows[0].length) throw new LoraStudioError('bad-input', `${path}:${i + 1}: has ${ids.length} tokens but line 1 has ${rows[0].length}; rows must have equal length.`, { file: path });
    rows.push(ids as number[]);
  });
  if (rows.length === 0) throw new LoraStudioError('bad-input', `${path}: no rows; each line must be {"input_ids": [...]}.`, { file: path });
  return rows;
}
