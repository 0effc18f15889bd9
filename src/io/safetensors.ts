// Reading and writing the safetensors format (https://github.com/huggingface/safetensors):
//   [u64 little-endian N][N bytes of JSON header, space-padded][data section]
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative to
// the data section) plus an optional "__metadata__" string→string map.
//
// This file is pure byte handling on ArrayBuffer / Uint8Array, so it runs unchanged in a tab, a
// Web Worker and Node. It is not a file loader (callers read files, fetch or IndexedDB) and not a
// model loader (which tensor names a Llama needs lives in src/model and src/io's model loading).
//
// Files come from strangers on the Hub, so parsing is strict and every failure is a typed
// LoraStudioError naming the file: the checks mirror the reference Rust implementation's
// `Metadata::validate` (contiguous, complete, in-bounds tensors) so that a file we accept is one
// PyTorch would also accept, and no header can make us allocate more than the file's own size.

import { FormatError, LoraStudioError, ShapeError, UnsupportedError } from './errors.ts';
import { quantizationOfTensors, refuseQuantized } from './quantized_checkpoint.ts';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32';

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range of the tensor's data, relative to the start of the file (not the data section). */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  fileName: string;
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
  /** Where the data section starts in the file: 8 + header length. */
  dataOffset: number;
  /** The tensor's raw little-endian bytes, a view into the parsed buffer (no copy). */
  bytes(name: string): Uint8Array;
  /** The tensor converted to a fresh Float32Array, whatever its stored dtype. */
  readF32(name: string): Float32Array;
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array;
}

const DTYPE_BYTES = new Map<string, number>([
  ['F32', 4],
  ['F16', 2],
  ['BF16', 2],
  ['F64', 8],
  ['I64', 8],
  ['I32', 4],
]);

// Valid safetensors dtypes that no Llama checkpoint we load needs; they get "unsupported" rather
// than "corrupt", because the file itself is fine.
const OTHER_SAFETENSORS_DTYPES = new Set([
  'BOOL', 'U8', 'I8', 'U16', 'I16', 'U32', 'U64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F4', 'F6_E2M3',
  'F6_E3M2', 'C64',
]);

// Same limit as the Rust implementation (MAX_HEADER_SIZE): a real header for a 400-layer model is
// a few MB, and a bigger length field means the file is not safetensors at all.
const MAX_HEADER_BYTES = 100_000_000;

// Names that would reach Object.prototype if anyone ever copied the header into a plain object.
// We never do (tensors live in a Map), but refusing them keeps that mistake impossible downstream.
const FORBIDDEN_NAMES = new Set(['__proto__', 'constructor', 'prototype']);

