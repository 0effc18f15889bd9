enable subgroups;

// cross_entropy_subgroups.wgsl — cross_entropy.wgsl's two reducing entries, cross_entropy_forward and
// cross_entropy_reduce, with their workgroup reductions done by subgroup operations, for a device with the
// `subgroups` feature (src/autograd/cross_entropy.ts picks this file then, cross_entropy.wgsl otherwise; the
// backward, one thread per element, reduces nothing and always runs from cross_entropy.wgsl). Both paths are
// checked against the float64 reference in tests/autograd/cross_entropy.test.ts. Math, glossary, Params and
// bindings are cross_entropy.wgsl's:
//   logits chunk (N, Vc), row stride ld ≥ Vc      targets (N) i32; valid iff 0 ≤ t < V (−100 = ignore)
//   stats (N, 3) = (running max m, running Σ exp(x − m), logit of the target) per row, across chunks
//   losses (N)   per-row loss, 0 for ignored rows      result (2) = (mean loss, count of valid rows)
//
// The forward's merge of (m, s) pairs over a workgroup: M = subgroupMax(m), then subgroupAdd(s·e^(m − M)) — the
// same online-softmax merge (Milakov & Gimelshein 2018, arXiv:1805.02867) done a subgroup at a time — then one
// pair per subgroup in workgroup memory, merged by thread 0 in subgroup order (deterministic).
// Subgroups are at least 4 wide, so 256 threads make at most 64 partials.

const WG: u32 = 256u;
const MAX_SUBGROUPS: u32 = 64u; // WG / the smallest subgroup size (4)
const NEG_BIG: f32 = -3.0e38; // "−∞" that stays finite, so e^(m1 − m2) never sees ∞ − ∞

struct Params {
  N: u32,
  V: u32,
  Vc: u32,
  ld: u32,
  v0: u32,
  first: u32,
  last: u32,
  dloss: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
// cross_entropy_forward
@group(0) @binding(1) var<storage, read> logits: array<f32>;           // (N, Vc), row stride ld
@group(0) @binding(2) var<storage, read> targets: array<i32>;          // (N)
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;      // (N, 3)
@group(0) @binding(4) var<storage, read_write> losses: array<f32>;     // (N)
// cross_entropy_reduce
@group(0) @binding(1) var<storage, read> r_targets: array<i32>;        // (N)
@group(0) @binding(2) var<storage, read> r_losses: array<f32>;         // (N)
@group(0) @binding(3) var<storage, read_write> result: array<f32>;     // (2)

var<workgroup> part_a: array<f32, MAX_SUBGROUPS>;
var<workgroup> part_b: array<f32, MAX_SUBGROUPS>;

fn is_valid(t: i32) -> bool {
  return t >= 0 && u32(t) < params.V;
}

@compute @workgroup_size(WG)
fn cross_entropy_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32,
                         @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) nsg: u32,
                         @builtin(subgroup_invocation_id) lane: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= params.N) { return; }
  let base = row * params.ld;
  var m = NEG_BIG;
  var s = 0.0;
  for (var j = lid; j < params.Vc; j += WG) {
    let x = logits[base + j];
    if (x > m) { s = s * exp(m - x) + 1.0; m = x; } else { s += exp(x - m); }
  }
  let sm = subgroupMax(m);
  let ss = subgroupAdd(s * exp(m - sm));
  if (lane == 0u) {
    part_a[sg] = sm;
    part_b[sg] = ss;
  }
  workgroupBarrier();
  if (lid != 0u) { return; }
  m = part_a[0];
  s = part_b[0];
  for (var i = 1u; i < nsg; i++) {
    let mm = max(m, part_a[i]);
    s = s * exp(m - mm) + part_b[i] * exp(part_a[i] - mm);
    m = mm;
  }
  var xt = 0.0;
  if (params.first == 0u) {
    let mo = stats[row * 3u];
    let mm = max(m, mo);
    s = stats[row * 3u + 1u] * exp(mo - mm) + s * exp(m - mm);
    m = mm;
    xt = stats[row * 3u + 2u];
  }
  let t = targets[row];
  if (is_valid(t) && u32(t) >= params.v0 && u32(t) - params.v0 < params.Vc) { xt = logits[base + u32(t) - params.v0]; }
  stats[row * 3u] = m;
  stats[row * 3u + 1u] = s;
  stats[row * 3u + 2u] = xt;
  if (params.last != 0u) { losses[row] = select(0.0, m + log(s) - xt, is_valid(t)); }
}

@compute @workgroup_size(WG)
fn cross_entropy_reduce(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32,
                        @builtin(num_subgroups) nsg: u32, @builtin(subgroup_invocation_id) lane: u32) {
  var sum = 0.0;
  var count = 0.0;
  for (var n = lid; n < params.N; n += WG) {
    if (is_valid(r_targets[n])) { sum += r_losses[n]; count += 1.0; }
  }
  let ssum = subgroupAdd(sum);
  let scount = subgroupAdd(count);
  if (lane == 0u) {
    part_a[sg] = ssum;
    part_b[sg] = scount;
  }
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    var c = 0.0;
    for (var i = 0u; i < nsg; i++) { total += part_a[i]; c += part_b[i]; }
    result[0] = select(0.0, total / c, c > 0.0);
    result[1] = c;
  }
}
