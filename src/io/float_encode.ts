// Float values written back as the bytes of a floating-point safetensors dtype (F32, F16, BF16), each
// value rounded once, to nearest with ties to even (IEEE 754's default, and what PyTorch's .to(dtype) does).
// Decoding is safetensors.ts's (readF32); this file only encodes, for writers that compute in float64 and
// store in the base model's own dtype (the merged model, model/merge.ts).
//
// One rounding from float64 without a second one: the value goes to float32 first by round-to-odd (the
// float32 neighbour whose last mantissa bit is 1 when the value lies strictly between two), then to the
// 16-bit format by round-to-nearest-even. Float32 keeps ≥ 2 more mantissa bits than F16 (10) and BF16 (7)
// across both formats' ranges, subnormals included, so round-to-odd then round-to-nearest equals rounding
// the float64 value directly (Boldo & Melquiond, "Emulation of FMA and correctly-rounded sums: proved
// algorithms using rounding to odd", IEEE TC 2008).

export type FloatDtype = 'F32' | 'F16' | 'BF16';

export const FLOAT_DTYPES: readonly FloatDtype[] = ['F32', 'F16', 'BF16'];

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float32 bits of x rounded to odd: exact values stay, others take the neighbour with an odd last bit. */
function float32BitsRoundedToOdd(x: number): number {
  f32[0] = x;
  let bits = u32[0];
  const rounded = f32[0];
  if (rounded === x || !Number.isFinite(rounded) || Number.isNaN(x)) return bits;
  if ((bits & 1) === 0) {
    // The nearest float32 is even: step one ulp towards x, to the other neighbour (odd). Magnitudes
    // grow with the bit pattern on both signs, so "towards x" is +1 when |x| > |rounded|.
    bits += Math.abs(x) > Math.abs(rounded) ? 1 : -1;
  }
  return bits;
}

/** BF16 bits of x (a float64), rounded once to nearest-even. */
export function toBfloat16Bits(x: number): number {
  const bits = float32BitsRoundedToOdd(x);
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return (bits >>> 16) | 0x40; // NaN stays NaN
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** IEEE binary16 bits of x (a float64), rounded once to nearest-even; past 65504 + half an ulp: ±Infinity. */
export function toFloat16Bits(x: number): number {
  const bits = float32BitsRoundedToOdd(x);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15; // the binary16 exponent field
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // A binary16 subnormal (or zero): shift the full significand right, rounding to nearest-even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && (h & 1) === 1)) h++;
    return sign | h;
  }
  const rest = mant & 0x1fff;
  let h = (e << 10) | (mant >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++; // a carry into the exponent is still right (up to Infinity)
  return sign | h;
}

/** values (any float array) → little-endian bytes of `dtype`, each value rounded once. */
export function encodeFloats(values: ArrayLike<number>, dtype: FloatDtype): Uint8Array {
  const n = values.length;
  if (dtype === 'F32') {
    const out = Float32Array.from(values);
    const bytes = new Uint8Array(out.buffer);
    if (!HOST_IS_LITTLE_ENDIAN) for (let i = 0; i < bytes.length; i += 4) bytes.subarray(i, i + 4).reverse();
    return bytes;
  }
  const half = new Uint16Array(n);
  const encode = dtype === 'BF16' ? toBfloat16Bits : toFloat16Bits;
  for (let i = 0; i < n; i++) half[i] = encode(values[i]);
  const bytes = new Uint8Array(half.buffer);
  if (!HOST_IS_LITTLE_ENDIAN) for (let i = 0; i < bytes.length; i += 2) bytes.subarray(i, i + 2).reverse();
  return bytes;
}
