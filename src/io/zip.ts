// Zip archives for the adapter download and import, over fflate (https://github.com/101arrowz/fflate):
// fflate writes the archive and inflates Deflate entries. What this file adds is what an import needs and
// fflate's unzipSync does not do: it trusts the central directory as it finds it (no signature, bounds or
// CRC-32 checks, no word about encryption), so readZip checks the container itself before handing any
// bytes on, and turns every problem into a FormatError or UnsupportedError that names the file and says
// how to get one that works. Callers only see writeZip and readZip.
//
// Read: stored and Deflate entries (`zip`, `zip -0`, macOS "Compress", Python's zipfile, the Hub's
// downloads). Refused: other compression methods, encryption, Zip64 and multi-disk archives; an adapter
// is two files far below 4 GiB, so none of these is worth code here.
// Written: stored (no compression): float weights barely compress, and a stored zip opens anywhere.
//
// Layout (APPNOTE.TXT 6.3.x, PKWARE's .ZIP File Format Specification; integers little-endian):
//   per file:  local header (30 bytes + name + extra) · data
//   then:      central directory (46 bytes + name + extra + comment per file) · end record (22 bytes + comment)
// The central directory is authoritative for sizes and CRC: writers that stream (general-purpose flag
// bit 3) put zeros in the local header and the real values in a data descriptor after the data.

import { inflateSync, zipSync } from 'fflate';
import { FormatError, throwerFor, UnsupportedError } from './errors.ts';

export interface ZipFile {
  name: string;
  bytes: Uint8Array;
}

const LOCAL_SIG = 0x04034b50;
const CENTRAL_SIG = 0x02014b50;
const END_SIG = 0x06054b50;
const ZIP64_END_LOCATOR_SIG = 0x07064b50;
const FLAG_ENCRYPTED = 1 << 0;
const FLAG_UTF8 = 1 << 11;
const METHOD_STORE = 0;
const METHOD_DEFLATE = 8;
/** Methods other writers offer, named so a refusal can say which one it met. */
const METHOD_NAMES: Record<number, string> = { 9: 'Deflate64', 12: 'bzip2', 14: 'LZMA', 93: 'Zstandard', 95: 'XZ' };
const MAX_U32 = 0xffffffff;
const UNIX = 3; // "version made by" host system, so unzip honours the external attributes below
const REGULAR_FILE_644 = (0o100644 << 16) >>> 0; // external attributes: a regular file, rw-r--r--

/** The fields readZip uses, as [byte offset, width in bytes] from a record's signature (APPNOTE 4.3.7, 4.3.12, 4.3.16). */
type Layout = Record<string, readonly [offset: number, width: 2 | 4]>;
const LOCAL_HEADER = { nameLength: [26, 2], extraLength: [28, 2] } as const satisfies Layout;
const CENTRAL_HEADER = {
  flags: [8, 2], method: [10, 2], crc: [16, 4], compressed: [20, 4], size: [24, 4],
  nameLength: [28, 2], extraLength: [30, 2], commentLength: [32, 2], diskStart: [34, 2], localOffset: [42, 4],
} as const satisfies Layout;
const END_RECORD = { disk: [4, 2], cdDisk: [6, 2], countHere: [8, 2], count: [10, 2], cdSize: [12, 4], cdOffset: [16, 4] } as const satisfies Layout;

