// The dequant stem (shaders/dequant.wgsl via src/autograd/dequant.ts) against the CPU: bf16 and f16 against
// a decoding of the bits written here from the formats' definitions, NF4 (with and without double-quantized
// scales) and int8 against src/model/quant.ts's dequantizers and the float64 reference's values in
// tests/fixtures/quant. Every value must be the same float32 bit pattern (so −0 ≠ +0): the GPU does the same
// float32 operations in the same order as the CPU (one product for NF4, two for int8; for double-quantized
// scales a product then a sum, which the shader keeps from fusing into an FMA). Odd shapes: a numel that
// is odd (bf16/f16 packing, NF4 nibbles) or not a multiple of 4 (int8 bytes), rows not a multiple of 64, and
// row chunks of a table that start inside a word and off a 256-byte boundary.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { dequant, dequantForward, type StoredWeight } from '../../src/autograd/dequant';
import { Tape } from '../../src/autograd/tape';
import type { Gpu } from '../../src/gpu/gpu';
import { toBfloat16Bits, toFloat16Bits } from '../../src/io/float_encode';
import { storeWeight } from '../../src/model/gpu_weights';
import { dequantizeInt8, dequantizeNf4, quantizeInt8, quantizeNf4 } from '../../src/model/quant';
import { testGpu } from '../gpu/test-gpu';
import { mulberry32, randn } from '../reference/rng';

const dir = new URL('../fixtures/quant/', import.meta.url);
const manifest = JSON.parse(readFileSync(fileURLToPath(new URL('quant.json', dir)), 'utf8')) as {
  cases: Record<string, { rows?: number; cols?: number }>;
  arrays: Record<string, { offset: number; length: number }>;
};
const blob = new Uint8Array(readFileSync(fileURLToPath(new URL('quant.bin', dir)))).slice();
const fixture = (name: string) => new Float32Array(blob.buffer, manifest.arrays[name].offset, manifest.arrays[name].length);

/** The first index where two float32 arrays differ as bit patterns, with both values; undefined if none. */
function firstBitDifference(got: Float32Array, want: Float32Array): string | undefined {
  if (got.length !== want.length) return `lengths ${got.length} and ${want.length}`;
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length), b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `index ${i}: got ${got[i]} (0x${a[i].toString(16)}), want ${want[i]} (0x${b[i].toString(16)})`;
  return undefined;
}

/** bf16 bits → float32: the top half of its bit pattern. */
const bf16Value = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0];

/** binary16 bits → its value, from the definition in float64 (exact), then float32 (exact too). */
function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * 2 ** (e - 15) * (1 + m / 1024);
}

/** Values with every case a 16-bit format has: ±0, subnormals of both formats, the largest, ±Infinity, typical weights. */
function specials(n: number, seed: number): Float32Array {
  const rng = mulberry32(seed);
  const out = new Float32Array(randn(rng, n).map((v) => v * 0.05));
  const edge = [0, -0, 6e-8, -6e-8, 3e-5, 1e-40, -1e-39, 65504, -65504, Infinity, -Infinity, 1, -2.5, 1e-3];
  out.set(edge.slice(0, n));
  return out;
}

/** Runs the whole-weight dequant of `w` and reads its n values back. */
async function gpuDequant(gpu: Gpu, w: StoredWeight, n: number): Promise<Float32Array> {
  const out = gpu.buffer('dequant.test.out', 4 * n);
  const d = dequantForward(gpu, 'dequant.test', w, n, out);
  gpu.run([d]);
  const got = await gpu.read(out, n);
  gpu.releaseDispatches([d]);
  gpu.release(out);
  return got;
}

/** Rows [r0, r0 + n) of a (rows, cols) stored weight through the tape rule, as the LM head reads a table chunk. */
async function gpuRows(gpu: Gpu, w: StoredWeight, r0: number, n: number): Promise<Float32Array> {
  const tape = new Tape(gpu);
  const t = dequant(tape, 'dequant.test.rows', w, { r0, n });
  tape.keep(t);
  const program = tape.compile();
  gpu.run(program.dispatches);
  const got = await gpu.read(t.buffer!, t.numel);
  gpu.releaseDispatches(program.dispatches);
  gpu.release(t.buffer!);
  return got;
}

