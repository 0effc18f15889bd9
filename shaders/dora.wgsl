// dora.wgsl — DoRA (Liu et al. 2024, arXiv:2402.09353) as PEFT computes it (peft/tuners/lora/dora.py,
// DoraLinearLayer): the adapted weight is m ⊙ (W + s·B·A) / ‖W + s·B·A‖, one norm per output row, with the
// norm detached from the gradient (section 4.3 of the paper). The GEMMs (z = x·Wᵀ + s·(x·Aᵀ)·Bᵀ and the
// LoRA backward) are the matmul stem's; these entries are what DoRA adds around them.
//
// Glossary: N rows, IN input features, OUT output features, R rank; g[o] = m[o] / norm[o].
//   dora_norm      norm[o] = ‖W[o,:] + s·(B·A)[o,:]‖₂            W (OUT, IN), A (R, IN), B (OUT, R), norm (OUT)
//                  (one workgroup per output row; written into m it is PEFT's initial magnitude)
//   dora_forward   y[n,o] = g[o]·z[n,o] [+ bias[o]] [+ base[n,o]]  z, y, base (N, OUT); m, norm, bias (OUT)
//   dora_backward  dz[n,o] = g[o]·dy[n,o];  dm[o] += Σ_n dy[n,o]·z[n,o] / norm[o]
//                                                                 dy, z, dz (N, OUT); m, norm, dm (OUT)
// `base` carries what PEFT adds outside the rescaled part when lora_dropout is active (the base layer on x
// minus the one on dropout(x)); without dropout it is absent.
// The flat index of a workgroup is wg.x + wg.y·num_workgroups.x (src/autograd/elementwise.ts `grid`).

const WG: u32 = 256u;
// dora_backward: a workgroup covers COLS output columns with LANES threads each, which split the N rows.
const COLS: u32 = 32u;
const LANES: u32 = 8u;

struct Params {
  rows: u32,
  in_f: u32,
  out_f: u32,
  rank: u32,
  scale: f32,
  has_bias: u32,
  has_base: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

// dora_norm
@group(0) @binding(1) var<storage, read> w: array<f32>;                // (OUT, IN) frozen
@group(0) @binding(2) var<storage, read> lora_a: array<f32>;           // (R, IN)
@group(0) @binding(3) var<storage, read> lora_b: array<f32>;           // (OUT, R)
@group(0) @binding(4) var<storage, read_write> norm_out: array<f32>;   // (OUT)
// dora_forward
@group(0) @binding(1) var<storage, read> fz: array<f32>;               // (N, OUT)
@group(0) @binding(2) var<storage, read> fm: array<f32>;               // (OUT) magnitude
@group(0) @binding(3) var<storage, read> fnorm: array<f32>;            // (OUT)
@group(0) @binding(4) var<storage, read> fbias: array<f32>;            // (OUT), read when has_bias
@group(0) @binding(5) var<storage, read> fbase: array<f32>;            // (N, OUT), read when has_base
@group(0) @binding(6) var<storage, read_write> fy: array<f32>;         // (N, OUT)
// dora_backward
@group(0) @binding(1) var<storage, read> bdy: array<f32>;              // (N, OUT)
@group(0) @binding(2) var<storage, read> bz: array<f32>;               // (N, OUT)
@group(0) @binding(3) var<storage, read> bm: array<f32>;               // (OUT)
@group(0) @binding(4) var<storage, read> bnorm: array<f32>;            // (OUT)
@group(0) @binding(5) var<storage, read_write> bdz: array<f32>;        // (N, OUT) written
@group(0) @binding(6) var<storage, read_write> bdm: array<f32>;        // (OUT) accumulated into

var<workgroup> partial: array<f32, WG>;

fn flat_group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wg.x + wg.y * nwg.x;
}

@compute @workgroup_size(WG)
fn dora_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let o = flat_group(wg, nwg);
  if (o >= params.out_f) { return; } // uniform per workgroup, so the barrier below is reached by all or none
  let in_f = params.in_f;
  let r = params.rank;
  var acc = 0.0;
  for (var i = lid; i < in_f; i += WG) {
    var ba = 0.0;
    for (var k = 0u; k < r; k++) { ba += lora_b[o * r + k] * lora_a[k * in_f + i]; }
    let v = w[o * in_f + i] + params.scale * ba;
    acc += v * v;
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
    workgroupBarrier();
  }
  if (lid == 0u) { norm_out[o] = sqrt(partial[0]); }
}

@compute @workgroup_size(WG)
fn dora_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = flat_group(wg, nwg) * WG + lid;
  if (i >= params.rows * params.out_f) { return; }
  let o = i % params.out_f;
  var y = fm[o] / fnorm[o] * fz[i];
  if (params.has_bias != 0u) { y += fbias[o]; }
  if (params.has_base != 0u) { y += fbase[i]; }
  fy[i] = y;
}

@compute @workgroup_size(WG)
fn dora_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let c = lid % COLS;
  let lane = lid / COLS;
  let o = flat_group(wg, nwg) * COLS + c;
  let out_f = params.out_f;
  var acc = 0.0;
  if (o < out_f) {
    let g = bm[o] / bnorm[o];
    for (var n = lane; n < params.rows; n += LANES) {
      let i = n * out_f + o;
      let dy = bdy[i];
      bdz[i] = g * dy;
      acc += dy * bz[i];
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  if (lane == 0u && o < out_f) {
    var sum = 0.0;
    for (var l = 0u; l < LANES; l++) { sum += partial[l * COLS + c]; }
    bdm[o] += sum / bnorm[o];
  }
}
