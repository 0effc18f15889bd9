// Is this training data text at all? A dropped .docx, .png or .zip must be refused by name, not tokenized
// as a few thousand replacement characters.
//
// Both checks look at the first SAMPLE bytes: the file's own bytes where we have them (the CLI), or the
// text a browser already decoded (File.text(), in the studio's worker), mapped back to bytes as far as
// UTF-8 allows. ASCII survives decoding as itself; a character above U+007F stands for 2 to 4 bytes ≥ 0x80,
// and U+FFFD for (usually) one byte ≥ 0x80 that was not UTF-8; both become HIGH, "some byte ≥ 0x80".
// Magic numbers are matched with HIGH standing for any byte ≥ 0x80, so a PNG is named a PNG either way.
//
// Verdicts, in order: safetensors' header; a known magic number; UTF-16 (a byte-order mark, or NULs at every
// other byte); any NUL byte (git's rule for "binary"); more than 10% control characters, or more than 30% of
// bytes not valid UTF-8 (a Latin-1 text file has a few percent, compressed or random data about half).
// This file reads nothing and parses nothing; dataset.ts and the CLI call it.

import { FormatError } from './errors';

const SAMPLE = 8000;
/** A byte ≥ 0x80 whose value decoding lost (the text path only). */
const HIGH = -1;

type Probe = number[];

/** In a magic number: any byte (a length field, a version). */
const ANY = -2;

interface Magic {
  what: string;
  /** Byte offset of the first byte (0 unless given). */
  at?: number;
  /** A string stands for its ASCII bytes, a number for one byte. */
  bytes: (number | string)[];
  /** Printable ASCII only, so it could begin a real text: it names the data only if the data is binary too. */
  weak?: true;
}

const ZIP = 'a ZIP archive (.docx, .xlsx and .zip are ZIP archives)';
const RIFF = (kind: string, what: string): Magic => ({ what, bytes: ['RIFF', ANY, ANY, ANY, ANY, kind] });

const MAGICS: Magic[] = [
  { what: 'a PNG image', bytes: [0x89, 'PNG\r\n', 0x1a, '\n'] },
  { what: 'a JPEG image', bytes: [0xff, 0xd8, 0xff] },
  { what: 'a GIF image', bytes: ['GIF8', ANY, 'a'], weak: true },
  RIFF('WEBP', 'a WebP image'),
  RIFF('WAVE', 'a WAV audio file'),
  RIFF('AVI ', 'an AVI video'),
  { what: 'a PDF document', bytes: ['%PDF-'] },
  { what: ZIP, bytes: ['PK', 3, 4] },
  { what: ZIP, bytes: ['PK', 5, 6] },
  { what: ZIP, bytes: ['PK', 7, 8] },
  { what: 'an old Word or Excel document (.doc, .xls)', bytes: [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1] },
  { what: 'a gzip archive', bytes: [0x1f, 0x8b] },
  { what: 'a bzip2 archive', bytes: ['BZh'], weak: true },
  { what: 'an xz archive', bytes: [0xfd, '7zXZ', 0] },
  { what: 'a 7-Zip archive', bytes: ['7z', 0xbc, 0xaf, 0x27, 0x1c] },
  { what: 'a zstd archive', bytes: [0x28, 0xb5, 0x2f, 0xfd] },
  { what: 'a tar archive', at: 257, bytes: ['ustar'] },
  { what: 'an ELF executable', bytes: [0x7f, 'ELF'] },
  { what: 'a Mach-O executable', bytes: [0xcf, 0xfa, 0xed, 0xfe] },
  { what: 'a Windows executable', bytes: ['MZ'], weak: true },
  { what: 'a WebAssembly module', bytes: [0, 'asm'] },
  { what: 'an SQLite database', bytes: ['SQLite format 3', 0] },
  { what: 'a GGUF model file', bytes: ['GGUF', ANY, 0, 0, 0] },
  { what: 'a NumPy array (.npy)', bytes: [0x93, 'NUMPY'] },
  { what: 'an MP4 or MOV video', bytes: [ANY, ANY, ANY, ANY, 'ftyp'] },
  { what: 'an MP3 audio file', bytes: ['ID3'], weak: true },
  { what: 'an Ogg audio file', bytes: ['OggS', 0] },
  { what: 'a FLAC audio file', bytes: ['fLaC'], weak: true },
];

function expand(m: Magic): number[] {
  return m.bytes.flatMap((b) => (typeof b === 'number' ? [b] : [...b].map((c) => c.charCodeAt(0))));
}

function matches(p: Probe, at: number, bytes: number[]): boolean {
  if (p.length < at + bytes.length) return false;
  return bytes.every((b, i) => b === ANY || p[at + i] === b || (b >= 0x80 && p[at + i] === HIGH));
}

/**
 * safetensors: an 8-byte little-endian header length (under 100 MB, so its top bytes are 0), then a JSON
 * header starting `{"`.
 */
