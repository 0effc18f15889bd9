// Node-side files for the CLI: a model folder on disk (or a Hub id) as a model source, a PEFT adapter folder,
// the data file, and JSONL token rows. Parsing and model loading are the engine's (src/io, src/model): this
// file only reads and writes files, lazily and by name, and names them in every error. A file-system error
// never reaches the user as a stack trace: each becomes a LoraStudioError saying which path and what to do.

import { access, readFile, mkdir, writeFile, rename, rm, stat } from 'node:fs/promises';
import { constants, existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { refuseBinary } from '../io/binary';
import { LoraStudioError } from '../io/errors';
import { hubSource, isHubId } from '../io/hub';
import type { ModelFiles, OnProgress } from '../io/model_source';
import { readAdapter, writeAdapter, type AdapterConfig } from '../io/peft';
import type { ModelConfig } from '../model/config';
import { loadModel, type LoadedModel, type StreamedModel } from '../model/load';
import { adapterExpectation } from '../model/lora';
import type { TensorSink } from '../model/weights';

const REASONS: Record<string, string> = {
  ENOENT: 'no such file or folder',
  EACCES: 'permission denied',
  EPERM: 'not permitted',
  EROFS: 'a read-only file system',
  EISDIR: 'it is a folder',
  ENOTDIR: 'a part of the path is a file',
  ENOSPC: 'the disk is full',
  EEXIST: 'a file is in the way',
};

/** A file-system error in words, with its code for searching: "permission denied, EACCES". */
function errno(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (!code) return (e as Error).message;
  return REASONS[code] ? `${REASONS[code]}, ${code}` : code;
}

async function read(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new LoraStudioError('bad-input', `${path}: cannot read it (${errno(e)}).`, { file: path });
  }
}

/** A file's bytes; an error names the path and the reason. */
export function readBytes(path: string): Promise<Uint8Array> {
  return read(path);
}

export async function readText(path: string): Promise<string> {
  return new TextDecoder().decode(await read(path));
}

/** The data file as text, refused by name first when its bytes are an image, an archive, ... (src/io/binary.ts). */
export async function readDataText(path: string): Promise<string> {
  const bytes = await read(path);
  refuseBinary(bytes, path);
  return new TextDecoder().decode(bytes);
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
    throw new LoraStudioError('bad-input', `${dir}: cannot read the model folder (${errno(e)}).`, { file: dir });
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
 * --model: a folder when one exists at that path, else a Hub id or model URL (downloaded, not cached: the CLI keeps
 * no cache of its own), with download progress on stderr.
 */
export async function loadModelArg(arg: string, log: (line: string) => void = () => {}): Promise<LoadedModel> {
  const { source, onProgress } = await modelArgSource(arg, log);
  return loadModel(source, { onProgress });
}

/** loadModelArg with each weight handed to the sink `open` returns as its shard is read (src/model/streamed_model.ts). */
export async function streamModelArg(
  arg: string, log: (line: string) => void, open: (config: ModelConfig, stored: ReadonlySet<string>) => Promise<TensorSink>,
): Promise<StreamedModel> {
  const { source, onProgress } = await modelArgSource(arg, log);
  return loadModel(source, { onProgress, sink: open });
}

async function modelArgSource(arg: string, log: (line: string) => void): Promise<{ source: ModelFiles; onProgress?: OnProgress }> {
  if (existsSync(arg) || !isHubId(arg)) return { source: nodeFolderSource(arg) };
  let last = '';
  return {
    source: await hubSource(arg),
    onProgress: (p) => {
      const pct = p.percent === undefined ? `${(p.loaded / 2 ** 20).toFixed(1)} MB` : `${Math.floor(p.percent / 10) * 10}%`;
      const line = `${arg}/${p.file}: ${pct}`;
      if (line !== last) log((last = line));
    },
  };
}

export async function loadAdapterDir(dir: string, config: ModelConfig): Promise<{ config: AdapterConfig; weights: Map<string, Float32Array> }> {
  const c = join(dir, 'adapter_config.json'), w = join(dir, 'adapter_model.safetensors');
  return readAdapter(new TextDecoder().decode(await read(c)), await read(w), adapterExpectation(config), { config: c, weights: w });
}

/**
 * --out, checked before any training: a folder, or a path where one can be created, that we may write in.
 * Nothing is created here, so a run refused later leaves no empty folder behind.
 */
export async function checkOutDir(dir: string, flag = '--out'): Promise<void> {
  let at = resolve(dir);
  for (;;) {
    const s = await stat(at).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' || e.code === 'ENOTDIR' ? undefined : e));
    if (s instanceof Error) throw new LoraStudioError('storage', `${flag} ${dir}: cannot look at ${at} (${errno(s)}); choose another folder.`, { file: dir });
    if (s === undefined) {
      if (dirname(at) === at) break;
      at = dirname(at);
      continue;
    }
    if (!s.isDirectory()) {
      const what = at === resolve(dir) ? `${dir} is a file, not a folder` : `${at} is a file, so the folder ${dir} cannot be created`;
      throw new LoraStudioError('bad-input', `${flag} ${dir}: ${what}; give a folder (it is created if missing).`, { file: dir });
    }
    try {
      await access(at, constants.W_OK);
    } catch (e) {
      throw new LoraStudioError('storage', `${flag} ${dir}: cannot write in ${at} (${errno(e)}); choose a folder you can write to.`, { file: dir });
    }
    return;
  }
}

/**
 * Write both PEFT files, each to a temporary name first and then renamed, so a failed write leaves an old
 * adapter intact and no half-written file: on failure the temporary files go, and the folder too if this
 * call created it.
 */
export async function saveAdapterDir(dir: string, adapter: AdapterConfig, weights: Map<string, Float32Array>, config: ModelConfig): Promise<void> {
  const out = writeAdapter(adapter, weights, adapterExpectation(config));
  const files: [string, string | Uint8Array][] = [['adapter_model.safetensors', out.weights], ['adapter_config.json', out.configJson]];
  const written: string[] = [], renamed: string[] = [];
  let created: string | undefined;
  try {
    created = await mkdir(dir, { recursive: true });
    for (const [name, data] of files) {
      await writeFile(join(dir, `${name}.tmp`), data);
      written.push(join(dir, `${name}.tmp`));
    }
    for (const [name] of files) {
      await rename(join(dir, `${name}.tmp`), join(dir, name));
      renamed.push(name);
    }
  } catch (e) {
    for (const tmp of written) await rm(tmp, { force: true });
    // A folder this call created held no adapter before: it goes whole.
    if (created) await rm(created, { recursive: true, force: true });
    // Two renames are not one atomic step: if only the first went through, say so rather than "nothing".
    const kept = created || renamed.length === 0 ? 'nothing was written' : `only ${renamed.join(', ')} was replaced, so the folder mixes two adapters`;
    throw new LoraStudioError('storage', `${dir}: cannot write the adapter there (${errno(e)}); ${kept}. Choose another --out.`, { file: dir, cause: e });
  }
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
