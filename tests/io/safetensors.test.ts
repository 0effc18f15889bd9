// Tests for src/io/safetensors.ts: round trips, dtype conversion against known bit patterns, a
// table of malformed files (each must fail with a typed error naming the file and the problem),
// and a seeded fuzz run that must only ever produce success or LoraStudioError.

import { describe, expect, it } from 'vitest';
import { FormatError, LoraStudioError, UnsupportedError } from '../../src/io/errors.ts';
import {
  bfloat16ToFloat32,
  float16ToFloat32,
  parseSafetensors,
  writeSafetensors,
} from '../../src/io/safetensors.ts';

/** A file from a raw header string and a data section; `length` overrides the u64 length field. */
function raw(header: string, data: Uint8Array | number = 0, length?: bigint): Uint8Array {
  const json = new TextEncoder().encode(header);
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

function u16Bytes(bits: number[]): Uint8Array {
  const out = new Uint8Array(bits.length * 2);
  const view = new DataView(out.buffer);
  bits.forEach((b, i) => view.setUint16(i * 2, b, true));
  return out;
}

describe('writeSafetensors → parseSafetensors', () => {
  it('round-trips F32 tensors, sorted by name, with metadata and an 8-byte-aligned data section', () => {
    const a = Float32Array.from({ length: 6 }, (_, i) => i * 0.5 - 1);
    const b = new Float32Array([Math.PI, -0, Infinity, 1e-40]);
    const bytes = writeSafetensors(
      [
        { name: 'zeta.weight', shape: [2, 3], data: a },
        { name: 'alpha.bias', shape: [4], data: b },
      ],
      { format: 'pt', note: 'ünïcode ✓' },
    );
    const file = parseSafetensors(bytes);
    expect(file.dataOffset % 8).toBe(0);
    expect([...file.tensors.keys()]).toEqual(['alpha.bias', 'zeta.weight']);
    expect(file.tensors.get('alpha.bias')).toEqual({ dtype: 'F32', shape: [4], begin: file.dataOffset, end: file.dataOffset + 16 });
    expect(file.readF32('zeta.weight')).toEqual(a);
    expect(file.readF32('alpha.bias')).toEqual(b);
    expect(Object.is(file.readF32('alpha.bias')[1], -0)).toBe(true);
    expect({ ...file.metadata }).toEqual({ format: 'pt', note: 'ünïcode ✓' });
    // The header text itself is padded with spaces, as the Python library writes it.
    const headerText = new TextDecoder().decode(bytes.subarray(8, file.dataOffset));
    expect(headerText.startsWith('{"__metadata__"')).toBe(true);
    expect(headerText.trimEnd().endsWith('}')).toBe(true);
    expect(headerText.slice(headerText.trimEnd().length)).toMatch(/^ {0,7}$/);
  });

  it('accepts a record of tensors, empty tensors and an empty file', () => {
    const bytes = writeSafetensors({ w: { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) }, e: { shape: [0, 3], data: new Float32Array(0) } });
    const file = parseSafetensors(bytes.buffer as ArrayBuffer);
    expect(file.readF32('w')).toEqual(new Float32Array([1, 2, 3, 4]));
    expect(file.readF32('e').length).toBe(0);
    expect(file.tensors.get('e')!.shape).toEqual([0, 3]);
    const empty = parseSafetensors(writeSafetensors([]));
    expect(empty.tensors.size).toBe(0);
  });

  it('reads from a Uint8Array that is an unaligned view into a larger buffer', () => {
    const bytes = writeSafetensors([{ name: 'x', shape: [3], data: new Float32Array([1.5, -2.25, 3]) }]);
    const big = new Uint8Array(bytes.length + 3);
    big.set(bytes, 3);
    const file = parseSafetensors(big.subarray(3));
    expect(file.readF32('x')).toEqual(new Float32Array([1.5, -2.25, 3]));
    expect(file.bytes('x').byteLength).toBe(12);
  });

  // Regression: readF32 copied with u8.slice(), which on a Node Buffer is a view of the same memory, then
  // built the typed array on the view's `.buffer`, i.e. from the start of the whole pool.
  it('reads every dtype from a Node Buffer that is a misaligned view into a larger (pooled) buffer', () => {
    const f32 = new Float32Array([1.5, -2.25, 3, 1e-3]);
    const f64 = new Float64Array([1 / 3, -7.5]);
    const i32 = new Int32Array([-7, 123456]);
    const i64 = new BigInt64Array([-5n, 1n << 40n]);
    const half = [0x3c00, 0xc000, 0x3555]; // F16 1, -2, 0.333...
    const bf = [0x3f80, 0xc040]; // BF16 1, -3
    const data = new Uint8Array([
      ...new Uint8Array(f32.buffer), ...new Uint8Array(f64.buffer), ...new Uint8Array(i32.buffer),
      ...new Uint8Array(i64.buffer), ...u16Bytes(half), ...u16Bytes(bf),
    ]);
    const header = JSON.stringify({
      f: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      d: { dtype: 'F64', shape: [2], data_offsets: [16, 32] },
      i: { dtype: 'I32', shape: [2], data_offsets: [32, 40] },
      l: { dtype: 'I64', shape: [2], data_offsets: [40, 56] },
      h: { dtype: 'F16', shape: [3], data_offsets: [56, 62] },
      b: { dtype: 'BF16', shape: [2], data_offsets: [62, 66] },
    });
    const file = raw(header, data);
    const want = {
      f: [...f32], d: [Math.fround(1 / 3), -7.5], i: [-7, 123456], l: [-5, 2 ** 40],
      h: [1, -2, float16ToFloat32(0x3555)], b: [1, -3],
    };
    // An odd offset (so F32/F64 data is misaligned in the pool) into a pool filled with a byte pattern
    // that reads as garbage if anything indexes from the pool's start.
    const pool = Buffer.alloc(file.length + 1000, 0x7f);
    const at = 101;
    pool.set(file, at);
    const view = pool.subarray(at, at + file.length);
    expect(view.byteOffset).toBe(at);
    const pooled = Buffer.from(file); // small Buffers come from Node's shared 8 KiB pool
    for (const input of [view, pooled]) {
      const parsed = parseSafetensors(input, 'view.safetensors');
      for (const [name, values] of Object.entries(want)) expect([...parsed.readF32(name)], name).toEqual(values);
      expect([...parsed.bytes('f')]).toEqual([...new Uint8Array(f32.buffer)]);
    }
  });

  it('reads a tensor whose data is not 4-byte aligned in the file (unpadded header)', () => {
    const header = '{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    expect(header.length % 4).not.toBe(0);
    const data = new Uint8Array(new Float32Array([0.25, -7]).buffer);
    expect(parseSafetensors(raw(header, data)).readF32('x')).toEqual(new Float32Array([0.25, -7]));
  });

  it('accepts trailing space padding and null metadata', () => {
    const file = parseSafetensors(raw('{"__metadata__":null,"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}     ', 4));
    expect(file.tensors.get('x')!.shape).toEqual([]);
    expect(file.readF32('x')).toEqual(new Float32Array([0]));
  });

  it('refuses to write tensors whose shape does not match the data, or reserved names', () => {
    expect(() => writeSafetensors([{ name: 'x', shape: [2, 2], data: new Float32Array(3) }])).toThrow(LoraStudioError);
    expect(() => writeSafetensors([{ name: '__metadata__', shape: [1], data: new Float32Array(1) }])).toThrow(/reserved/);
    expect(() =>
      writeSafetensors([
        { name: 'x', shape: [1], data: new Float32Array(1) },
        { name: 'x', shape: [1], data: new Float32Array(1) },
      ]),
    ).toThrow(/two tensors/);
  });
});

