// Where a model's files come from, and reading them. A source is a flat set of named files (config.json,
// model.safetensors or shards, tokenizer.json, ...): a folder the user picked or dropped, the Hub (hub.ts),
// the embedded default model, or a folder on disk in Node (src/cli/files.ts). The readers below take each
// kind of file out of a source, bounded in size and validated, naming the file in every error; the page
// uses only the file pickers (filesFromFileList, filesFromDirectory).
//
// The weights are read one file at a time (forEachWeightFile), each handed on parsed and then let go, so a
// sharded checkpoint never has more than one shard's bytes in the loader's hands; what the reader converts out
// of a file counts too, for as long as it holds it (WeightReadStats.peakHeldBytes).
//
// This file does not fetch (hub.ts), does not touch the GPU, and does not make a model out of the files:
// src/model/load.ts does, in an order that reads the small files first. A source with a cache writes it
// only through `commit()`, which loadModel calls after everything has parsed, so a model that fails to load
// leaves nothing behind.

import { ConfigError, FormatError, LoraStudioError, UnsupportedError } from './errors.ts';
import { refuseQuantized } from './quantized_checkpoint.ts';
import { parseSafetensors, type SafetensorsFile } from './safetensors.ts';
import { loadTokenizer, type LoraTokenizer } from './tokenizer.ts';

/** Progress of one file: bytes so far, and the total and percent when the size is known. */
export interface ReadProgress {
  file: string;
  loaded: number;
  total?: number;
  percent?: number;
}

export type OnProgress = (p: ReadProgress) => void;

export interface ModelFiles {
  /** The folder name, path or Hub id, for messages. */
  readonly label: string;
  /** Every file name, relative to the model's root, '/'-separated. */
  list(): string[];
  has(name: string): boolean;
  read(name: string, onProgress?: OnProgress): Promise<Uint8Array>;
  /** How to name a file in messages: a path on disk, "folder/config.json", "org/model/config.json". */
  path(name: string): string;
  /** Persist what was read (a download cache); loadModel calls it only once the model has loaded. */
  commit?(): Promise<void>;
  /** Forget what was read and not committed; loadModel calls it when the model fails to load. */
  discard?(): Promise<void>;
}

/** The listing part of a ModelFiles whose names are known up front (a Hub listing, the embedded model), named `label/name` in messages. */
export function namedFiles(label: string, names: readonly string[]): Pick<ModelFiles, 'label' | 'list' | 'has' | 'path'> {
  const known = new Set(names);
  return { label, list: () => [...names], has: (name) => known.has(name), path: (name) => `${label}/${name}` };
}

// Generous bounds well above real files (SmolLM2's config.json is 1 KB, a 70B index 60 KB, Qwen2's
// tokenizer.json 7 MB), so that a wrong file picked by mistake fails fast instead of filling memory.
const MAX_CONFIG_BYTES = 1 << 20;
const MAX_JSON_BYTES = 16 << 20;
const MAX_TOKENIZER_BYTES = 256 << 20;

const INDEX = 'model.safetensors.index.json';

/**
 * A relative file name we are willing to open: '/'-separated, no empty, '.' or '..' segments, not
 * absolute, no backslashes or drive letters. Shard names come from files strangers wrote.
 */