const REDOWNLOAD = 'The file is corrupt or was cut short: download it again.';

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Short JSON rendering of an untrusted value for error messages. */
function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function own(obj: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

export function parseSafetensors(
  input: Uint8Array | ArrayBuffer,
  fileName = 'model.safetensors',
): SafetensorsFile {
  const u8 = input instanceof Uint8Array ? input : new Uint8Array(input);
  const fail = (problem: string, cause?: unknown): never => {
    throw new FormatError(fileName, `${fileName}: ${problem}`, cause);
  };

  if (u8.byteLength < 8) {
    fail(
      `the file is only ${u8.byteLength} bytes, shorter than the 8-byte header length that starts every ` +
        `safetensors file. ${REDOWNLOAD}`,
    );
  }
  const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    fail(
      `the header length field says ${headerLength} bytes, larger than the 100 MB limit for a ` +
        `safetensors header: this is not a safetensors file, or its first bytes are damaged. ${REDOWNLOAD}`,
    );
  }
  const headerBytes = Number(headerLength);
  const dataOffset = 8 + headerBytes;
  if (dataOffset > u8.byteLength) {
    fail(
      `the header length field says ${headerBytes} bytes, past the end of the file (only ` +
        `${u8.byteLength - 8} bytes follow it). ${REDOWNLOAD}`,
    );
  }

  let text: string;
  try {
    // fatal: invalid UTF-8 is an error rather than U+FFFD; ignoreBOM keeps a BOM so the '{' check sees it.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(u8.subarray(8, dataOffset));
  } catch (e) {
    return fail(`the header is not valid UTF-8 text. ${REDOWNLOAD}`, e);
  }
  if (!text.startsWith('{')) {
    fail(
      `the header does not start with '{' (it starts with ${show(text.slice(0, 16))}), so it is not a JSON ` +
        `object of tensors: this is not a safetensors file. ${REDOWNLOAD}`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    return fail(`the header is not valid JSON (${(e as Error).message}). ${REDOWNLOAD}`, e);
  }
  if (!isPlainObject(header)) {
    return fail(`the header is JSON but not an object of tensors (got ${show(header)}). ${REDOWNLOAD}`);
  }

  const dataLength = u8.byteLength - dataOffset;
  const metadata: Record<string, string> = Object.create(null);
  const tensors = new Map<string, TensorInfo>();

  for (const name of Object.keys(header)) {
    const entry = header[name];
    if (name === '__metadata__') {
      if (entry === null) continue; // the Rust reader treats null as "no metadata"
      if (!isPlainObject(entry)) fail(`"__metadata__" must be an object of strings (got ${show(entry)}). ${REDOWNLOAD}`);
      for (const key of Object.keys(entry as Record<string, unknown>)) {
        const value = (entry as Record<string, unknown>)[key];
        if (typeof value !== 'string') {
          fail(`"__metadata__" must map strings to strings, but "${key}" is ${show(value)}. ${REDOWNLOAD}`);
        }
        if (FORBIDDEN_NAMES.has(key)) fail(`"__metadata__" has the reserved key "${key}", which is not allowed. ${REDOWNLOAD}`);
        metadata[key] = value as string;
      }
      continue;
    }
    const what = `tensor ${show(name)}`;
    if (FORBIDDEN_NAMES.has(name)) {
      fail(`${what} uses a reserved name that no real checkpoint has; refusing the file. ${REDOWNLOAD}`);
    }
    if (!isPlainObject(entry)) fail(`${what} must be an object with dtype, shape and data_offsets (got ${show(entry)}). ${REDOWNLOAD}`);
    const e = entry as Record<string, unknown>;
    const dtype = own(e, 'dtype');
    const shape = own(e, 'shape');
    const offsets = own(e, 'data_offsets');
    if (dtype === undefined || shape === undefined || offsets === undefined) {
      const missing = ['dtype', 'shape', 'data_offsets'].filter((k) => own(e, k) === undefined);
      fail(`${what} lacks ${missing.join(', ')}. ${REDOWNLOAD}`);
    }

    if (typeof dtype !== 'string' || !DTYPE_BYTES.has(dtype)) {
      const supported = [...DTYPE_BYTES.keys()].join(', ');
      if (typeof dtype === 'string' && OTHER_SAFETENSORS_DTYPES.has(dtype)) {
        // Packed integer weights are most often a quantized checkpoint: name its format rather than the dtype.
        const quantized = quantizationOfTensors(Object.keys(header));
        if (quantized !== undefined) refuseQuantized(fileName, quantized);
        throw new UnsupportedError(
          fileName,
          `${fileName}: ${what} has dtype ${dtype}, which LoRA Studio does not load (supported: ${supported}). ` +
            'Convert the checkpoint to F16, BF16 or F32 first.',
        );
      }
      fail(`${what} has unknown dtype ${show(dtype)} (supported: ${supported}). ${REDOWNLOAD}`);
    }
    const itemBytes = DTYPE_BYTES.get(dtype as string)!;

    if (!Array.isArray(shape)) fail(`${what} has shape ${show(shape)}, which is not an array. ${REDOWNLOAD}`);
    const dims = shape as unknown[];
    dims.forEach((d, i) => {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
        fail(`${what} has shape ${show(dims)}: dimension ${i} is ${show(d)}, not a whole number ≥ 0. ${REDOWNLOAD}`);
      }
    });

    if (!Array.isArray(offsets) || offsets.length !== 2) {
      fail(`${what} has data_offsets ${show(offsets)}, not a pair [begin, end]. ${REDOWNLOAD}`);
    }
    const [begin, end] = offsets as unknown[];
    if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || (begin as number) < 0 || (end as number) < 0) {
      fail(`${what} has data_offsets ${show(offsets)}: offsets must be whole numbers ≥ 0. ${REDOWNLOAD}`);
    }
    const b = begin as number;
    const en = end as number;
    if (en < b) fail(`${what} has data_offsets [${b}, ${en}]: the end is before the begin (offsets reversed). ${REDOWNLOAD}`);
    if (en > dataLength) {
      fail(`${what} has data_offsets [${b}, ${en}], past the end of the data section (${dataLength} bytes). ${REDOWNLOAD}`);
    }

    // Any zero dimension makes the tensor empty; otherwise stop multiplying once the size is past
    // 2^53, where doubles stop being exact and a huge shape could round into a false match.
    const ints = dims as number[];
    let count = ints.includes(0) ? 0 : 1;
    for (const d of ints) {
      if (count > Number.MAX_SAFE_INTEGER) break;
      count *= d;
    }
    const needed = count * itemBytes;
    if (needed !== en - b) {
      const need = needed > Number.MAX_SAFE_INTEGER ? 'more than 2^53 bytes' : `${needed} bytes`;
      fail(`${what} has data_offsets [${b}, ${en}] (${en - b} bytes) but ${dtype} × [${ints.join(', ')}] needs ${need}. ${REDOWNLOAD}`);
    }
    tensors.set(name, {
      dtype: dtype as SafetensorsDtype,
      shape: ints.map((d) => d || 0), // JSON allows -0, which would print oddly later
      begin: dataOffset + b,
      end: dataOffset + en,
    });
  }

  // The format requires the tensors to tile the data section exactly: no overlaps (two tensors
  // aliasing the same bytes) and no gaps (bytes hidden from every tensor).
  const ranges = [...tensors].sort(([, x], [, y]) => x.begin - y.begin || x.end - y.end);
  let covered = dataOffset;
  let previous = '';
  for (const [name, t] of ranges) {
    if (t.begin < covered) {
      fail(
        `tensors ${show(previous)} and ${show(name)} overlap (both use data bytes ${t.begin - dataOffset}..` +
          `${covered - dataOffset}). ${REDOWNLOAD}`,
      );
    }
    if (t.begin > covered) {
      fail(
        `data bytes ${covered - dataOffset}..${t.begin - dataOffset} belong to no tensor (a gap before ` +
          `${show(name)}). ${REDOWNLOAD}`,
      );
    }
    covered = t.end;
    previous = name;
  }
  if (covered !== u8.byteLength) {
    fail(
      `the last ${u8.byteLength - covered} bytes of the data section belong to no tensor (a gap at the end). ${REDOWNLOAD}`,
    );
  }

  const info = (name: string): TensorInfo => {
    const t = tensors.get(name);
    if (t === undefined) throw new FormatError(fileName, `${fileName}: has no tensor named ${show(name)}. Check that this file belongs to the model you chose.`);
    return t;
  };

  return {
    fileName,
    metadata,
    tensors,
    dataOffset,
    bytes: (name) => {
      const t = info(name);
      return u8.subarray(t.begin, t.end);
    },
    readF32: (name) => {
      const t = info(name);
      return toFloat32(hostOrderCopy(u8, t.begin, t.end, DTYPE_BYTES.get(t.dtype)!), t.dtype);
    },
  };
}