describe('dtype conversion', () => {
  const f16Cases: [number, number][] = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x7bff, 65504],
    [0x0001, 2 ** -24], // smallest subnormal, 5.96e-8
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x0400, 2 ** -14], // smallest normal
    [0x3555, 0.333251953125],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
    [0x0000, 0],
  ];

  it('converts F16 bit patterns exactly, including subnormals and infinities', () => {
    for (const [bits, value] of f16Cases) expect(float16ToFloat32(bits), `0x${bits.toString(16)}`).toBe(value);
    expect(float16ToFloat32(0x0001)).toBeCloseTo(5.96e-8, 9);
    expect(Object.is(float16ToFloat32(0x8000), -0)).toBe(true);
    expect(float16ToFloat32(0x7e00)).toBeNaN();
    expect(float16ToFloat32(0xfc01)).toBeNaN();

    const bits = [...f16Cases.map(([b]) => b), 0x8000, 0x7e00];
    const n = bits.length;
    const file = parseSafetensors(raw(`{"h":{"dtype":"F16","shape":[${n}],"data_offsets":[0,${2 * n}]}}`, u16Bytes(bits)), 'half.safetensors');
    const out = file.readF32('h');
    f16Cases.forEach(([, value], i) => expect(out[i]).toBe(Math.fround(value)));
    expect(Object.is(out[n - 2], -0)).toBe(true);
    expect(out[n - 1]).toBeNaN();
  });

  it('converts BF16 bit patterns', () => {
    const cases: [number, number][] = [
      [0x3f80, 1],
      [0x4049, 3.140625],
      [0xc000, -2],
      [0x7f80, Infinity],
      [0x0001, 2 ** -133], // bf16 keeps float32's subnormals
    ];
    for (const [bits, value] of cases) expect(bfloat16ToFloat32(bits)).toBe(Math.fround(value));
    const file = parseSafetensors(
      raw(`{"b":{"dtype":"BF16","shape":[${cases.length}],"data_offsets":[0,${2 * cases.length}]}}`, u16Bytes(cases.map(([b]) => b))),
    );
    expect([...file.readF32('b')]).toEqual(cases.map(([, v]) => Math.fround(v)));
  });

  it('converts F64, I32 and I64 to float32', () => {
    const f64 = new Uint8Array(new Float64Array([1 / 3, -1e300, 2.5]).buffer);
    const i32 = new Uint8Array(new Int32Array([-7, 123456]).buffer);
    const i64 = new Uint8Array(new BigInt64Array([-5n, 1n << 40n]).buffer);
    const data = new Uint8Array([...f64, ...i32, ...i64]);
    const header = JSON.stringify({
      d: { dtype: 'F64', shape: [3], data_offsets: [0, 24] },
      i: { dtype: 'I32', shape: [2], data_offsets: [24, 32] },
      l: { dtype: 'I64', shape: [2], data_offsets: [32, 48] },
    });
    const file = parseSafetensors(raw(header, data));
    expect([...file.readF32('d')]).toEqual([Math.fround(1 / 3), -Infinity, 2.5]);
    expect([...file.readF32('i')]).toEqual([-7, 123456]);
    expect([...file.readF32('l')]).toEqual([-5, 2 ** 40]);
  });
});

