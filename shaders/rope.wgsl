// rope.wgsl — rotary position embedding (Hugging Face Llama "rotate-half" convention) and its backward.
//
// Glossary: B batch, T sequence length, N rows = B·T (row n = b·T + t), H heads in the tensor (the query
// heads for q, the KV heads for k), D head dimension (even), P = D/2 rotation pairs per head.
//   x  (N, H·D)   the q or k projection output, head h of row n at columns h·D .. h·D + D − 1
//   y  (N, H·D)   the rotated tensor (a separate buffer, or x itself with the *_inplace entries)
//   x2, y2 (N, H2·D)  rope_qk_*: a second tensor (the keys, H2 = KV heads) rotated in the same dispatch
//
// Per head, pair i < P rotates (x[i], x[i + P]) by the angle θ_t,i = t·inv_freq_i with
//   inv_freq_i = 1 / theta^(2i/D),  t = (n mod T) + pos_offset:
//   forward   y[i] = x[i]·cos − x[i+P]·sin,   y[i+P] = x[i+P]·cos + x[i]·sin
//   backward  the transpose, i.e. the rotation by −θ:  dx[i] = dy[i]·cos + dy[i+P]·sin,
//             dx[i+P] = dy[i+P]·cos − dy[i]·sin
// RoFormer, https://arxiv.org/abs/2104.09864; transformers' LlamaRotaryEmbedding + apply_rotary_pos_emb.
//
// Precision: like transformers, inv_freq and the angle are computed in f32 (transformers builds both in
// float32 with autocast off), so angles are rounded the same way; sin and cos of that f32 angle are then
// evaluated to about 1 ulp here rather than by the builtins (see sin_cos). One thread per (row, head, pair): it reads both elements of its pair
// before writing either, so in-place is race-free. In-place has its own entries with a single binding
// because WebGPU rejects one buffer bound to two writable storage bindings of a dispatch.

const WG: u32 = 64u;

struct Params {
  N: u32,
  T: u32,
  H: u32,
  D: u32,
  pos_offset: u32,
  theta: f32,
  H2: u32,
}

// Bindings: out-of-place entries use params, x, y; the in-place ones params, xy.
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // (N, H·D)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;    // (N, H·D)
@group(0) @binding(1) var<storage, read_write> xy: array<f32>;   // (N, H·D), rotated in place
@group(0) @binding(3) var<storage, read> x2: array<f32>;         // (N, H2·D) rope_qk_*: the keys
@group(0) @binding(4) var<storage, read_write> y2: array<f32>;   // (N, H2·D)

// (sin θ, cos θ) to about 1 ulp for 0 ≤ θ < 8192·π/2. WGSL's builtin sin/cos only promise an absolute error
// of 2^-11 (SwiftShader's measured 1.9e-4 on [0, 4]), 50× the rounding of the f32 angle itself, and some
// GPUs lose accuracy in proportion to |θ|, which reaches T − 1 rad. So: Cody–Waite reduction by π/2 (the
// split constants have few enough bits that k·PIO2_1 and k·PIO2_2 are exact for k < 8192), then Cephes'
// sinf/cosf minimax polynomials on [−π/4, π/4] and the quadrant's symmetry.
fn sin_cos(theta: f32) -> vec2<f32> {
  const TWO_OVER_PI: f32 = 0.6366197723675814;
  const PIO2_1: f32 = 1.5703125;
  const PIO2_2: f32 = 4.837512969970703125e-4;
  const PIO2_3: f32 = 7.549789954891882e-8;
  let k = round(theta * TWO_OVER_PI);
  let r = ((theta - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
  let z = r * r;
  let s = r + r * z * ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1);
  let c = 1.0 - 0.5 * z + z * z * ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2);
  switch (u32(k) % 4u) {            // θ = k·π/2 + r
    case 0u: { return vec2(s, c); }
    case 1u: { return vec2(c, -s); }
    case 2u: { return vec2(-s, -c); }
    default: { return vec2(-c, s); }
  }
}