/**
 * Copies bytes into a fresh (hence aligned) buffer, in the host's byte order. Not `u8.slice()`: on a Node
 * Buffer (a Uint8Array subclass, e.g. from fs.readFile or a pooled Buffer.from) slice() returns a view,
 * not a copy, and its `.buffer` is the whole underlying pool, so the typed array built on it would read
 * from the pool's start instead of the tensor's.
 */
function hostOrderCopy(u8: Uint8Array, begin: number, end: number, itemBytes: number): ArrayBuffer {
  const copy = new Uint8Array(end - begin);
  copy.set(u8.subarray(begin, end));
  if (!HOST_IS_LITTLE_ENDIAN) swapBytes(copy, itemBytes);
  return copy.buffer;
}

/** Reverses each itemBytes-sized group in place: little-endian ↔ big-endian. */
function swapBytes(bytes: Uint8Array, itemBytes: number): void {
  for (let i = 0; i < bytes.length; i += itemBytes) bytes.subarray(i, i + itemBytes).reverse();
}

let f16Table: Float32Array | undefined;

/** IEEE 754 binary16 bits → number, including subnormals (exponent 0), ±Infinity and NaN. */
export function float16ToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** bfloat16 is the top half of a float32, so widening is a 16-bit shift. */
export function bfloat16ToFloat32(bits: number): number {
  const out = new Float32Array(1);
  new Uint32Array(out.buffer)[0] = (bits & 0xffff) << 16;
  return out[0];
}

