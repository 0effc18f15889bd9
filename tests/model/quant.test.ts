// src/model/quant.ts against the float64 reference tests/fixtures/quant/make_quant.py: NF4 codes (packed, in
// bitsandbytes' nibble order), scales and double-quantized scales exactly equal, dequantized weights equal as
// float32 bit patterns; int8 per-channel codes and values the same; the storage each scheme reports equal to
// what the quantizers return; and the refusal of non-finite weights.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/io/errors';
import {
  dequantizeInt8, dequantizeNf4, dynamicMap, NF4_LEVELS, nf4Absmax, quantizedBytes, quantizeInt8, quantizeNf4,
  type Nf4Tensor,
} from '../../src/model/quant';
import { mulberry32, randn } from '../reference/rng';

const dir = new URL('../fixtures/quant/', import.meta.url);
const manifest = JSON.parse(readFileSync(fileURLToPath(new URL('quant.json', dir)), 'utf8')) as {
  cases: Record<string, { length?: number; offset?: number; rows?: number; cols?: number }>;
  arrays: Record<string, { dtype: string; offset: number; length: number }>;
};
const blob = readFileSync(fileURLToPath(new URL('quant.bin', dir)));
const data = new Uint8Array(blob.buffer, blob.byteOffset, blob.byteLength).slice(); // an aligned copy

function array(name: string): Float32Array | Uint8Array | Int8Array {
  const a = manifest.arrays[name];
  if (a === undefined) throw new Error(`quant.json has no array ${name}`);
  const Kind = { '<f4': Float32Array, '|u1': Uint8Array, '|i1': Int8Array }[a.dtype];
  if (Kind === undefined) throw new Error(`unexpected dtype ${a.dtype}`);
  return new Kind(data.buffer, a.offset, a.length);
}
const f32 = (name: string) => array(name) as Float32Array;

/** The first index where two float32 arrays differ as bit patterns (so −0 ≠ +0), with both values; -1 if none. */
function firstBitDifference(got: Float32Array, want: Float32Array): string | undefined {
  if (got.length !== want.length) return `lengths ${got.length} and ${want.length}`;
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length), b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `index ${i}: got ${got[i]}, reference ${want[i]}`;
  return undefined;
}

function firstCodeDifference(got: ArrayLike<number>, want: ArrayLike<number>): string | undefined {
  if (got.length !== want.length) return `lengths ${got.length} and ${want.length}`;
  for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) return `index ${i}: got ${got[i]}, reference ${want[i]}`;
  return undefined;
}

/** The storage a quantized tensor holds, counted from its arrays (plus 4 bytes for a double-quantized offset). */
function heldBytes(q: Nf4Tensor): number {
  const s = q.scales;
  return q.codes.byteLength + (s.kind === 'f32' ? s.absmax.byteLength : s.codes.byteLength + s.absmax.byteLength + 4);
}

describe('NF4 against the float64 reference', () => {
  it('uses bitsandbytes\' levels, and its CUDA kernel\'s decision thresholds as the midpoints', () => {
    // dQuantizeNF4's hard-coded thresholds (csrc/kernels.cu), lowest first, as float32.
    const kernel = [
      -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544, -0.23460740596055984,
      -0.13791173323988914, -0.045525018125772476, 0.03979014977812767, 0.1202552504837513, 0.2035212516784668,
      0.2920137718319893, 0.3893125355243683, 0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
    ];
    expect(firstBitDifference(f32('maps.nf4_bounds'), Float32Array.from(kernel))).toBeUndefined();
    expect([...NF4_LEVELS.subarray(0, 8)]).toEqual([-1, ...NF4_LEVELS.subarray(1, 7), 0]);
    expect(NF4_LEVELS[15]).toBe(1);
  });

  it('quantizes the edge cases exactly: typical, all-zero, one huge value, on and beside every midpoint, a partial odd block', () => {
    const input = f32('nf4_edges.input');
    const q = quantizeNf4(input);
    expect(q.length).toBe(357);
    expect(firstCodeDifference(q.codes, array('nf4_edges.codes'))).toBeUndefined();
    expect(q.scales.kind).toBe('f32');
    expect(firstBitDifference(nf4Absmax(q), f32('nf4_edges.absmax'))).toBeUndefined();
    expect(firstBitDifference(dequantizeNf4(q), f32('nf4_edges.dequant'))).toBeUndefined();

    // What the edge blocks mean, read off the codes: the zero block is all level 0 and dequantizes to +0;
    // the huge value takes level 1 and the small weights beside it round to 0; the odd length pads with 7.
    const codeAt = (i: number) => (i & 1 ? q.codes[i >> 1] & 15 : q.codes[i >> 1] >> 4);
    for (let i = 64; i < 128; i++) expect(codeAt(i)).toBe(7);
    expect(codeAt(128 + 17)).toBe(15);
    expect(new Set(Array.from({ length: 64 }, (_, i) => codeAt(128 + i))).size).toBeLessThanOrEqual(2);
    expect(q.codes[178] & 15).toBe(7);
    // Block 3 has absmax 1, so its weights are compared to the midpoints as they are: on a midpoint, the lower level.
    for (let k = 0; k < 15; k++) {
      expect(codeAt(192 + 1 + k), `midpoint ${k}`).toBe(k);
      expect(codeAt(192 + 16 + k), `just above midpoint ${k}`).toBe(k + 1);
      expect(codeAt(192 + 31 + k), `just below midpoint ${k}`).toBe(k);
    }
  });

  it('double-quantizes 262 scales in two blocks of 256 exactly, offset and all', () => {
    const input = f32('nf4_double.input');
    const q = quantizeNf4(input, { double: true });
    expect(firstCodeDifference(q.codes, array('nf4_double.codes'))).toBeUndefined();
    if (q.scales.kind !== 'double') throw new Error('expected double-quantized scales');
    expect(q.scales.offset).toBe(manifest.cases.nf4_double.offset);
    expect(firstCodeDifference(q.scales.codes, array('nf4_double.scale_codes'))).toBeUndefined();
    expect(firstBitDifference(q.scales.absmax, f32('nf4_double.absmax2'))).toBeUndefined();
    expect(firstBitDifference(nf4Absmax(q), f32('nf4_double.scales'))).toBeUndefined();
    expect(firstBitDifference(dequantizeNf4(q), f32('nf4_double.dequant'))).toBeUndefined();
  });

  it('builds the same signed 8-bit dynamic map, within an ulp of bitsandbytes\' float32 construction', () => {
    const map = dynamicMap();
    expect(firstBitDifference(map, f32('maps.dynamic'))).toBeUndefined();
    const bnb = f32('maps.dynamic_bnb_float32');
    let worst = 0;
    for (let i = 0; i < 256; i++) worst = Math.max(worst, Math.abs(map[i] - bnb[i]) / Math.max(Math.abs(bnb[i]), 1e-30));
    expect(worst, `largest relative difference ${worst}`).toBeLessThanOrEqual(2 ** -23);
    expect([map[0] < 0, map[127], map[255]]).toEqual([true, 0, 1]);
  });

  it('keeps a typical weight within half a level step of the block scale', () => {
    const w = Float32Array.from(randn(mulberry32(3), 4096, 0.02));
    const back = dequantizeNf4(quantizeNf4(w));
    let widest = 0;
    for (let k = 0; k < 15; k++) widest = Math.max(widest, NF4_LEVELS[k + 1] - NF4_LEVELS[k]);
    expect(widest).toBeCloseTo(1 - 0.6961928, 6);
    for (let b = 0; b < 64; b++) {
      const block = w.subarray(b * 64, b * 64 + 64);
      const amax = Math.max(...block.map(Math.abs));
      // No weight moves by more than half the widest gap between neighbouring levels (−1 to −0.696…), plus rounding.
      for (let i = 0; i < 64; i++) expect(Math.abs(back[b * 64 + i] - block[i])).toBeLessThanOrEqual((widest / 2 + 1e-6) * amax);
    }
  });
});

