enable subgroups;
// The row's subgroup follows its own causal length (i + 1 keys), so control flow is uniform per subgroup, not per
// workgroup: the subgroup operations below need only that.
diagnostic(off, subgroup_uniformity);

// attention_subgroups.wgsl — attention.wgsl's forward, attention_forward, with each query row's softmax spread
// over the lanes of one subgroup, for a device with the `subgroups` feature (src/autograd/attention.ts picks this
// entry then, attention.wgsl's otherwise; the backward entries always run from attention.wgsl). Both forwards are
// checked against the float64 reference in tests/autograd/attention.test.ts. Math, glossary, Params and bindings
// are attention.wgsl's:
//   q    (N, H·D)    k, v (N, KV·D)     out  (N, H·D)    lse (B, H, T)
//   S_ij = scale·q_i·k_j     P_ij = exp(S_ij − L_i), L_i = log Σ_j exp(S_ij)     out_i = Σ_j P_ij·v_j
//
// Work split: a workgroup per (block of BQ query rows, h, b); its subgroups take the block's rows in turn (row
// sg, sg + num_subgroups, …). Within a row, lane `l` of a subgroup of S lanes holds q_i, and accumulates out_i,
// at d = l, l + S, l + 2S, … (⌈D/S⌉ values: 2 at S = 32, D = 64), so per-thread state is D/S floats instead of
// the plain kernel's 2·D. For each key j ≤ i the lanes' partial dot products meet in one subgroupAdd, every lane
// then holds S_ij and runs the same online softmax (running max m, sum l; Milakov & Gimelshein 2018,
// arXiv:1805.02867), rescaling only its own slice of out_i. Keys and values are read straight from global
// memory, a row of D contiguous floats per key read by the S lanes together (coalesced); rows of one block and
// of the other heads of the group hit the same k, v rows in cache.

const MAX_D: u32 = 128u;
const MAX_PER_LANE: u32 = 32u; // MAX_D / the smallest subgroup size (4)
const BQ: u32 = 16u;           // query rows per workgroup
const NEG_BIG: f32 = -3.0e38;  // running-max start: exp(NEG_BIG − s) is 0 without relying on infinities

struct Params {
  B: u32,
  T: u32,
  H: u32,
  KV: u32,
  D: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;              // (N, H·D)
@group(0) @binding(2) var<storage, read> k: array<f32>;              // (N, KV·D)
@group(0) @binding(3) var<storage, read> v: array<f32>;              // (N, KV·D)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;      // (N, H·D)
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;      // (B, H, T)

// Offset of head `head` (of `heads`) of token (b, t) in a (N, heads·D) tensor.
fn row_offset(b: u32, t: u32, heads: u32, head: u32) -> u32 {
  return ((b * params.T + t) * heads + head) * params.D;
}

// grid (⌈T/BQ⌉, H, B), 64 threads: 64/S subgroups of S lanes
@compute @workgroup_size(64, 1, 1)
fn attention_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_id) sg: u32,
                     @builtin(num_subgroups) nsg: u32, @builtin(subgroup_invocation_id) lane: u32,
                     @builtin(subgroup_size) S: u32) {
  let D = params.D;
  let b = wg.z;
  let h = wg.y;
  let kvh = h / (params.H / params.KV);
  let per = (D + S - 1u) / S; // this lane's share of D
  for (var r = sg; r < BQ; r += nsg) {
    let i = wg.x * BQ + r;
    if (i >= params.T) { break; }
    let qo = row_offset(b, i, params.H, h);
    var qi: array<f32, MAX_PER_LANE>;  // q_i at d = lane + S·t
    var acc: array<f32, MAX_PER_LANE>; // Σ_j exp(S_ij − m)·v_j at the same d
    for (var t = 0u; t < per; t++) {
      let d = lane + S * t;
      qi[t] = select(0.0, q[qo + min(d, D - 1u)], d < D);
      acc[t] = 0.0;
    }
    var m = NEG_BIG;
    var l = 0.0;
    for (var j = 0u; j <= i; j++) {
      let ko = row_offset(b, j, params.KV, kvh);
      var part = 0.0;
      for (var t = 0u; t < per; t++) {
        let d = lane + S * t;
        if (d < D) { part = fma(qi[t], k[ko + d], part); }
      }
      let s = subgroupAdd(part) * params.scale;
      let m_new = max(m, s);
      let correction = exp(m - m_new);
      let p = exp(s - m_new);
      l = l * correction + p;
      for (var t = 0u; t < per; t++) {
        let d = lane + S * t;
        if (d < D) { acc[t] = acc[t] * correction + p * v[ko + d]; }
      }
      m = m_new;
    }
    for (var t = 0u; t < per; t++) {
      let d = lane + S * t;
      if (d < D) { out[qo + d] = acc[t] / l; }
    }
    if (lane == 0u) { lse[(b * params.H + h) * params.T + i] = m + log(l); }
  }
}
