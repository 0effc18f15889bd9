// Quantized frozen base weights on the CPU: QLoRA's 4-bit NormalFloat (NF4, optionally with its scales
// quantized again, "double quantization") and an 8-bit per-output-channel absmax scheme, each with its exact
// inverse and its storage size. Pure functions over typed arrays: no GPU, no files. Uploading the packed
// bytes and reading them in the shaders is gpu_weights.ts's and the matmul shaders' business, not this file's.
//
// NF4 (Dettmers et al., QLoRA, https://arxiv.org/abs/2305.14314, §3) as bitsandbytes stores it
// (bitsandbytes/functional.py quantize_4bit, csrc/kernels.cu kQuantizeBlockwise / dQuantizeNF4):
//   the tensor is flattened and cut into blocks of 64 (the last block may be shorter);
//   absmax_b = max |w| over block b, kept in float32;
//   x = fround(w · fround(1 / max(absmax_b, 1e-38)))     (a float32 reciprocal, then a float32 product);
//   code = the NF4 level nearest to x, found against the float32 midpoints between neighbouring levels;
//          a value exactly on a midpoint takes the lower level (the kernel's `x > midpoint` tests);
//   two codes per byte, the even-indexed weight in the high nibble; an odd length pads the last low nibble
//   with code 7 (level 0, what bitsandbytes' zero padding quantizes to);
//   dequantized w = fround(level[code] · absmax_b).
// An all-zero block has absmax 0, every code 7 and dequantizes to +0: this is bitsandbytes' PyTorch backend
// (which clamps the absmax at 1e-38 before the reciprocal); its CUDA kernel multiplies by 1/0 and writes
// code 0 instead, which dequantizes to −1·0 = −0. Both are the same zero weight. (Where the two backends part
// otherwise we follow the CUDA kernel: a short last block is scaled by the reciprocal too, where the PyTorch
// backend divides.)
//
// Double quantization (QLoRA §3, bitsandbytes quantize_4bit with compress_statistics=True): the float32
// absmax vector (one per 64 weights) loses its mean, offset = fround(mean), and the centred scales
// fround(absmax − offset) are quantized blockwise like the weights, in blocks of 256, to 8 bits of
// bitsandbytes' signed dynamic map (create_dynamic_map), same nearest-level rule (the PyTorch backend's
// bucketize; the CUDA kernel's binary search sends a value exactly on a midpoint to the even index). Dequantized:
//   absmax_b = fround(fround(map[code_b] · absmax2_{b/256}) + offset).
// We take the mean exactly (float64 sum in index order) and round it once; bitsandbytes takes a float32
// mean on its device, whose summation order is the device's. The offset is stored, so this changes nothing
// but the offset's last bits.
//
// Int8 per output channel (bitsandbytes' int8_vectorwise_quant / int8_vectorwise_dequant, without LLM.int8's
// outlier threshold): per row of a (rows, cols) weight, absmax_r = max |w|, scale = fround(127 / absmax_r),
// code = round-half-to-even(fround(w · scale)) in [−127, 127] (an all-zero row: codes 0);
// dequantized w = fround(fround(code · absmax_r) · fround(1/127)).
//
// The Python reference tests/fixtures/quant/make_quant.py follows this definition in float64 with the same
// float32 rounding points; tests/model/quant.test.ts holds the codes to it exactly.

import { FormatError } from '../io/errors';

/** The 16 NormalFloat levels, as bitsandbytes defines them (functional.py get_4bit_type('nf4'), float32). */
export const NF4_LEVELS: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** Weights per NF4 block (one float32 absmax each). */
export const NF4_BLOCK = 64;
/** Scales per second-level block of double quantization (one float32 absmax each). */
export const NF4_SCALE_BLOCK = 256;
/** The code of level 0. */
const NF4_ZERO = 7;
/** The smallest absmax whose reciprocal is taken (bitsandbytes' clamp), so an all-zero block scales by a finite number. */
const MIN_ABSMAX = Math.fround(1e-38);
const INV_127 = Math.fround(1 / 127);

/** The float32 midpoints between neighbouring levels of a sorted float32 map: level k ↔ (bound[k−1], bound[k]]. */
function midpoints(levels: Float32Array): Float32Array {
  const out = new Float32Array(levels.length - 1);
  for (let k = 0; k < out.length; k++) out[k] = (levels[k] + levels[k + 1]) / 2;
  return out;
}

/** How many bounds lie strictly below x: the nearest level's index, a tie going to the lower level. */
function nearest(bounds: Float32Array, x: number): number {
  let lo = 0, hi = bounds.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x > bounds[mid]) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const NF4_BOUNDS = midpoints(NF4_LEVELS);

