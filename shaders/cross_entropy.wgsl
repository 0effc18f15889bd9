// cross_entropy.wgsl — softmax cross-entropy over a vocabulary processed in column chunks, with
// torch's ignore_index = −100 and mean reduction over the valid targets.
//
// Glossary: N rows (tokens, B·T), V vocabulary size, Vc columns in this chunk, v0 its first column.
//   logits chunk (N, Vc), row stride ld ≥ Vc      targets (N) i32; valid iff 0 ≤ t < V (−100 = ignore)
//   stats (N, 3) = (running max m, running Σ exp(x − m), logit of the target) per row, across chunks
//   losses (N)   per-row loss, 0 for ignored rows      result (2) = (mean loss, count of valid rows)
//
// A 150k vocabulary times N rows can exceed one binding, so nothing here needs the whole (N, V) at once:
//   cross_entropy_forward   one dispatch per chunk (first … last). Online softmax (Milakov & Gimelshein 2018,
//                           arXiv:1805.02867): each thread keeps (m, s) over its columns; pairs merge by
//                           m' = max(m1, m2), s' = s1·e^(m1−m') + s2·e^(m2−m'); the chunk's pair then merges into
//                           the row's stats (replaced on the first chunk). The chunk holding the target stores its
//                           logit. On the last chunk: loss = lse − x[target] with lse = m + log(s), 0 if ignored.
//   cross_entropy_reduce    one workgroup: result = (Σ losses / count, count), count computed here from targets;
//                           (0, 0) when every row is ignored (torch would give NaN).
//   cross_entropy_backward  per chunk, after the reduce: dlogits = dloss·(softmax − onehot)/count for valid rows,
//                           0 for ignored rows. softmax = exp(x − lse) from the final stats.
// Rows of the forward are one workgroup each (tree reduction in workgroup memory); the backward is one thread
// per element. Flat workgroup index wg.x + wg.y·num_workgroups.x throughout.
// Binding convention: the uniform `params` at @binding(0), each entry's storage buffers from @binding(1).

const WG: u32 = 256u;
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
// cross_entropy_backward (logits and targets as in the forward)
@group(0) @binding(3) var<storage, read> b_stats: array<f32>;          // (N, 3)
@group(0) @binding(4) var<storage, read> b_result: array<f32>;         // (2)
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;    // (N, Vc), row stride ld

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

fn is_valid(t: i32) -> bool {
  return t >= 0 && u32(t) < params.V;
}

@compute @workgroup_size(WG)
fn cross_entropy_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= params.N) { return; }
  let base = row * params.ld;
  var m = NEG_BIG;
  var s = 0.0;
  for (var j = lid; j < params.Vc; j += WG) {
    let x = logits[base + j];
    if (x > m) { s = s * exp(m - x) + 1.0; m = x; } else { s += exp(x - m); }
  }
  red_m[lid] = m;
  red_s[lid] = s;
  workgroupBarrier();
  for (var st = WG / 2u; st > 0u; st >>= 1u) {
    if (lid < st) {
      let m1 = red_m[lid];
      let m2 = red_m[lid + st];
      let mm = max(m1, m2);
      red_s[lid] = red_s[lid] * exp(m1 - mm) + red_s[lid + st] * exp(m2 - mm);
      red_m[lid] = mm;
    }
    workgroupBarrier();
  }
  if (lid != 0u) { return; }
  m = red_m[0];
  s = red_s[0];
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
fn cross_entropy_reduce(@builtin(local_invocation_index) lid: u32) {
  var sum = 0.0;
  var count = 0.0;
  for (var n = lid; n < params.N; n += WG) {
    if (is_valid(r_targets[n])) { sum += r_losses[n]; count += 1.0; }
  }
  red_m[lid] = sum;
  red_s[lid] = count;
  workgroupBarrier();
  for (var st = WG / 2u; st > 0u; st >>= 1u) {
    if (lid < st) {
      red_m[lid] += red_m[lid + st];
      red_s[lid] += red_s[lid + st];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let c = red_s[0];
    result[0] = select(0.0, red_m[0] / c, c > 0.0);
    result[1] = c;
  }
}

@compute @workgroup_size(WG)
fn cross_entropy_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * WG + lid;
  if (i >= params.N * params.Vc) { return; }
  let row = i / params.Vc;
  let j = i % params.Vc;
  let k = row * params.ld + j;
  let t = targets[row];
  if (!is_valid(t)) { dlogits[k] = 0.0; return; }
  let lse = b_stats[row * 3u] + log(b_stats[row * 3u + 1u]);
  let onehot = select(0.0, 1.0, u32(t) == params.v0 + j);
  dlogits[k] = (exp(logits[k] - lse) - onehot) * (params.dloss / b_result[1]);
}