describe('malformed safetensors files', () => {
  const F = 'shard-00001.safetensors';
  const t = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
  const h = (obj: unknown) => JSON.stringify(obj);

  // [what, bytes, error class, phrase that must appear in the message]
  const cases: [string, Uint8Array, typeof LoraStudioError, RegExp][] = [
    ['truncated to 5 bytes', new Uint8Array(5), FormatError, /only 5 bytes, shorter than the 8-byte header length/],
    ['empty file', new Uint8Array(0), FormatError, /only 0 bytes/],
    ['header length past the end', raw('{}', 0, 1000n), FormatError, /says 1000 bytes, past the end of the file/],
    ['oversized header length', raw('{}', 0, 1n << 40n), FormatError, /larger than the 100 MB limit/],
    ['header length u64 max', raw('{}', 0, (1n << 64n) - 1n), FormatError, /larger than the 100 MB limit/],
    ['header not UTF-8', raw('{"\xff"}', 0).map((b, i) => (i === 10 ? 0xff : b)), FormatError, /not valid UTF-8/],
    ['non-JSON header', raw('{"a": '), FormatError, /not valid JSON/],
    ['header is an array', raw('[{"dtype":"F32"}]'), FormatError, /does not start with '\{'.*not a JSON object/],
    ['header starts with a space', raw(' {}'), FormatError, /does not start with '\{'/],
    ['empty header', raw(''), FormatError, /does not start with '\{'/],
    ['literal __proto__ key', raw('{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4), FormatError, /"__proto__" uses a reserved name/],
    ['constructor tensor name', raw(h({ constructor: t('F32', [1], [0, 4]) }), 4), FormatError, /"constructor" uses a reserved name/],
    ['entry not an object', raw(h({ w: 5 })), FormatError, /tensor "w" must be an object with dtype, shape and data_offsets/],
    ['entry lacks data_offsets', raw(h({ w: { dtype: 'F32', shape: [1] } }), 4), FormatError, /tensor "w" lacks data_offsets/],
    ['unknown dtype', raw(h({ w: t('F17', [1], [0, 4]) }), 4), FormatError, /unknown dtype "F17"/],
    ['dtype not a string', raw(h({ w: t(7 as unknown as string, [1], [0, 4]) }), 4), FormatError, /unknown dtype 7/],
    ['valid but unsupported dtype', raw(h({ w: t('U8', [4], [0, 4]) }), 4), UnsupportedError, /dtype U8, which LoRA Studio does not load/],
    ['shape with -1', raw(h({ w: t('F32', [-1], [0, 4]) }), 4), FormatError, /dimension 0 is -1, not a whole number/],
    ['shape with 1.5', raw(h({ w: t('F32', [2, 1.5], [0, 12]) }), 12), FormatError, /dimension 1 is 1.5, not a whole number/],
    ['shape with a string', raw(h({ w: t('F32', ['4'], [0, 16]) }), 16), FormatError, /dimension 0 is "4", not a whole number/],
    ['shape not an array', raw(h({ w: t('F32', 4, [0, 16]) }), 16), FormatError, /shape 4, which is not an array/],
    ['shape beyond 2^53', raw(h({ w: t('F32', [2 ** 60], [0, 4]) }), 4), FormatError, /not a whole number/],
    ['huge shape product', raw(h({ w: t('F32', [2 ** 52, 2 ** 52, 2 ** 52], [0, 4]) }), 4), FormatError, /needs more than 2\^53 bytes/],
    ['offsets reversed', raw(h({ w: t('F32', [1], [4, 0]) }), 4), FormatError, /end is before the begin \(offsets reversed\)/],
    ['offsets past the data', raw(h({ w: t('F32', [2], [0, 8]) }), 4), FormatError, /past the end of the data section \(4 bytes\)/],
    ['offsets not integers', raw(h({ w: t('F32', [1], [0, 4.5]) }), 4), FormatError, /offsets must be whole numbers/],
    ['offsets not a pair', raw(h({ w: t('F32', [1], [0]) }), 4), FormatError, /not a pair \[begin, end\]/],
    ['dtype × shape mismatch', raw(h({ 'model.norm.weight': t('F32', [32], [0, 100]) }), 100), FormatError, /"model.norm.weight" has data_offsets \[0, 100\] \(100 bytes\) but F32 × \[32\] needs 128 bytes/],
    ['overlapping tensors', raw(h({ a: t('F32', [2], [0, 8]), b: t('F32', [2], [4, 12]) }), 12), FormatError, /tensors "a" and "b" overlap/],
    ['identical ranges', raw(h({ a: t('F32', [2], [0, 8]), b: t('F32', [2], [0, 8]) }), 8), FormatError, /overlap/],
    ['gap between tensors', raw(h({ a: t('F32', [1], [0, 4]), b: t('F32', [1], [8, 12]) }), 12), FormatError, /data bytes 4..8 belong to no tensor/],
    ['gap at the start', raw(h({ a: t('F32', [1], [4, 8]) }), 8), FormatError, /data bytes 0..4 belong to no tensor/],
    ['trailing bytes after the last tensor', raw(h({ a: t('F32', [1], [0, 4]) }), 10), FormatError, /last 6 bytes of the data section belong to no tensor/],
    ['metadata with a number value', raw(h({ __metadata__: { epochs: 3 } })), FormatError, /"__metadata__" must map strings to strings, but "epochs" is 3/],
    ['metadata is an array', raw(h({ __metadata__: ['a'] })), FormatError, /"__metadata__" must be an object of strings/],
  ];

  it('has a broad table', () => expect(cases.length).toBeGreaterThanOrEqual(25));

  for (const [what, bytes, ErrorClass, phrase] of cases) {
    it(`refuses: ${what}`, () => {
      let caught: unknown;
      try {
        parseSafetensors(bytes, F);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ErrorClass);
      const err = caught as LoraStudioError;
      expect(err.file).toBe(F);
      expect(err.message.startsWith(`${F}: `)).toBe(true);
      expect(err.message).toMatch(phrase);
    });
  }

  it('names the file when a tensor is missing', () => {
    const file = parseSafetensors(writeSafetensors([]), F);
    expect(() => file.readF32('lm_head.weight')).toThrow(new RegExp(`${F}: has no tensor named "lm_head.weight"`));
  });
});

describe('fuzzing', () => {
  // mulberry32: tiny, seedable, good enough to spread mutations.
  function rng(seed: number) {
    return () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
      return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
    };
  }

  it('10,000 mutated files either parse and read, or throw LoraStudioError', () => {
    const header = JSON.stringify({
      __metadata__: { format: 'pt' },
      'layers.0.w': { dtype: 'F16', shape: [2, 3], data_offsets: [0, 12] },
      'layers.0.b': { dtype: 'BF16', shape: [3], data_offsets: [12, 18] },
      'norm.weight': { dtype: 'F32', shape: [2], data_offsets: [18, 26] },
      e: { dtype: 'F64', shape: [0], data_offsets: [26, 26] },
    });
    const base = raw(header, Uint8Array.from({ length: 26 }, (_, i) => (i * 37) & 0xff));
    expect(parseSafetensors(base).tensors.size).toBe(4);
    const headerEnd = 8 + header.length;

    const random = rng(20240601);
    const int = (n: number) => Math.floor(random() * n);
    const JSONISH = '0123456789{}[],:"-.eE ';
    let parsed = 0;
    let refused = 0;
    const strange: string[] = [];
    const start = performance.now();
    for (let iter = 0; iter < 10_000; iter++) {
      let bytes = base.slice();
      const mutations = 1 + int(3);
      for (let m = 0; m < mutations; m++) {
        switch (int(7)) {
          case 0: // flip a random bit anywhere
            if (bytes.length > 0) bytes[int(bytes.length)] ^= 1 << int(8);
            break;
          case 1: // truncate
            bytes = bytes.slice(0, int(bytes.length + 1));
            break;
          case 2: {
            // splice: cut a chunk out and paste it elsewhere
            const a = int(bytes.length + 1);
            const b = a + int(16);
            const chunk = bytes.slice(a, b);
            const rest = new Uint8Array([...bytes.subarray(0, a), ...bytes.subarray(b)]);
            const at = int(rest.length + 1);
            bytes = new Uint8Array([...rest.subarray(0, at), ...chunk, ...rest.subarray(at)]);
            break;
          }
          case 3: // overwrite header bytes with JSON-ish characters (digits, braces, quotes)
            for (let k = 1 + int(4); k > 0; k--) {
              const at = 8 + int(Math.max(1, headerEnd - 8));
              if (at < bytes.length) bytes[at] = JSONISH.charCodeAt(int(JSONISH.length));
            }
            break;
          case 4: // rewrite the length field
            if (bytes.length >= 8) new DataView(bytes.buffer).setUint32(int(2) * 4, random() < 0.5 ? int(headerEnd + 16) : int(2 ** 32), true);
            break;
          case 5: // random bytes anywhere
            for (let k = 1 + int(4); k > 0; k--) if (bytes.length > 0) bytes[int(bytes.length)] = int(256);
            break;
          case 6: {
            // change one digit of the header into another: the JSON stays valid, so this reaches
            // the shape, offset and coverage checks rather than the JSON parser
            const digits = [...bytes.subarray(8, headerEnd).keys()].filter((i) => bytes[8 + i] >= 0x30 && bytes[8 + i] <= 0x39);
            if (digits.length > 0) bytes[8 + digits[int(digits.length)]] = 0x30 + int(10);
            break;
          }
        }
      }
      try {
        const file = parseSafetensors(bytes, 'fuzz.safetensors');
        for (const name of file.tensors.keys()) file.readF32(name);
        parsed++;
      } catch (e) {
        if (e instanceof LoraStudioError && e.message.startsWith('fuzz.safetensors: ')) refused++;
        else if (strange.length < 5) strange.push(`${iter}: ${String(e)}`);
      }
    }
    const ms = performance.now() - start;
    expect(strange).toEqual([]);
    expect(parsed + refused).toBe(10_000);
    // Both outcomes must actually occur, or the mutations are not exercising the parser.
    expect(parsed).toBeGreaterThan(50);
    expect(refused).toBeGreaterThan(5000);
    expect(ms).toBeLessThan(10_000);
  }, 30_000);
});