let dynamicMapCache: Float32Array | undefined;

/**
 * bitsandbytes' signed 8-bit dynamic map (functional.py create_dynamic_map(signed=True), after Dettmers,
 * https://arxiv.org/abs/1511.04561): for each exponent e = 0..6, the 2^e means of neighbouring points of
 * linspace(0.1, 1, 2^e + 1), times ±10^(e−6); then 0 and 1; sorted. Each level is computed in float64 and
 * rounded once to float32 (bitsandbytes builds the linspace in float32, which moves some levels by an ulp:
 * tests/model/quant.test.ts measures the difference against its table).
 */
export function dynamicMap(): Float32Array {
  if (dynamicMapCache !== undefined) return dynamicMapCache;
  const powers = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1];
  const levels: number[] = [0, 1];
  powers.forEach((power, e) => {
    const intervals = 2 ** e;
    for (let j = 0; j < intervals; j++) {
      const mean = 0.1 + (0.9 * (2 * j + 1)) / (2 * intervals);
      levels.push(Math.fround(power * mean), Math.fround(-power * mean));
    }
  });
  dynamicMapCache = Float32Array.from(levels.sort((a, b) => a - b));
  return dynamicMapCache;
}

let dynamicBoundsCache: Float32Array | undefined;
const dynamicBounds = (): Float32Array => (dynamicBoundsCache ??= midpoints(dynamicMap()));

/** Scales quantized to 8 bits (the second level of NF4's double quantization). */
export interface QuantizedScales {
  /** (ceil(n / 256)) one code of dynamicMap() per scale. */
  codes: Uint8Array;
  /** (ceil(n / 256)) float32 absmax of each block of 256 centred scales. */
  absmax: Float32Array;
  /** The float32 mean subtracted before quantizing, added back after. */
  offset: number;
}

export interface Nf4Tensor {
  /** How many weights (the flattened tensor's length). */
  length: number;
  /** (ceil(length / 2)) two 4-bit codes per byte, the even-indexed weight in the high nibble. */
  codes: Uint8Array;
  /** One float32 absmax per block of 64 weights (ceil(length / 64)), or those absmax quantized again. */
  scales: { kind: 'f32'; absmax: Float32Array } | ({ kind: 'double' } & QuantizedScales);
}

export interface Int8Tensor {
  rows: number;
  cols: number;
  /** (rows, cols) codes in [−127, 127]. */
  codes: Int8Array;
  /** (rows) float32 absmax of each row. */
  absmax: Float32Array;
}

/** Refuses NaN and ±Infinity: one of them in a block would decide every code of that block. */
function checkFinite(w: Float32Array, name: string): void {
  for (let i = 0; i < w.length; i++) {
    if (!Number.isFinite(w[i])) {
      throw new FormatError(
        name,
        `${name}: value ${i} of ${w.length} is ${w[i]}, so it cannot be quantized (a block's scale would be meaningless). ` +
          'The checkpoint is damaged: download it again, or load this model unquantized.',
      );
    }
  }
}

/** Blockwise absmax quantization of w to the sorted map whose midpoints are `bounds`: codes and per-block absmax. */
function quantizeBlocks(w: Float32Array, block: number, bounds: Float32Array): { codes: Uint8Array; absmax: Float32Array } {
  const blocks = Math.ceil(w.length / block);
  const codes = new Uint8Array(w.length);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const start = b * block, end = Math.min(w.length, start + block);
    let amax = 0;
    for (let i = start; i < end; i++) amax = Math.max(amax, Math.abs(w[i]));
    absmax[b] = amax;
    const inv = Math.fround(1 / Math.max(amax, MIN_ABSMAX));
    for (let i = start; i < end; i++) codes[i] = nearest(bounds, Math.fround(w[i] * inv));
  }
  return { codes, absmax };
}

/** The second level of double quantization: centre the float32 scales on their mean, then 8-bit blockwise codes. */
export function quantizeScales(absmax: Float32Array): QuantizedScales {
  let sum = 0;
  for (let i = 0; i < absmax.length; i++) sum += absmax[i];
  const offset = absmax.length === 0 ? 0 : Math.fround(sum / absmax.length);
  const centred = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) centred[i] = absmax[i] - offset;
  return { ...quantizeBlocks(centred, NF4_SCALE_BLOCK, dynamicBounds()), offset };
}

