// optimizer.wgsl — parameter updates (SGD, AdamW as torch.optim.AdamW) and global gradient-norm clipping as
// torch.nn.utils.clip_grad_norm_, all on the GPU with no read-back.
//
// Glossary: n elements of one parameter tensor (any shape, flattened); P partial sums of the norm.
//   p (n) parameter   g (n) its gradient   m, v (n) AdamW first/second moments
//   partials (P)      per-workgroup Σg² of every gradient buffer, each buffer at its own `base` slot range
//   norm (2)          (total L2 norm, clip coefficient)
//
//   sgd_step          p −= lr·g
//   adamw_step        p *= decay (= 1 − lr·wd);  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;
//                     p −= step_size·m / (sqrt(v)/bc2_sqrt + eps)
//                     with step_size = lr/(1 − β1^t), bc2_sqrt = sqrt(1 − β2^t), decay and 1 − β computed on the CPU
//                     in f64, the scalars torch's single-tensor AdamW computes in Python floats (amsgrad = False).
//                     1 − β2 must not be formed in f32: 1 − f32(0.999) is off by 1.3e-5 relative, and v with it.
//   grad_norm_sq      partials[base + w] = Σ g² over workgroup w's grid-stride share of one gradient buffer
//   grad_norm_finish  one workgroup: norm = sqrt(Σ partials[0..count)), coef = min(1, max_norm/(norm + 1e-6))
//   clip_scale        g *= coef, per gradient buffer
// Float atomics do not exist in WGSL, and a fixed slot per workgroup keeps the sum deterministic: the same
// grads give the same norm bit for bit.
//
// One thread per element except grad_norm_sq (grid-stride) and grad_norm_finish (one workgroup); flat
// workgroup index wg.x + wg.y·num_workgroups.x.
// Binding convention: the uniform `params` at @binding(0), each entry's storage buffers from @binding(1).

const WG: u32 = 256u;

struct Params {
  n: u32,
  base: u32,
  count: u32,
  lr: f32,
  decay: f32,
  beta1: f32,
  beta2: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
  eps: f32,
  step_size: f32,
  bc2_sqrt: f32,
  max_norm: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
// sgd_step, adamw_step
@group(0) @binding(1) var<storage, read_write> p: array<f32>;          // (n)
@group(0) @binding(2) var<storage, read> g: array<f32>;                // (n)
@group(0) @binding(3) var<storage, read_write> m: array<f32>;          // (n)
@group(0) @binding(4) var<storage, read_write> v: array<f32>;          // (n)
// grad_norm_sq (g at binding 1)
@group(0) @binding(1) var<storage, read> sq_g: array<f32>;             // (n)
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;   // (P)
// grad_norm_finish
@group(0) @binding(1) var<storage, read> fin_partials: array<f32>;     // (P)
@group(0) @binding(2) var<storage, read_write> norm: array<f32>;       // (2)
// clip_scale
@group(0) @binding(1) var<storage, read_write> clip_g: array<f32>;     // (n)
@group(0) @binding(2) var<storage, read> clip_norm: array<f32>;        // (2)

var<workgroup> red: array<f32, WG>;

fn reduce_sum(lid: u32, x: f32) -> f32 {
  red[lid] = x;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  return red[0];
}

@compute @workgroup_size(WG)
fn sgd_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * WG + lid;
  if (i >= params.n) { return; }
  p[i] -= params.lr * g[i];
}

@compute @workgroup_size(WG)
fn adamw_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * WG + lid;
  if (i >= params.n) { return; }
  let gi = g[i];
  let mi = params.beta1 * m[i] + params.one_minus_beta1 * gi;
  let vi = params.beta2 * v[i] + params.one_minus_beta2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  let denom = sqrt(vi) / params.bc2_sqrt + params.eps;
  p[i] = p[i] * params.decay - params.step_size * (mi / denom);
}

@compute @workgroup_size(WG)
fn grad_norm_sq(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let w = wg.x + wg.y * nwg.x;
  let stride = nwg.x * nwg.y * WG;
  var ss = 0.0;
  for (var i = w * WG + lid; i < params.n; i += stride) { let x = sq_g[i]; ss = fma(x, x, ss); }
  let total = reduce_sum(lid, ss);
  if (lid == 0u) { partials[params.base + w] = total; }
}

@compute @workgroup_size(WG)
fn grad_norm_finish(@builtin(local_invocation_index) lid: u32) {
  var ss = 0.0;
  for (var i = lid; i < params.count; i += WG) { ss += fin_partials[i]; }
  let total = sqrt(reduce_sum(lid, ss));
  if (lid == 0u) {
    norm[0] = total;
    norm[1] = min(1.0, params.max_norm / (total + 1e-6));
  }
}

@compute @workgroup_size(WG)
fn clip_scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * WG + lid;
  if (i >= params.n) { return; }
  clip_g[i] *= clip_norm[1];
}
