// src/io/binary.ts: training data that is not text is refused by name, from its bytes (the CLI) and from the
// text a browser decoded (the studio's worker), with the same words; text in any script is let through.

import { describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { binaryKind, binaryKindOfText, refuseBinary } from '../../src/io/binary';
import { parseDataset } from '../../src/io/dataset';
import { FormatError } from '../../src/io/errors';
import { writeSafetensors } from '../../src/io/safetensors';
import { mulberry32 } from '../reference/rng';

/** Bytes from a mix of byte values and ASCII strings. */
function bytes(...parts: (number | string | Uint8Array)[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === 'number') out.push(p);
    else if (typeof p === 'string') for (const c of p) out.push(c.charCodeAt(0));
    else out.push(...p);
  }
  return Uint8Array.from(out);
}

/** Deterministic noise, standing in for compressed image data or machine code. */
function noise(n: number, seed = 1): Uint8Array {
  const rand = mulberry32(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
}

const be32 = (v: number) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
const le16 = (v: number) => [v & 255, v >> 8];
const le32 = (v: number) => [v & 255, (v >> 8) & 255, (v >> 16) & 255, (v >>> 24) & 255];

const ZIP = 'a ZIP archive (.docx, .xlsx and .zip are ZIP archives)';

/** What each file would begin with, as the program that writes it writes it. */
const FILES: [string, Uint8Array, string][] = [
  // Signature, then the IHDR chunk of a 640×480 RGBA image, then compressed pixels.
  ['photo.png', bytes(0x89, 'PNG\r\n', 0x1a, '\n', ...be32(13), 'IHDR', ...be32(640), ...be32(480), 8, 6, 0, 0, 0, noise(500)), 'a PNG image'],
  ['photo.jpg', bytes(0xff, 0xd8, 0xff, 0xe0, 0, 16, 'JFIF', 0, 1, 1, noise(500)), 'a JPEG image'],
  ['anim.gif', bytes('GIF89a', ...le16(32), ...le16(32), 0xf7, 0, 0, noise(500)), 'a GIF image'],
  ['paper.pdf', bytes('%PDF-1.7\n%', 0xe2, 0xe3, 0xcf, 0xd3, '\n1 0 obj\n<< /Length 500 /Filter /FlateDecode >>\nstream\n', noise(500)), 'a PDF document'],
  // A Word document: a ZIP whose first entry is [Content_Types].xml, deflated.
  ['notes.docx', bytes('PK', 3, 4, ...le16(20), ...le16(6), ...le16(8), 0, 0, 0, 0, ...le32(0x1234abcd), ...le32(400), ...le32(1500), ...le16(19), ...le16(0), '[Content_Types].xml', noise(400)), ZIP],
  ['data.jsonl.gz', gzipSync(Buffer.from('{"text": "hello"}\n'.repeat(50))), 'a gzip archive'],
  ['model.safetensors', writeSafetensors({ 'lm_head.weight': { shape: [4, 4], data: new Float32Array(16).fill(0.5) } }), 'a safetensors file (model weights)'],
  ['a.out', bytes(0x7f, 'ELF', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...le16(2), ...le16(0x3e), ...le32(1), noise(500)), 'an ELF executable'],
  ['model.gguf', bytes('GGUF', ...le32(3), ...le32(291), 0, 0, 0, 0, noise(200)), 'a GGUF model file'],
  ['old.doc', bytes(0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, ...new Array(16).fill(0), noise(400)), 'an old Word or Excel document (.doc, .xls)'],
];

describe('binary files are named from their bytes and from their decoded text', () => {
  for (const [name, data, what] of FILES) {
    it(`${name}: ${what}`, () => {
      expect(binaryKind(data)).toBe(what);
      // The studio has only what File.text() decoded: U+FFFD for every byte sequence that is not UTF-8.
      expect(binaryKindOfText(new TextDecoder().decode(data))).toBe(what);
      expect(() => refuseBinary(data, name)).toThrow(new FormatError(name, `${name}: this looks like a binary file (${what}); use plain text or JSONL.`));
    });
  }

  it('data of no known format, by its NUL bytes', () => {
    const data = noise(4000, 7);
    const nuls = data.filter((b) => b === 0).length;
    expect(nuls).toBeGreaterThan(0);
    expect(binaryKind(data)).toBe(`binary data: ${nuls} NUL bytes in the first 4000`);
    // Decoding merges some invalid sequences, so the text has fewer "bytes" but every NUL.
    expect(binaryKindOfText(new TextDecoder().decode(data))).toMatch(new RegExp(`^binary data: ${nuls} NUL bytes in the first \\d+$`));
  });

  it('UTF-16 text is told to be saved as UTF-8', () => {
    const le = bytes(0xff, 0xfe, new Uint8Array(Buffer.from('{"text": "hello there"}\n'.repeat(20), 'utf16le')));
    const be = Uint8Array.from(Buffer.from('plain text, no byte-order mark\n'.repeat(20), 'utf16le')).reverse();
    for (const b of [le, be]) {
      expect(binaryKind(b)).toBe('UTF-16 text');
      expect(binaryKindOfText(new TextDecoder().decode(b))).toBe('UTF-16 text');
    }
    expect(() => refuseBinary(le, 'train.jsonl')).toThrow('train.jsonl: this is UTF-16 text; save it as UTF-8 (plain text or JSONL).');
  });

  it('control characters and bytes that are not UTF-8 count as binary above a share', () => {
    const controls = bytes('text'.repeat(100), ...Array.from({ length: 100 }, (_, i) => 1 + (i % 8)));
    expect(binaryKind(controls)).toBe('binary data: 20% control characters');
    const high = Uint8Array.from({ length: 1000 }, (_, i) => (i % 2 ? 0x61 : 0xe9));
    expect(binaryKind(high)).toBe('binary data: 50% of the bytes are not UTF-8 text');
    expect(binaryKindOfText(new TextDecoder().decode(high))).toBe('binary data: 50% of the bytes are not UTF-8 text');
  });
});

describe('text is text', () => {
  const texts: [string, string][] = [
    ['English prose', 'Call me Ishmael. Some years ago—never mind how long precisely—having little money.\n'.repeat(50)],
    ['JSONL in several scripts', ['{"prompt": "Bonjour, ça va ?", "completion": "Très bien."}', '{"text": "你好，世界"}', '{"text": "Привет 👋🏽"}', '{"text": "مرحبا"}'].join('\n').repeat(30)],
    ['tabs, form feeds and CRLF', 'a\tb\tc\r\n\fpage two\r\n'.repeat(100)],
    ['a text that begins like a weak magic number', 'GIF89a is the animated GIF format.\nMZ are the initials of the DOS executable format.\n'],
    ['a few stray U+FFFD from an earlier bad conversion', `caf\uFFFD ${'ordinary words '.repeat(100)}`],
    ['an empty file', ''],
  ];
  for (const [what, text] of texts) {
    it(`lets through ${what}`, () => {
      expect(binaryKind(new TextEncoder().encode(text))).toBeUndefined();
      expect(binaryKindOfText(text)).toBeUndefined();
    });
  }

  it('lets through a Latin-1 file with a few bytes that are not UTF-8 (not binary, only mis-encoded)', () => {
    const latin1 = Uint8Array.from(Buffer.from('Le café est très bon à Noël.\n'.repeat(40), 'latin1'));
    expect(binaryKind(latin1)).toBeUndefined();
    expect(binaryKindOfText(new TextDecoder().decode(latin1))).toBeUndefined();
  });
});

describe('parseDataset refuses decoded binary before it needs a tokenizer', () => {
  it('a PNG dropped in the studio', () => {
    const text = new TextDecoder().decode(FILES[0][1]);
    expect(() => parseDataset(text, 'photo.png', undefined, { seqLen: 16, pack: false, validationShare: 0, seed: 0 })).toThrow(
      new FormatError('photo.png', 'photo.png: this looks like a binary file (a PNG image); use plain text or JSONL.'),
    );
  });

  it('a Word document, whatever its name says', () => {
    const text = new TextDecoder().decode(FILES[4][1]);
    expect(() => parseDataset(text, 'notes.txt', undefined, { seqLen: 16, pack: false, validationShare: 0, seed: 0 })).toThrow(
      `notes.txt: this looks like a binary file (${ZIP}); use plain text or JSONL.`,
    );
  });
});
