// rmsnorm.wgsl — RMSNorm (Llama's LlamaRMSNorm) forward and its input gradient.
//
// Glossary: N rows (tokens, B·T), C hidden size.
//   x (N, C)   w (C) frozen   y (N, C)   rstd (N) = 1/sqrt(mean_c x² + eps), saved for the backward
//
//   forward   y = x·rstd·w
//   backward  with g = dy·w:  dx = rstd·g − x·rstd³·(Σ_c g·x)/C          (dx = or += when params.accumulate)
// No dw entry: the norm weights are frozen in LoRA training. dx may be accumulated because the block's
// residual-stream gradient adds into the same buffer.
//
// One workgroup per row: WG threads stride over the row's C values, then a tree reduction in workgroup
// memory. Rows are indexed wg.x + wg.y·num_workgroups.x so N may exceed 65535. Any C works.
// Binding convention: the uniform `params` at @binding(0), each entry's storage buffers from @binding(1).

const WG: u32 = 256u;

struct Params {
  N: u32,
  C: u32,
  eps: f32,
  accumulate: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;              // (N, C)
@group(0) @binding(2) var<storage, read> w: array<f32>;              // (C)
// rmsnorm_forward
@group(0) @binding(3) var<storage, read_write> y: array<f32>;        // (N, C)
@group(0) @binding(4) var<storage, read_write> rstd_out: array<f32>; // (N)
// rmsnorm_backward
@group(0) @binding(3) var<storage, read> rstd: array<f32>;           // (N) from the forward
@group(0) @binding(4) var<storage, read> dy: array<f32>;             // (N, C)
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;       // (N, C) written or accumulated into

var<workgroup> red: array<f32, WG>;

// Σ over the workgroup of each thread's `v`; every thread gets the total.
fn reduce_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier(); // every thread has read red[0] before red is reused
  return total;
}

@compute @workgroup_size(WG)
fn rmsnorm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= params.N) { return; }
  let C = params.C;
  let base = row * C;
  var ss = 0.0;
  for (var c = lid; c < C; c += WG) { let v = x[base + c]; ss = fma(v, v, ss); }
  let r = 1.0 / sqrt(reduce_sum(lid, ss) / f32(C) + params.eps);
  if (lid == 0u) { rstd_out[row] = r; }
  for (var c = lid; c < C; c += WG) { y[base + c] = x[base + c] * r * w[c]; }
}

@compute @workgroup_size(WG)
fn rmsnorm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= params.N) { return; }
  let C = params.C;
  let base = row * C;
  let r = rstd[row];
  var dot = 0.0; // Σ_c dy·w·x
  for (var c = lid; c < C; c += WG) { dot = fma(dy[base + c] * w[c], x[base + c], dot); }
  let k = r * r * r * reduce_sum(lid, dot) / f32(C);
  for (var c = lid; c < C; c += WG) {
    let i = base + c;
    var v = r * dy[i] * w[c] - k * x[i];
    if (params.accumulate != 0u) { v += dx[i]; }
    dx[i] = v;
  }
}