describe('int8 per output channel against the float64 reference', () => {
  it('quantizes rows exactly: typical, all-zero, one huge value, ties to even', () => {
    const { rows, cols } = manifest.cases.int8 as { rows: number; cols: number };
    const q = quantizeInt8(f32('int8.input'), rows, cols);
    expect(firstCodeDifference(q.codes, array('int8.codes'))).toBeUndefined();
    expect(firstBitDifference(q.absmax, f32('int8.absmax'))).toBeUndefined();
    expect(firstBitDifference(dequantizeInt8(q), f32('int8.dequant'))).toBeUndefined();
    // Row 3 holds k + 0.5 for k = −20..18 at scale exactly 1: each tie goes to the even neighbour.
    expect([...q.codes.subarray(3 * cols, 3 * cols + 4)]).toEqual([-20, -18, -18, -16]);
    expect([...q.codes.subarray(1 * cols, 2 * cols)].every((c) => c === 0)).toBe(true);
  });
});

describe('storage sizes for the memory plan', () => {
  it('reports exactly the bytes the quantizers hold', () => {
    for (const n of [1, 63, 64, 65, 357, 64 * 256, 64 * 257 + 3]) {
      const w = Float32Array.from(randn(mulberry32(n), n, 0.1));
      expect(quantizedBytes('nf4', [n]), `nf4, ${n}`).toBe(heldBytes(quantizeNf4(w)));
      expect(quantizedBytes('nf4-double', [n]), `nf4-double, ${n}`).toBe(heldBytes(quantizeNf4(w, { double: true })));
    }
    const q = quantizeInt8(new Float32Array(6 * 40), 6, 40);
    expect(quantizedBytes('int8', [6, 40])).toBe(q.codes.byteLength + q.absmax.byteLength);
  });

  it('gives QLoRA\'s bits per weight on a 4096 × 4096 projection', () => {
    const n = 4096 * 4096;
    expect((8 * quantizedBytes('nf4', [4096, 4096])) / n).toBe(4.5);
    expect((8 * quantizedBytes('nf4-double', [4096, 4096])) / n).toBeCloseTo(4 + 8 / 64 + 32 / (64 * 256), 5);
    expect((8 * quantizedBytes('int8', [4096, 4096])) / n).toBeCloseTo(8 + 32 / 4096, 9);
  });
});

describe('bad weights', () => {
  it.each([NaN, Infinity, -Infinity])('refuses a %s weight, naming the tensor and its index', (bad) => {
    const w = new Float32Array(130).fill(0.5);
    w[77] = bad;
    const name = 'model.layers.0.mlp.up_proj.weight';
    for (const quantize of [() => quantizeNf4(w, { name }), () => quantizeInt8(w, 2, 65, name)]) {
      expect(quantize).toThrow(FormatError);
      expect(quantize).toThrow(new RegExp(`^${name.replace(/\./g, '\\.')}: value 77 of 130 is ${String(bad)}, so it cannot be quantized`));
    }
  });
});
