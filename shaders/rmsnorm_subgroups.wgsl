enable subgroups;

// rmsnorm_subgroups.wgsl — rmsnorm.wgsl's two entries with their row sum reduced by subgroup operations, for a
// device with the `subgroups` feature (src/autograd/rmsnorm.ts picks this file then, rmsnorm.wgsl otherwise; both
// are checked against the float64 reference in tests/autograd/rmsnorm.test.ts). The math, glossary and bindings
// are rmsnorm.wgsl's:
//   x (N, C)   w (C) frozen   y (N, C)   rstd (N) = 1/sqrt(mean_c x² + eps)
//   forward   y = x·rstd·w
//   backward  with g = dy·w:  dx = rstd·g − x·rstd³·(Σ_c g·x)/C          (dx = or += when params.accumulate)
//
// One workgroup per row, as there. The row's sum: subgroupAdd within each subgroup (no barrier), one partial
// per subgroup in workgroup memory, one barrier, then every thread adds the partials in subgroup order —
// 2 barriers instead of the tree's 9, and a fixed order of additions, so the result is deterministic.
// Subgroups are at least 4 wide, so 256 threads make at most 64 partials.

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

const MAX_SUBGROUPS: u32 = 64u; // WG / the smallest subgroup size (4)

var<workgroup> partials: array<f32, MAX_SUBGROUPS>;

// Σ over the workgroup of each thread's `v`; every thread gets the total. Called in workgroup-uniform control flow.
fn reduce_sum(sg: u32, nsg: u32, lane: u32, v: f32) -> f32 {
  let s = subgroupAdd(v);
  if (lane == 0u) { partials[sg] = s; }
  workgroupBarrier();
  var total = 0.0;
  for (var i = 0u; i < nsg; i++) { total += partials[i]; }
  workgroupBarrier(); // every thread has read the partials before they are reused
  return total;
}

@compute @workgroup_size(WG)
fn rmsnorm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32,
                   @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) nsg: u32,
                   @builtin(subgroup_invocation_id) lane: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= params.N) { return; }
  let C = params.C;
  let base = row * C;
  var ss = 0.0;
  for (var c = lid; c < C; c += WG) { let v = x[base + c]; ss = fma(v, v, ss); }
  let r = 1.0 / sqrt(reduce_sum(sg, nsg, lane, ss) / f32(C) + params.eps);
  if (lid == 0u) { rstd_out[row] = r; }
  for (var c = lid; c < C; c += WG) { y[base + c] = x[base + c] * r * w[c]; }
}

@compute @workgroup_size(WG)
fn rmsnorm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32,
                    @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) nsg: u32,
                    @builtin(subgroup_invocation_id) lane: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= params.N) { return; }
  let C = params.C;
  let base = row * C;
  let r = rstd[row];
  var dot = 0.0; // Σ_c dy·w·x
  for (var c = lid; c < C; c += WG) { dot = fma(dy[base + c] * w[c], x[base + c], dot); }
  let k = r * r * r * reduce_sum(sg, nsg, lane, dot) / f32(C);
  for (var c = lid; c < C; c += WG) {
    let i = base + c;
    var v = r * dy[i] * w[c] - k * x[i];
    if (params.accumulate != 0u) { v += dx[i]; }
    dx[i] = v;
  }
}