export function isSafeFileName(name: string): boolean {
  if (name === '' || name.startsWith('/') || name.includes('\\') || name.includes('\0') || /^[A-Za-z]:/.test(name)) return false;
  return name.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

/** Reads a stream to one buffer, reporting progress per chunk (percent only when the total is known). */
export async function readStreamWithProgress(stream: ReadableStream<Uint8Array>, file: string, total: number | undefined, onProgress?: OnProgress): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    onProgress?.({ file, loaded, total, percent: total ? Math.min(100, (100 * loaded) / total) : undefined });
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * A source over files the browser already holds: a directory picker, a drop, an <input webkitdirectory>,
 * or bytes built in memory (the embedded default model, tests). Keys are paths relative to the model root.
 */
export function folderSource(files: Map<string, File | Blob | Uint8Array>, label = 'folder'): ModelFiles {
  const byName = new Map<string, File | Blob | Uint8Array>();
  for (const [name, data] of files) byName.set(name.replace(/^\.\//, ''), data);
  const path = (name: string) => `${label}/${name}`;
  return {
    label,
    list: () => [...byName.keys()].sort(),
    has: (name) => byName.has(name),
    path,
    read: async (name, onProgress) => {
      const data = byName.get(name);
      if (data === undefined) throw new FormatError(path(name), `${path(name)}: not found in the folder.`);
      if (data instanceof Uint8Array) {
        onProgress?.({ file: name, loaded: data.byteLength, total: data.byteLength, percent: 100 });
        return data;
      }
      try {
        return await readStreamWithProgress(data.stream(), name, data.size, onProgress);
      } catch (e) {
        throw new LoraStudioError('storage', `${path(name)}: the browser could not read it (${(e as Error).message}). Pick the folder again.`, { file: path(name), cause: e });
      }
    },
  };
}

/**
 * The files of an <input type="file" webkitdirectory> (or a multi-file drop), keyed by path inside the
 * chosen folder: webkitRelativePath is "chosen-folder/sub/file", so the shared first segment is dropped.
 */
export function filesFromFileList(list: Iterable<File>): Map<string, File> {
  const files = [...list];
  const rel = files.map((f) => (f.webkitRelativePath || f.name).split('/'));
  const top = rel[0]?.length > 1 ? rel[0][0] : undefined;
  const stripTop = top !== undefined && rel.every((p) => p.length > 1 && p[0] === top);
  const out = new Map<string, File>();
  files.forEach((f, i) => {
    const parts = stripTop ? rel[i].slice(1) : rel[i];
    if (parts.some((p) => p.startsWith('.'))) return; // .git, .cache and other hidden entries
    out.set(parts.join('/'), f);
  });
  return out;
}

/** The File System Access API's handles, structurally (showDirectoryPicker, DataTransferItem.getAsFileSystemHandle). */
export interface DirectoryHandleLike {
  kind: 'directory';
  name: string;
  values(): AsyncIterable<DirectoryHandleLike | { kind: 'file'; name: string; getFile(): Promise<File> }>;
}

/** Every file under a picked or dropped directory, hidden entries skipped, at most 4 levels deep. */
export async function filesFromDirectory(dir: DirectoryHandleLike, prefix = '', depth = 0): Promise<Map<string, File>> {
  const out = new Map<string, File>();
  for await (const entry of dir.values()) {
    if (entry.name.startsWith('.')) continue;
    if (entry.kind === 'file') out.set(prefix + entry.name, await entry.getFile());
    else if (depth < 4) for (const [k, v] of await filesFromDirectory(entry, `${prefix}${entry.name}/`, depth + 1)) out.set(k, v);
  }
  return out;
}

/** JSON.parse that also refuses "__proto__" keys: harmless in JSON.parse's output, dangerous once copied. */
function parseJsonObject(text: string, file: string, what: string, fail: (problem: string, cause?: unknown) => never): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text, (key, v) => {
      if (key === '__proto__') throw new Error(`a "__proto__" key, which no real ${what} has`);
      return v;
    });
  } catch (e) {
    return fail(`not valid JSON (${(e as Error).message}). Download the model's ${file.split('/').pop()} again.`, e);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(`must be a JSON object (got ${JSON.stringify(value)?.slice(0, 40)}).`);
  return value as Record<string, unknown>;
}

async function readText(source: ModelFiles, name: string, maxBytes: number, onProgress?: OnProgress): Promise<string> {
  const bytes = await source.read(name, onProgress);
  const file = source.path(name);
  if (bytes.byteLength > maxBytes) {
    throw new FormatError(file, `${file}: ${bytes.byteLength} bytes, more than the ${maxBytes >> 20} MB a ${name} can reasonably be: this is not the right file.`);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw new FormatError(file, `${file}: not UTF-8 text, so not a JSON file. Download it again.`, e);
  }
}

/** The shard names an index lists, validated: every name safe and present, every tensor in one shard. */
function parseIndex(text: string, source: ModelFiles): { shards: string[]; placement: Map<string, string> } {
  const file = source.path(INDEX);
  const fail = (problem: string, cause?: unknown): never => {
    throw new FormatError(file, `${file}: ${problem}`, cause);
  };
  const index = parseJsonObject(text, file, 'shard index', fail);
  const map = Object.hasOwn(index, 'weight_map') ? index.weight_map : undefined;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    fail('"weight_map" is missing or not an object of tensor name → shard file; the index cannot say where the weights are.');
  }
  const entries = Object.entries(map as Record<string, unknown>);
  if (entries.length === 0) fail('"weight_map" is empty: it lists no tensors.');
  const placement = new Map<string, string>();
  for (const [tensor, shard] of entries) {
    if (typeof shard !== 'string') fail(`"weight_map" puts ${JSON.stringify(tensor)} in ${JSON.stringify(shard)}, which is not a file name.`);
    if (!isSafeFileName(shard as string)) {
      fail(`"weight_map" names the shard ${JSON.stringify(shard)}, which is not a plain file name inside the model folder (no "..", no absolute paths); refusing to open it.`);
    }
    if (!(shard as string).endsWith('.safetensors')) fail(`"weight_map" names the shard ${JSON.stringify(shard)}; shards must be .safetensors files.`);
    placement.set(tensor, shard as string);
  }
  const shards = [...new Set(placement.values())].sort();
  for (const s of shards) {
    if (!source.has(s)) fail(`lists the shard ${JSON.stringify(s)}, which is not in ${source.label}. Download every shard the index lists.`);
  }
  return { shards, placement };
}

