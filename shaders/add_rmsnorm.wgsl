// add_rmsnorm.wgsl — a residual add and the RMSNorm that reads its sum, in one pass over the rows.
//
// Glossary: N rows (tokens, B·T), C hidden size.
//   a, b (N, C)   the residual stream and a block's output
//   h (N, C)      h = a + b, the new residual stream
//   w (C) frozen  y (N, C) = h·rstd·w   rstd (N) = 1/sqrt(mean_c h² + eps), saved for the backward
//
// Only a forward entry: the backward is RMSNorm's over h (rmsnorm_backward in rmsnorm.wgsl) followed by the
// add's, which passes the gradient through unchanged (src/autograd/add_rmsnorm.ts). h and y are what
// elementwise.wgsl's add_forward and rmsnorm.wgsl's rmsnorm_forward give one after the other, bit for bit:
// the same f32 sum, and the same per-thread fma and tree reduction of h².
//
// One workgroup per row: WG threads stride over the row's C values, then a tree reduction in workgroup
// memory. Rows are indexed wg.x + wg.y·num_workgroups.x so N may exceed 65535. Any C works.

const WG: u32 = 256u;

struct Params {
  N: u32,
  C: u32,
  eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;           // (N, C)
@group(0) @binding(2) var<storage, read> b: array<f32>;           // (N, C)
@group(0) @binding(3) var<storage, read> w: array<f32>;           // (C)
@group(0) @binding(4) var<storage, read_write> h: array<f32>;     // (N, C)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;     // (N, C)
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;  // (N)

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
fn add_rmsnorm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= params.N) { return; }
  let C = params.C;
  let base = row * C;
  var ss = 0.0;
  for (var c = lid; c < C; c += WG) {
    let v = a[base + c] + b[base + c];
    h[base + c] = v;
    ss = fma(v, v, ss);
  }
  let r = 1.0 / sqrt(reduce_sum(lid, ss) / f32(C) + params.eps);
  if (lid == 0u) { rstd[row] = r; }
  // Each thread reads back only the h values it wrote itself.
  for (var c = lid; c < C; c += WG) { y[base + c] = h[base + c] * r * w[c]; }
}
