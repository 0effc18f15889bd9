// Node-side files for the CLI: a model folder on disk (or a Hub id) as a model source, a PEFT adapter folder,
// and JSONL token rows. Parsing and model loading are the engine's (src/io, src/model): this file only
// reads files, lazily and by name, and names them in every error.

import { readFile, mkdir, writeFile, rename } from 'node:fs/promises';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';
import { LoraStudioError } from '../io/errors';
import { hubSource, isHubId } from '../io/hub';
import type { ModelFiles } from '../io/model_source';
import { readAdapter, writeAdapter, type AdapterConfig } from '../io/peft';
import type { ModelConfig } from '../model/config';
import { loadModel, type LoadedModel } from '../model/load';
import { adapterExpectation } from '../model/lora';

async function read(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new LoraStudioError('bad-input', `${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`, { file: path });
  }
}

export async function readText(path: string): Promise<string> {
  return new TextDecoder().decode(await read(path));
}

/** The files under dir (hidden entries skipped, '/'-separated names), read from disk only when asked for. */
export function nodeFolderSource(dir: string): ModelFiles {
  let names: string[];
  try {
    names = (readdirSync(dir, { recursive: true }) as string[])
      .filter((n) => !n.split(sep).some((p) => p.startsWith('.')) && statSync(join(dir, n)).isFile())
      .map((n) => n.split(sep).join('/'))
      .sort();
  } catch (e) {
    throw new LoraStudioError('bad-input', `${dir}: cannot read the model folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`, { file: dir });
  }
  const known = new Set(names);
  return {
    label: dir,
    list: () => [...names],
    has: (name) => known.has(name),
    path: (name) => join(dir, name),
    read: async (name, onProgress) => {
      const bytes = await read(join(dir, name));
      onProgress?.({ file: name, loaded: bytes.byteLength, total: bytes.byteLength, percent: 100 });
      return bytes;
    },
  };
}

export async function loadModelDir(dir: string): Promise<LoadedModel> {
  return loadModel(nodeFolderSource(dir));
}

/**
 * --model: a folder when one exists at that path, else a Hub id (downloaded, not cached: the CLI keeps
 * no cache of its own), with download progress on stderr.
 */
export async function loadModelArg(arg: string, log: (line: string) => void = () => {}): Promise<LoadedModel> {
  if (existsSync(arg) || !isHubId(arg)) return loadModelDir(arg);
  let last = '';
  return loadModel(await hubSource(arg), {
    onProgress: (p) => {
      const pct = p.percent === undefined ? `${(p.loaded / 2 ** 20).toFixed(1)} MB` : `${Math.floor(p.percent / 10) * 10}%`;
      const line = `${arg}/${p.file}: ${pct}`;
      if (line !== last) log((last = line));
    },
  });
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