/**
 * config.json's text, once it is known to be a JSON object of reasonable size (parseModelConfig in
 * src/model/config.ts reads its fields).
 */
export async function readConfigText(source: ModelFiles, onProgress?: OnProgress): Promise<string> {
  const configFile = source.path('config.json');
  if (!source.has('config.json')) {
    const found = source.list();
    throw new ConfigError(
      configFile,
      `${configFile}: not found (found: ${found.slice(0, 8).join(', ') || 'no files'}). A Hugging Face model folder has config.json next to its weights.`,
    );
  }
  const configText = await readText(source, 'config.json', MAX_CONFIG_BYTES, onProgress);
  parseJsonObject(configText, configFile, 'config.json', (problem, cause) => {
    throw new ConfigError(configFile, `${configFile}: ${problem}`, cause);
  });
  return configText;
}

/** Which weight files hold the model: model.safetensors, else the shards its index lists, with where each tensor is. */
export interface WeightFiles {
  shards: string[];
  placement?: Map<string, string>;
}

/** The weight files to read: model.safetensors, else the shards of the index (read and validated here). */
export async function findWeightFiles(source: ModelFiles, onProgress?: OnProgress): Promise<WeightFiles> {
  // AutoGPTQ writes its settings beside config.json rather than into it; refuse before any weight is read.
  if (source.has('quantize_config.json')) refuseQuantized(source.path('quantize_config.json'), 'GPTQ (AutoGPTQ\'s quantize_config.json)');
  if (source.has('model.safetensors')) return { shards: ['model.safetensors'] };
  if (source.has(INDEX)) return parseIndex(await readText(source, INDEX, MAX_JSON_BYTES, onProgress), source);
  const found = source.list();
  const file = source.path('model.safetensors');
  if (found.some((f) => f.endsWith('.bin') || f.endsWith('.pt') || f.endsWith('.pth'))) {
    throw new UnsupportedError(
      file,
      `${file}: not found; ${source.label} has only PyTorch pickle weights (.bin/.pt), and LoRA Studio reads safetensors, which cannot run code. ` +
        'Pick a repository revision with model.safetensors, or convert the weights to safetensors.',
    );
  }
  throw new FormatError(
    file,
    `${file}: not found, and there is no ${INDEX} either (found: ${found.slice(0, 8).join(', ') || 'no files'}). Pick the folder that holds the model's weights.`,
  );
}

/**
 * What reading the weights held: how many files, their bytes together, the most raw file bytes held at once, and
 * the most bytes held at once all told: a file's raw bytes with what its reader converted and had not yet handed
 * on (HeldBytes). Streaming each converted tensor on to the GPU keeps that near one shard; keeping every converted
 * tensor until the end (a loader without a sink) makes it the whole model in float32.
 */
export interface WeightReadStats {
  files: number;
  totalBytes: number;
  peakBytes: number;
  peakHeldBytes: number;
}

/** The reader's part of the count: what it converts out of a file and still holds, and when it lets go of it. */
export interface HeldBytes {
  hold(bytes: number): void;
  release(bytes: number): void;
}