describe('dequant: bf16 and f16', () => {
  for (const [format, encode, decode] of [['bf16', toBfloat16Bits, bf16Value], ['f16', toFloat16Bits, f16Value]] as const) {
    it(`${format}: every value exact, an odd numel, and row chunks that start inside a word`, async () => {
      const gpu = await testGpu();
      const [rows, cols] = [37, 7]; // 259 values: odd, so the last word holds one value and zeros
      const data = specials(rows * cols, 7);
      const want = Float32Array.from(data, (v) => decode(encode(v)));
      const w = storeWeight(gpu, `dequant.test.${format}`, format, [rows, cols], data);
      expect(firstBitDifference(await gpuDequant(gpu, w, rows * cols), want)).toBeUndefined();
      // Row 5 starts at value 35 (inside word 17); row 19 at value 133, byte 266, past the first 256 bytes.
      for (const [r0, n] of [[5, 3], [19, 18], [36, 1]]) {
        expect(firstBitDifference(await gpuRows(gpu, w, r0, n), want.slice(r0 * cols, (r0 + n) * cols)), `rows ${r0}..${r0 + n}`).toBeUndefined();
      }
      gpu.release(w.data);
    });
  }
});

describe('dequant: NF4 and int8, as quant.ts dequantizes', () => {
  it('NF4 with float32 scales: the fixture\'s edge tensor (357 values, a partial odd block) bit for bit', async () => {
    const gpu = await testGpu();
    const input = fixture('nf4_edges.input');
    const q = quantizeNf4(input);
    if (q.scales.kind !== 'f32') throw new Error('expected float32 scales');
    const pad = (b: Uint8Array) => { const u = new Uint32Array(Math.ceil(b.length / 4)); new Uint8Array(u.buffer).set(b); return u; };
    const w: StoredWeight = {
      label: 'dequant.test.nf4', format: 'nf4', shape: [input.length],
      data: gpu.upload('dequant.test.nf4', pad(q.codes)), scales: gpu.upload('dequant.test.nf4.scales', q.scales.absmax),
    };
    const got = await gpuDequant(gpu, w, input.length);
    expect(firstBitDifference(got, dequantizeNf4(q))).toBeUndefined();
    expect(firstBitDifference(got, fixture('nf4_edges.dequant'))).toBeUndefined();
    for (const b of [w.data, w.scales!]) gpu.release(b);
  });

  it('NF4 with double-quantized scales: the fixture\'s 16 730 values (262 scales, two second-level blocks) bit for bit', async () => {
    const gpu = await testGpu();
    const input = fixture('nf4_double.input');
    const w = storeWeight(gpu, 'dequant.test.nf4_double', 'nf4', [input.length], input);
    const got = await gpuDequant(gpu, w, input.length);
    expect(firstBitDifference(got, dequantizeNf4(quantizeNf4(input, { double: true })))).toBeUndefined();
    expect(firstBitDifference(got, fixture('nf4_double.dequant'))).toBeUndefined();
    for (const b of [w.data, w.scales!, w.scaleCodes!]) gpu.release(b);
  });

  it('NF4 rows of 37 (blocks of 64 across rows) whole and as row chunks', async () => {
    const gpu = await testGpu();
    const [rows, cols] = [9, 37];
    const data = new Float32Array(randn(mulberry32(3), rows * cols).map((v) => v * 0.02));
    const w = storeWeight(gpu, 'dequant.test.nf4_rows', 'nf4', [rows, cols], data);
    const want = dequantizeNf4(quantizeNf4(data, { double: true }));
    expect(firstBitDifference(await gpuDequant(gpu, w, rows * cols), want)).toBeUndefined();
    expect(firstBitDifference(await gpuRows(gpu, w, 3, 5), want.slice(3 * cols, 8 * cols))).toBeUndefined();
    for (const b of [w.data, w.scales!, w.scaleCodes!]) gpu.release(b);
  });

  it('int8 per output channel: the fixture (zero row, huge value, ties) and a 5 × 13 weight (65 codes), bit for bit', async () => {
    const gpu = await testGpu();
    const { rows, cols } = manifest.cases.int8 as { rows: number; cols: number };
    const input = fixture('int8.input');
    const w = storeWeight(gpu, 'dequant.test.int8', 'int8', [rows, cols], input);
    const got = await gpuDequant(gpu, w, rows * cols);
    expect(firstBitDifference(got, dequantizeInt8(quantizeInt8(input, rows, cols)))).toBeUndefined();
    expect(firstBitDifference(got, fixture('int8.dequant'))).toBeUndefined();
    const odd = new Float32Array(randn(mulberry32(4), 65).map((v) => v * 0.1));
    const w2 = storeWeight(gpu, 'dequant.test.int8_odd', 'int8', [5, 13], odd);
    const want = dequantizeInt8(quantizeInt8(odd, 5, 13));
    expect(firstBitDifference(await gpuDequant(gpu, w2, 65), want)).toBeUndefined();
    expect(firstBitDifference(await gpuRows(gpu, w2, 2, 3), want.slice(26, 65))).toBeUndefined();
    for (const b of [w.data, w.scales!, w2.data, w2.scales!]) gpu.release(b);
  });
});