/** (n) the float32 scales back from their 8-bit codes. */
export function dequantizeScales(q: QuantizedScales): Float32Array {
  const map = dynamicMap();
  const out = new Float32Array(q.codes.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(map[q.codes[i]] * q.absmax[Math.floor(i / NF4_SCALE_BLOCK)]) + q.offset;
  return out;
}

/**
 * NF4 codes of a flattened float32 tensor, blocks of 64, with the scales double-quantized when `double`.
 * `name` names the tensor in the refusal of a non-finite value.
 */
export function quantizeNf4(w: Float32Array, options: { double?: boolean; name?: string } = {}): Nf4Tensor {
  checkFinite(w, options.name ?? 'weight');
  const { codes: byWeight, absmax } = quantizeBlocks(w, NF4_BLOCK, NF4_BOUNDS);
  const codes = new Uint8Array(Math.ceil(w.length / 2));
  for (let i = 0; i < codes.length; i++) {
    const low = 2 * i + 1 < w.length ? byWeight[2 * i + 1] : NF4_ZERO;
    codes[i] = (byWeight[2 * i] << 4) | low;
  }
  return { length: w.length, codes, scales: options.double ? { kind: 'double', ...quantizeScales(absmax) } : { kind: 'f32', absmax } };
}

/** (ceil(length / 64)) the float32 absmax each NF4 block is dequantized with. */
export function nf4Absmax(q: Nf4Tensor): Float32Array {
  return q.scales.kind === 'f32' ? q.scales.absmax : dequantizeScales(q.scales);
}

/** (length) the weights an NF4 tensor stands for: level · absmax of its block, in float32. */
export function dequantizeNf4(q: Nf4Tensor): Float32Array {
  const absmax = nf4Absmax(q);
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const byte = q.codes[i >> 1];
    const code = i & 1 ? byte & 0x0f : byte >> 4;
    out[i] = NF4_LEVELS[code] * absmax[Math.floor(i / NF4_BLOCK)];
  }
  return out;
}

/** x rounded to the nearest integer, a tie to the even one (CUDA's __float2int_rn, torch.round). */
function roundHalfEven(x: number): number {
  const r = Math.round(x); // halves go up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Int8 codes of a (rows, cols) float32 weight, one absmax per row (per output channel of a Linear). */
export function quantizeInt8(w: Float32Array, rows: number, cols: number, name = 'weight'): Int8Tensor {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0 || rows * cols !== w.length) {
    throw new Error(`quantizeInt8: ${name} has ${w.length} values, not ${rows} × ${cols}`);
  }
  checkFinite(w, name);
  const codes = new Int8Array(w.length);
  const absmax = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = w.subarray(r * cols, (r + 1) * cols);
    let amax = 0;
    for (let i = 0; i < cols; i++) amax = Math.max(amax, Math.abs(row[i]));
    absmax[r] = amax;
    if (amax === 0) continue; // 127 / 0 would make every code NaN; the row is zeros
    const scale = Math.fround(127 / amax);
    for (let i = 0; i < cols; i++) codes[r * cols + i] = Math.max(-127, Math.min(127, roundHalfEven(Math.fround(row[i] * scale))));
  }
  return { rows, cols, codes, absmax };
}

/** (rows, cols) the weights an int8 tensor stands for: code · absmax · (1/127), in float32 as bitsandbytes computes it. */
export function dequantizeInt8(q: Int8Tensor): Float32Array {
  const out = new Float32Array(q.codes.length);
  for (let r = 0; r < q.rows; r++) {
    const amax = q.absmax[r];
    for (let i = r * q.cols; i < (r + 1) * q.cols; i++) out[i] = Math.fround(q.codes[i] * amax) * INV_127;
  }
  return out;
}

/** The quantized kinds of frozen base weight: NF4 with float32 scales, NF4 with double-quantized scales, int8. */
export type QuantScheme = 'nf4' | 'nf4-double' | 'int8';

/**
 * Bytes a weight of `shape` takes in `scheme`, scales included (what quantizeNf4 / quantizeInt8 return, byte
 * for byte), for the memory plan. Per weight that is 4.5 bits for nf4, about 4.127 for nf4-double (QLoRA's
 * 0.127 bits of constants) and 8 + 32/cols for int8. The 256-entry dynamic map is shared, so not counted.
 */
export function quantizedBytes(scheme: QuantScheme, shape: readonly number[]): number {
  const n = shape.reduce((a, d) => a * d, 1);
  const blocks = Math.ceil(n / NF4_BLOCK);
  switch (scheme) {
    case 'nf4':
      return Math.ceil(n / 2) + 4 * blocks;
    case 'nf4-double':
      return Math.ceil(n / 2) + blocks + 4 * Math.ceil(blocks / NF4_SCALE_BLOCK) + 4;
    case 'int8':
      if (shape.length !== 2) throw new Error(`quantizedBytes: int8 is per output channel of a (rows, cols) weight, not shape [${shape}]`);
      return n + 4 * shape[0];
  }
}