/** The little-endian fields of `layout` in the record at byte `at`. */
function readFields<L extends Layout>(view: DataView, at: number, layout: L): { [K in keyof L]: number } {
  const out: Record<string, number> = {};
  for (const [field, [offset, width]] of Object.entries(layout)) {
    out[field] = width === 2 ? view.getUint16(at + offset, true) : view.getUint32(at + offset, true);
  }
  return out as { [K in keyof L]: number };
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zip, gzip and PNG use it; fflate does not export its own. */
export function crc32(bytes: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** A stored (uncompressed) zip of `files`, names in UTF-8 (with the language-encoding flag where not ASCII). */
export function writeZip(files: ZipFile[], options: { date?: Date } = {}): Uint8Array {
  const seen = new Set<string>();
  let total = 22;
  for (const f of files) {
    if (f.name === '' || f.name.startsWith('/') || f.name.includes('\\')) {
      throw new Error(`writeZip: ${JSON.stringify(f.name)} is not a relative, '/'-separated file name.`);
    }
    if (seen.has(f.name)) throw new Error(`writeZip: two files are named ${JSON.stringify(f.name)}.`);
    seen.add(f.name);
    const nameLength = new TextEncoder().encode(f.name).length;
    if (nameLength > 0xffff) throw new Error(`writeZip: the name ${JSON.stringify(f.name.slice(0, 40))}… is too long.`);
    if (f.bytes.length >= MAX_U32) throw new Error(`writeZip: ${f.name} is 4 GiB or more, which needs Zip64.`);
    total += 76 + 2 * nameLength + f.bytes.length;
  }
  // fflate writes no Zip64 records and would wrap the offsets silently, so the limits are checked here.
  if (files.length > 0xffff) throw new Error('writeZip: more than 65535 files needs Zip64.');
  if (total > MAX_U32) throw new Error('writeZip: the archive would be 4 GiB or more, which needs Zip64.');
  // A zip entry's MS-DOS timestamp covers 1980..2107; fflate refuses dates past 2099.
  const date = options.date ?? new Date();
  const mtime = new Date(Math.min(Math.max(date.getFullYear(), 1980), 2099), date.getMonth(), date.getDate(), date.getHours(), date.getMinutes(), date.getSeconds());
  // fflate tells files from folders with `instanceof Uint8Array`, so each view is re-made in this realm (no copy).
  const tree = Object.fromEntries(files.map((f) => [f.name, new Uint8Array(f.bytes.buffer, f.bytes.byteOffset, f.bytes.byteLength)]));
  return zipSync(tree, { level: 0, mtime, os: UNIX, attrs: REGULAR_FILE_644 });
}

/**
 * The files of a stored or Deflate zip, by name (directories skipped). A stored file is a view into
 * `bytes`, not a copy. Throws FormatError naming `fileName` for anything malformed, and UnsupportedError
 * for other compression methods and encrypted, Zip64 or multi-disk archives.
 */
export function readZip(input: Uint8Array | ArrayBuffer, fileName = 'archive.zip'): Map<string, Uint8Array> {
  const u8 = input instanceof Uint8Array ? input : new Uint8Array(input);
  const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const REDO = 'The file is damaged or was cut short: download or zip it again.';
  const ZIP64 = 'LoRA Studio does not read Zip64. Re-zip it with `zip` or import the two files directly.';
  const fail = throwerFor(FormatError, fileName);
  const unsupported = throwerFor(UnsupportedError, fileName);

  if (u8.length < 22) fail(`is only ${u8.length} bytes, too short to be a zip archive. ${REDO}`);
  // The end record is the last 22 bytes plus a comment of up to 65535 bytes; scan back for its signature.
  let end = -1;
  for (let i = u8.length - 22; i >= Math.max(0, u8.length - 22 - 0xffff); i--) {
    if (view.getUint32(i, true) === END_SIG && i + 22 + view.getUint16(i + 20, true) === u8.length) {
      end = i;
      break;
    }
  }
  if (end < 0) {
    const magic = u8.length >= 4 ? view.getUint32(0, true) : 0;
    fail(
      magic === LOCAL_SIG
        ? `has no end-of-archive record, so it was cut short. ${REDO}`
        : 'is not a zip archive (no end-of-archive record). Choose the .zip downloaded from LoRA Studio or the Hub, ' +
            'or import adapter_config.json and adapter_model.safetensors directly.',
    );
  }
  if (end >= 20 && view.getUint32(end - 20, true) === ZIP64_END_LOCATOR_SIG) unsupported(`is a Zip64 archive. ${ZIP64}`);
  const { disk, cdDisk, countHere, count, cdSize, cdOffset } = readFields(view, end, END_RECORD);
  if (disk !== 0 || cdDisk !== 0 || countHere !== count) {
    unsupported('is one part of a split (multi-disk) archive. Join the parts into one zip, or import the two files directly.');
  }
  if (count === 0xffff || cdSize === MAX_U32 || cdOffset === MAX_U32) unsupported(`is a Zip64 archive. ${ZIP64}`);
  if (cdOffset + cdSize > end) {
    fail(`its central directory (bytes ${cdOffset}..${cdOffset + cdSize}) runs past the end record at byte ${end}. ${REDO}`);
  }

  const files = new Map<string, Uint8Array>();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let at = cdOffset;
  for (let n = 0; n < count; n++) {
    if (at + 46 > cdOffset + cdSize || view.getUint32(at, true) !== CENTRAL_SIG) {
      fail(`central directory entry ${n + 1} of ${count} is missing or has a bad signature. ${REDO}`);
    }
    const { flags, method, crc, compressed, size, nameLength, extraLength, commentLength, diskStart, localOffset } = readFields(view, at, CENTRAL_HEADER);
    const next = at + 46 + nameLength + extraLength + commentLength;
    if (next > cdOffset + cdSize) fail(`central directory entry ${n + 1} runs past the end of the directory. ${REDO}`);
    const rawName = u8.subarray(at + 46, at + 46 + nameLength);
    let name: string;
    try {
      // Without the UTF-8 flag a name is officially CP437, but every writer we meet uses UTF-8 (Info-ZIP
      // on Unix, macOS) or plain ASCII, where the two agree.
      name = utf8.decode(rawName);
    } catch {
      name = String.fromCharCode(...rawName);
      if (flags & FLAG_UTF8) fail(`entry ${n + 1} says its name is UTF-8 but it is not. ${REDO}`);
    }
    at = next;
    const what = `entry ${JSON.stringify(name)}`;

    if (diskStart !== 0) unsupported(`${what} is on another disk of a split archive. Join the parts into one zip.`);
    if (flags & FLAG_ENCRYPTED) unsupported(`${what} is encrypted. Zip the adapter again without a password, or import the two files directly.`);
    if (compressed === MAX_U32 || size === MAX_U32 || localOffset === MAX_U32) unsupported(`${what} uses Zip64 sizes. ${ZIP64}`);
    if (method !== METHOD_STORE && method !== METHOD_DEFLATE) {
      unsupported(
        `${what} is compressed with ${METHOD_NAMES[method] ?? `method ${method}`}; LoRA Studio reads stored and Deflate zips. ` +
          'Re-zip it with plain `zip` (`zip adapter.zip adapter_config.json adapter_model.safetensors`) or import the two files directly.',
      );
    }
    if (method === METHOD_STORE && compressed !== size) {
      fail(`${what} is stored uncompressed but lists ${compressed} stored and ${size} real bytes. ${REDO}`);
    }

    if (localOffset + 30 > cdOffset || view.getUint32(localOffset, true) !== LOCAL_SIG) {
      fail(`${what} points at byte ${localOffset}, where there is no local file header. ${REDO}`);
    }
    const { nameLength: localName, extraLength: localExtra } = readFields(view, localOffset, LOCAL_HEADER);
    const start = localOffset + 30 + localName + localExtra;
    if (localName !== nameLength) fail(`${what} has a different name length in its local header. ${REDO}`);
    if (start + compressed > cdOffset) fail(`${what} (${compressed} bytes at byte ${start}) runs into the central directory. ${REDO}`);
    const stored = u8.subarray(start, start + compressed);

    if (name.endsWith('/')) {
      if (size !== 0) fail(`${what} is a directory but holds ${size} bytes. ${REDO}`);
      continue;
    }
    let data = stored;
    if (method === METHOD_DEFLATE) {
      try {
        data = inflateSync(stored, { out: new Uint8Array(size) });
      } catch (e) {
        fail(`${what} does not decompress (${(e as Error).message}). ${REDO}`);
      }
      if (data.length !== size) fail(`${what} decompresses to ${data.length} bytes, but the archive lists ${size}. ${REDO}`);
    }
    if (crc32(data) !== crc) fail(`${what} fails its CRC-32 check: its bytes were changed or damaged. ${REDO}`);
    if (files.has(name)) fail(`holds two files named ${JSON.stringify(name)}; keep one and zip it again.`);
    files.set(name, data);
  }
  return files;
}