function isSafetensors(p: Probe): boolean {
  return p.length >= 10 && p[8] === 0x7b && p[9] === 0x22 && p[4] === 0 && p[5] === 0 && p[6] === 0 && p[7] === 0;
}

/** What the sampled bytes are, if they are not UTF-8 text; `invalid` counts bytes that were not valid UTF-8. */
function describe(p: Probe, invalid: number): { what: string; utf16?: boolean } | undefined {
  if (p.length === 0) return undefined;
  if (isSafetensors(p)) return { what: 'a safetensors file (model weights)' };
  let nul = 0, control = 0, nulEven = 0;
  for (let i = 0; i < p.length; i++) {
    const b = p[i];
    if (b === 0) {
      nul++;
      if (i % 2 === 0) nulEven++;
    }
    if ((b >= 0 && b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d && b !== 0x0c) || b === 0x7f) control++;
  }
  const binary = nul > 0 || control > 0.1 * p.length || invalid > 0.3 * p.length;
  const magic = MAGICS.find((m) => (binary || !m.weak) && matches(p, m.at ?? 0, expand(m)));
  if (magic) return { what: magic.what };
  // UTF-16: a byte-order mark (FF FE or FE FF: never in UTF-8; seen only with the bytes, as decoding turns
  // both into U+FFFD), or mostly ASCII text with a NUL beside every character.
  const bom = (p[0] === 0xff && p[1] === 0xfe) || (p[0] === 0xfe && p[1] === 0xff);
  const half = Math.floor(p.length / 2);
  if (bom || (half >= 4 && (nulEven >= 0.9 * half || nul - nulEven >= 0.9 * half))) return { what: 'UTF-16 text', utf16: true };
  if (nul > 0) return { what: `binary data: ${nul} NUL byte${nul === 1 ? '' : 's'} in the first ${p.length}` };
  if (control > 0.1 * p.length) return { what: `binary data: ${Math.round((100 * control) / p.length)}% control characters` };
  if (invalid > 0.3 * p.length) return { what: `binary data: ${Math.round((100 * invalid) / p.length)}% of the bytes are not UTF-8 text` };
  return undefined;
}

/** The first bytes, and how many of them are not valid UTF-8 (bytes a non-fatal decoder turns into U+FFFD). */
function probeBytes(bytes: Uint8Array): [Probe, number] {
  const head = bytes.subarray(0, SAMPLE);
  // Drop a multi-byte sequence cut at the sample's end, so it is not counted as invalid.
  let end = head.length;
  if (bytes.length > SAMPLE) {
    let k = end - 1;
    while (k > end - 4 && k >= 0 && (head[k] & 0xc0) === 0x80) k--;
    if (k >= 0 && head[k] >= 0xc0) end = k;
  }
  const text = new TextDecoder().decode(head.subarray(0, end));
  let replaced = 0;
  for (const c of text) if (c === '\uFFFD') replaced++;
  // A real U+FFFD in the file (EF BF BD) is valid UTF-8: not counted.
  for (let i = 0; i + 2 < end; i++) if (head[i] === 0xef && head[i + 1] === 0xbf && head[i + 2] === 0xbd) replaced--;
  return [Array.from(head), Math.max(0, replaced)];
}

/** The text mapped back to its first bytes: ASCII as itself, everything else as HIGH, one per UTF-8 byte. */
function probeText(text: string): [Probe, number] {
  const p: Probe = [];
  let invalid = 0;
  for (const c of text.slice(0, SAMPLE)) {
    const code = c.codePointAt(0)!;
    if (code < 0x80) p.push(code);
    else if (c === '\uFFFD') {
      p.push(HIGH);
      invalid++;
    } else for (let n = code < 0x800 ? 2 : code < 0x10000 ? 3 : 4; n > 0; n--) p.push(HIGH);
    if (p.length >= SAMPLE) break;
  }
  return [p, invalid];
}

/** What the file is when it is not text ("a PNG image"), else undefined. */
export function binaryKind(bytes: Uint8Array): string | undefined {
  return describe(...probeBytes(bytes))?.what;
}

/** The same verdict from text a browser decoded as UTF-8 (U+FFFD where bytes were not UTF-8). */
export function binaryKindOfText(text: string): string | undefined {
  return describe(...probeText(text))?.what;
}

function refuse(fileName: string, found: { what: string; utf16?: boolean } | undefined): void {
  if (!found) return;
  if (found.utf16) throw new FormatError(fileName, `${fileName}: this is UTF-16 text; save it as UTF-8 (plain text or JSONL).`);
  throw new FormatError(fileName, `${fileName}: this looks like a binary file (${found.what}); use plain text or JSONL.`);
}

/** Throws a FormatError naming what the file is, when its bytes are not text. */
export function refuseBinary(bytes: Uint8Array, fileName: string): void {
  refuse(fileName, describe(...probeBytes(bytes)));
}

/** Throws a FormatError naming what the file was, when already-decoded text is not text. */
export function refuseBinaryText(text: string, fileName: string): void {
  refuse(fileName, describe(...probeText(text)));
}
