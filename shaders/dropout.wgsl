// dropout.wgsl — LoRA dropout (PEFT applies it to the adapter's input: s·B(A(dropout(x)))), with a mask that
// is a pure function of (seed, step counter, element index), so the backward recomputes it instead of
// storing it, and the step counter lives on the GPU (rng_advance), so no uniform changes between steps.
//
// Glossary: n elements (N·IN for an adapter input x).
//   dropout_forward     out = x·keep(i)/(1 − p)                      x, out (n)
//   dropout_backward    dx += g·keep(i)/(1 − p)                      g, dx (n)   (the same mask as the forward)
//   rng_advance         counter += 1                                 counter (1), once at the start of a step
// keep(i) = uniform(seed, counter, i) ≥ p, uniform in [0, 1) from 24 bits of a lowbias32 hash chain.

const WG: u32 = 256u;

struct Params {
  n: u32,
  p: f32,
  seed: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> counter: array<u32>;        // (1) the training step
@group(0) @binding(2) var<storage, read> src: array<f32>;            // (n) x, or the gradient g
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;      // (n) out, or dx (accumulated)

@group(0) @binding(1) var<storage, read_write> advance: array<u32>;  // rng_advance: (1)

// lowbias32 (Wellons, https://nullprogram.com/blog/2018/07/31/): a cheap 32-bit hash with good avalanche.
fn hash(x: u32) -> u32 {
  var v = x;
  v ^= v >> 16u;
  v *= 0x7feb352du;
  v ^= v >> 15u;
  v *= 0x846ca68bu;
  v ^= v >> 16u;
  return v;
}

fn keep_scale(i: u32) -> f32 {
  let h = hash(i ^ hash(params.seed ^ hash(counter[0])));
  let u = f32(h >> 8u) * (1.0 / 16777216.0);
  return select(0.0, 1.0 / (1.0 - params.p), u >= params.p);
}

fn flat_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wg.x + wg.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn dropout_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let i = flat_index(wg, nwg, lid);
  if (i >= params.n) { return; }
  dst[i] = src[i] * keep_scale(i);
}

@compute @workgroup_size(WG)
fn dropout_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let i = flat_index(wg, nwg, lid);
  if (i >= params.n) { return; }
  dst[i] += src[i] * keep_scale(i);
}

@compute @workgroup_size(1)
fn rng_advance() {
  advance[0] += params.n; // n = 1
}