function toFloat32(buffer: ArrayBuffer, dtype: SafetensorsDtype): Float32Array {
  switch (dtype) {
    case 'F32':
      return new Float32Array(buffer);
    case 'F64':
      return new Float32Array(new Float64Array(buffer));
    case 'I32':
      return new Float32Array(new Int32Array(buffer));
    case 'I64':
      return Float32Array.from(new BigInt64Array(buffer), (v) => Number(v));
    case 'F16': {
      // A 65536-entry table (256 KB, built once) is much faster than decoding each half.
      if (f16Table === undefined) {
        f16Table = new Float32Array(65536);
        for (let i = 0; i < 65536; i++) f16Table[i] = float16ToFloat32(i);
      }
      const src = new Uint16Array(buffer);
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = f16Table[src[i]];
      return out;
    }
    case 'BF16': {
      const src = new Uint16Array(buffer);
      const out = new Float32Array(src.length);
      const outBits = new Uint32Array(out.buffer);
      for (let i = 0; i < src.length; i++) outBits[i] = src[i] << 16;
      return out;
    }
  }
}

/** A tensor already in its stored form: little-endian bytes of `dtype` (a merged model keeps its base's dtype). */
export interface RawTensorToWrite {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  bytes: Uint8Array;
}

/**
 * Serialises F32 tensors the way the Python library does: tensors sorted by name, laid out back
 * to back, the header JSON space-padded to a multiple of 8 bytes so every tensor stays aligned.
 */
export function writeSafetensors(
  tensors: TensorToWrite[] | Record<string, { shape: number[]; data: Float32Array }>,
  metadata?: Record<string, string>,
): Uint8Array {
  const list: TensorToWrite[] = Array.isArray(tensors)
    ? tensors
    : Object.entries(tensors).map(([name, t]) => ({ name, shape: t.shape, data: t.data }));
  for (const t of list) {
    const count = t.shape.reduce((a, d) => a * d, 1);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) || count !== t.data.length) {
      throw new ShapeError(undefined, `Cannot write tensor ${show(t.name)}: shape ${show(t.shape)} does not hold its ${t.data.length} values.`);
    }
  }
  const raw = list.map((t) => {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    return { name: t.name, dtype: 'F32' as const, shape: t.shape, bytes: HOST_IS_LITTLE_ENDIAN ? bytes : swapped(bytes, 4) };
  });
  return writeSafetensorsRaw(raw, metadata);
}

function swapped(bytes: Uint8Array, itemBytes: number): Uint8Array {
  const copy = bytes.slice();
  swapBytes(copy, itemBytes);
  return copy;
}

/** writeSafetensors for tensors of any dtype, given as their stored little-endian bytes (copied as they are). */
export function writeSafetensorsRaw(list: RawTensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const seen = new Set<string>();
  for (const t of list) {
    if (t.name === '' || t.name === '__metadata__' || FORBIDDEN_NAMES.has(t.name)) {
      throw new LoraStudioError('bad-input', `Cannot write a tensor named ${show(t.name)}: the name is empty or reserved in safetensors.`);
    }
    if (seen.has(t.name)) {
      throw new LoraStudioError('bad-input', `Cannot write two tensors named ${show(t.name)} into one safetensors file.`);
    }
    seen.add(t.name);
    const count = t.shape.reduce((a, d) => a * d, 1);
    const itemBytes = DTYPE_BYTES.get(t.dtype);
    if (itemBytes === undefined || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) || count * itemBytes !== t.bytes.byteLength) {
      throw new ShapeError(undefined, `Cannot write tensor ${show(t.name)}: ${show(t.dtype)} × ${show(t.shape)} does not hold its ${t.bytes.byteLength} bytes.`);
    }
  }
  const sorted = [...list].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));

  // Null-prototype objects, so that no name can reach a prototype setter while we build the JSON.
  const header: Record<string, unknown> = Object.create(null);
  if (metadata !== undefined) {
    const meta: Record<string, string> = Object.create(null);
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new LoraStudioError('bad-input', `Cannot write metadata ${show(key)}: safetensors metadata values must be strings (got ${show(value)}).`);
      }
      meta[key] = value;
    }
    header.__metadata__ = meta;
  }
  let offset = 0;
  for (const t of sorted) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.byteLength] };
    offset += t.bytes.byteLength;
  }

  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + padded + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  let at = 8 + padded;
  for (const t of sorted) {
    out.set(t.bytes, at);
    at += t.bytes.byteLength;
  }
  return out;
}