// Pair `idx` (a flat index over (N, H, D/2)): its two element indices and the rotation by sign·θ
// (sign = 1 forward, −1 backward).
struct Rotation {
  i1: u32,
  i2: u32,
  c: f32,
  s: f32,
}

fn rotation(idx: u32, sign: f32) -> Rotation {
  return rotation_of(idx, sign, params.H);
}

// The same over a tensor of `heads` heads.
fn rotation_of(idx: u32, sign: f32, heads: u32) -> Rotation {
  let P = params.D / 2u;
  let i = idx % P;
  let row_head = idx / P;                // n·heads + h
  let n = row_head / heads;
  let t = n % params.T + params.pos_offset;
  let inv_freq = 1.0 / pow(params.theta, f32(2u * i) / f32(params.D));
  let sc = sin_cos(f32(t) * inv_freq);
  let base = row_head * params.D;
  return Rotation(base + i, base + i + P, sc.y, sign * sc.x);
}

// (x1, x2) → (x1·c − x2·s, x2·c + x1·s)
fn rotate(v: vec2<f32>, r: Rotation) -> vec2<f32> {
  return vec2(v.x * r.c - v.y * r.s, v.y * r.c + v.x * r.s);
}

// This thread's pair, or N·H·D/2 and beyond past the end. The grid is 2-D only because N·H·D/2 / WG can
// exceed 65535 workgroups per dimension.
fn pair_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * WG + lid;
}

fn pair_count() -> u32 {
  return params.N * params.H * (params.D / 2u);
}

@compute @workgroup_size(WG, 1, 1)
fn rope_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let idx = pair_index(wg, nwg, lid);
  if (idx >= pair_count()) { return; }
  let r = rotation(idx, 1.0);
  let o = rotate(vec2(x[r.i1], x[r.i2]), r);
  y[r.i1] = o.x;
  y[r.i2] = o.y;
}

@compute @workgroup_size(WG, 1, 1)
fn rope_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let idx = pair_index(wg, nwg, lid);
  if (idx >= pair_count()) { return; }
  let r = rotation(idx, -1.0);
  let o = rotate(vec2(x[r.i1], x[r.i2]), r);
  y[r.i1] = o.x;
  y[r.i2] = o.y;
}

@compute @workgroup_size(WG, 1, 1)
fn rope_forward_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
  let idx = pair_index(wg, nwg, lid);
  if (idx >= pair_count()) { return; }
  let r = rotation(idx, 1.0);
  let o = rotate(vec2(xy[r.i1], xy[r.i2]), r);
  xy[r.i1] = o.x;
  xy[r.i2] = o.y;
}

@compute @workgroup_size(WG, 1, 1)
fn rope_backward_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
  let idx = pair_index(wg, nwg, lid);
  if (idx >= pair_count()) { return; }
  let r = rotation(idx, -1.0);
  let o = rotate(vec2(xy[r.i1], xy[r.i2]), r);
  xy[r.i1] = o.x;
  xy[r.i2] = o.y;
}

// Queries and keys in one dispatch (both take the same angles, by row): pairs [0, N·H·P) rotate x into y,
// the next N·H2·P rotate x2 into y2.
fn rope_qk(idx: u32, sign: f32) {
  let nq = pair_count();
  if (idx < nq) {
    let r = rotation(idx, sign);
    let o = rotate(vec2(x[r.i1], x[r.i2]), r);
    y[r.i1] = o.x;
    y[r.i2] = o.y;
    return;
  }
  let j = idx - nq;
  if (j >= params.N * params.H2 * (params.D / 2u)) { return; }
  let r = rotation_of(j, sign, params.H2);
  let o = rotate(vec2(x2[r.i1], x2[r.i2]), r);
  y2[r.i1] = o.x;
  y2[r.i2] = o.y;
}

@compute @workgroup_size(WG, 1, 1)
fn rope_qk_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  rope_qk(pair_index(wg, nwg, lid), 1.0);
}

@compute @workgroup_size(WG, 1, 1)
fn rope_qk_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  rope_qk(pair_index(wg, nwg, lid), -1.0);
}
