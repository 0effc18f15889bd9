// dequant.wgsl — frozen base weights stored in fewer than 32 bits, turned back into the float32 values every
// other kernel reads. Forward only: a frozen weight has no gradient. src/model/quant.ts quantizes on the CPU
// at load and defines each scheme exactly; these entries are its dequantizers, value for value.
//
// Glossary: E values written (a weight's numel, or rows of a table chunk), R rows and C columns of an int8
// weight (one absmax per row), S scales of an NF4 weight (one per block of 64 values).
//   src    packed storage, read as u32 words (little-endian: the value with the lower index in the lower bits)
//   out    (E) f32
//
//   dequant_bf16  out[i] = the bf16 value i: its 16 bits are the top half of the float32
//   dequant_f16   out[i] = the IEEE binary16 value i, decoded with integer operations (exact for every input,
//                 subnormals and NaN payloads included, whatever the device's float conversions do)
//   dequant_nf4   out[i] = NF4[code i] · absmax[i / 64]; two codes per byte, the even-indexed in the high
//                 nibble. With DOUBLE the absmax are themselves 8-bit codes of bitsandbytes' dynamic map:
//                 absmax[s] = map[scode s] · absmax2[s / 256] + offset, each operation rounded to float32
//   dequant_int8  out[i] = (code i · absmax[i / C]) · fround(1/127), both products rounded to float32
//
// `first` is the index of value 0 of `out` within `src`: a chunk of a table whose bytes do not start on a
// 256-byte binding offset is bound from the offset below it.
//
// One thread per value; flat workgroup index wg.x + wg.y·num_workgroups.x.
// Binding convention: the uniform `params` at @binding(0), each entry's storage buffers from @binding(1).

const WG: u32 = 256u;

struct Params {
  n: u32,      // E
  first: u32,  // index in src of out[0]
  cols: u32,   // int8: C
  offset: f32, // nf4 with DOUBLE: the mean added back to every scale
  zero: u32,   // always 0; see nf4_scale
}

/** nf4: whether the per-block absmax are 8-bit codes (QLoRA's double quantization). */
override DOUBLE: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;          // packed values
@group(0) @binding(2) var<storage, read_write> out: array<f32>;    // (E)
// dequant_nf4: (S) absmax, or with DOUBLE the dynamic map (256) then absmax2 (ceil(S / 256));
// dequant_int8: (R) absmax
@group(0) @binding(3) var<storage, read> absmax: array<f32>;
// dequant_nf4 with DOUBLE: (S) one 8-bit code per scale, four per word (without DOUBLE: bound, never read)
@group(0) @binding(4) var<storage, read> scale_codes: array<u32>;

// bitsandbytes' 16 NormalFloat levels as float32 bit patterns (quant.ts NF4_LEVELS), so no literal is rounded.
var<private> NF4: array<u32, 16> = array<u32, 16>(
  0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
  0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u,
);
const INV_127: u32 = 0x3c010204u; // fround(1 / 127)

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wg.x + wg.y * nwg.x) * WG + lid;
}

/** The 16 bits of value j of src. */
fn half_bits(j: u32) -> u32 {
  return (src[j >> 1u] >> (16u * (j & 1u))) & 0xffffu;
}

/** The 8 bits of byte j of a packed u32 array's word. */
fn byte_of(word: u32, j: u32) -> u32 {
  return (word >> (8u * (j & 3u))) & 0xffu;
}

@compute @workgroup_size(WG)
fn dequant_bf16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = index(wg, nwg, lid);
  if (i >= params.n) { return; }
  out[i] = bitcast<f32>(half_bits(params.first + i) << 16u);
}

@compute @workgroup_size(WG)
fn dequant_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let i = index(wg, nwg, lid);
  if (i >= params.n) { return; }
  let h = half_bits(params.first + i);
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  var bits: u32;
  if (e == 0u) {
    // zero or subnormal: m·2⁻²⁴, exact in float32 (m < 2¹⁰); the sign goes on by bits, so −0 stays −0
    bits = sign | bitcast<u32>(f32(m) * bitcast<f32>(0x33800000u));
  } else if (e == 31u) {
    bits = sign | 0x7f800000u | (m << 13u); // ±Infinity, NaN with its payload
  } else {
    bits = sign | ((e + 112u) << 23u) | (m << 13u); // rebias the exponent 15 → 127
  }
  out[i] = bitcast<f32>(bits);
}

/**
 * The absmax of NF4 block s. With DOUBLE: fround(fround(map[code] · absmax2) + offset). The product's bits
 * pass through an XOR with params.zero (0, which no compiler can know) so that it is rounded to float32 on
 * its own, as the CPU reference rounds it, and never fused with the add into an FMA.
 */
fn nf4_scale(s: u32) -> f32 {
  if (DOUBLE) {
    let code = byte_of(scale_codes[s >> 2u], s);
    let product = bitcast<f32>(bitcast<u32>(absmax[code] * absmax[256u + s / 256u]) ^ params.zero);
    return product + params.offset;
  }
  return absmax[s];
}

@compute @workgroup_size(WG)
fn dequant_nf4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let i = index(wg, nwg, lid);
  if (i >= params.n) { return; }
  let j = params.first + i;
  let byte = byte_of(src[j >> 3u], j >> 1u);
  let code = select(byte & 0xfu, byte >> 4u, (j & 1u) == 0u);
  out[i] = bitcast<f32>(NF4[code]) * nf4_scale(j / 64u);
}

@compute @workgroup_size(WG)
fn dequant_int8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = index(wg, nwg, lid);
  if (i >= params.n) { return; }
  let j = params.first + i;
  let code = i32(byte_of(src[j >> 2u], j) << 24u) >> 24u; // sign-extend the byte
  out[i] = (f32(code) * absmax[j / params.cols]) * bitcast<f32>(INV_127);
}