/**
 * Reads the weight files one at a time, in order, and hands each to `use` parsed (named by its path) before the
 * next is read; a file's bytes are let go once `use` returns, so `use` must copy what it keeps (readF32 does) and
 * count what it holds in `held`. A tensor in two files is refused as soon as the second is read, before `use`
 * sees it; once every file has been read, the index's placement of each tensor is checked against where it was
 * found.
 */
export async function forEachWeightFile(
  source: ModelFiles,
  { shards, placement }: WeightFiles,
  use: (file: SafetensorsFile, bytes: Uint8Array, held: HeldBytes) => void | Promise<void>,
  onProgress?: OnProgress,
): Promise<WeightReadStats> {
  const stats: WeightReadStats = { files: 0, totalBytes: 0, peakBytes: 0, peakHeldBytes: 0 };
  const foundIn = new Map<string, string>();
  let raw = 0, converted = 0;
  const count = () => {
    stats.peakBytes = Math.max(stats.peakBytes, raw);
    stats.peakHeldBytes = Math.max(stats.peakHeldBytes, raw + converted);
  };
  const held: HeldBytes = {
    hold: (bytes) => void ((converted += bytes), count()),
    release: (bytes) => void (converted -= bytes),
  };
  for (const shard of shards) {
    const name = source.path(shard);
    const bytes = await source.read(shard, onProgress);
    raw += bytes.byteLength;
    count();
    const file = parseSafetensors(bytes, name);
    for (const tensor of file.tensors.keys()) {
      const earlier = foundIn.get(tensor);
      if (earlier !== undefined) throw new FormatError(name, `${name}: has ${tensor}, which ${earlier} also has; a tensor must be in exactly one shard.`);
      foundIn.set(tensor, shard);
    }
    await use(file, bytes, held);
    raw -= bytes.byteLength;
    stats.files += 1;
    stats.totalBytes += bytes.byteLength;
  }
  if (placement !== undefined) checkPlacement(foundIn, placement, source.path(INDEX));
  return stats;
}

/**
 * The bytes of every weight file at once, each named by its path, checked as forEachWeightFile checks them: for a
 * caller that needs the stored bytes of the whole checkpoint together (loading a model streams instead).
 */
export async function readWeightFiles(source: ModelFiles, weightFiles: WeightFiles, onProgress?: OnProgress): Promise<{ name: string; bytes: Uint8Array }[]> {
  const files: { name: string; bytes: Uint8Array }[] = [];
  await forEachWeightFile(source, weightFiles, (file, bytes, held) => {
    held.hold(bytes.byteLength); // kept to the end
    files.push({ name: file.fileName, bytes });
  }, onProgress);
  return files;
}

/** The tokenizer, when tokenizer.json is present, with tokenizer_config.json and chat_template.jinja beside it. */
export async function readTokenizer(source: ModelFiles, onProgress?: OnProgress): Promise<LoraTokenizer | undefined> {
  if (!source.has('tokenizer.json')) return undefined;
  const json = await readText(source, 'tokenizer.json', MAX_TOKENIZER_BYTES, onProgress);
  const cfg = source.has('tokenizer_config.json') ? await readText(source, 'tokenizer_config.json', MAX_JSON_BYTES, onProgress) : undefined;
  // Newer transformers save the template beside tokenizer_config.json rather than inside it.
  const chatTemplate = source.has('chat_template.jinja') ? await readText(source, 'chat_template.jinja', MAX_CONFIG_BYTES, onProgress) : undefined;
  const names = { tokenizer: source.path('tokenizer.json'), config: source.path('tokenizer_config.json'), chatTemplate: source.path('chat_template.jinja') };
  return loadTokenizer(json, cfg, names, { chatTemplate });
}

/** Each tensor the index places must be in that shard (forEachWeightFile has already refused one in two shards). */
function checkPlacement(foundIn: Map<string, string>, placement: Map<string, string>, indexFile: string): void {
  for (const [tensor, shard] of placement) {
    if (foundIn.get(tensor) !== shard) {
      throw new FormatError(
        indexFile,
        `${indexFile}: says ${tensor} is in ${shard}, but ${foundIn.has(tensor) ? `it is in ${foundIn.get(tensor)}` : 'no shard has it'}. ` +
          'The index and the shards do not belong together: download them again.',
      );
    }
  }
}
