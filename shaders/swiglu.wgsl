// swiglu.wgsl — the SwiGLU activation of the Llama MLP, h = silu(gate)·up, and its gradients.
//
// Glossary: N rows (tokens, B·T), I MLP intermediate size; n = N·I elements, treated as flat arrays.
//   gate (N, I) = gate_proj(x)   up (N, I) = up_proj(x)   h (N, I) → down_proj
//
//   forward   h = silu(g)·u                 silu(g) = g·σ(g), σ(g) = 1/(1 + e^−g)
//   backward  dgate = dh·u·σ(g)·(1 + g·(1 − σ(g)))     dup = dh·silu(g)       (both written, not accumulated:
//             they are fresh intermediates that gate_proj/up_proj's backward consume)
// σ is written 1/(1 + exp(−g)): for very negative g exp overflows to +inf and σ becomes exactly 0, never NaN.
//
// One thread per element; flat workgroup index wg.x + wg.y·num_workgroups.x, so n may exceed 65535·WG.
// Binding convention: the uniform `params` at @binding(0), each entry's storage buffers from @binding(1).

const WG: u32 = 256u;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;          // (N, I)
@group(0) @binding(2) var<storage, read> up: array<f32>;            // (N, I)
// swiglu_forward
@group(0) @binding(3) var<storage, read_write> h: array<f32>;       // (N, I)
// swiglu_backward
@group(0) @binding(3) var<storage, read> dh: array<f32>;            // (N, I)
@group(0) @binding(4) var<storage, read_write> dgate: array<f32>;   // (N, I)
@group(0) @binding(5) var<storage, read_write> dup: array<f32>;     // (N, I)

fn sigmoid(g: f32) -> f32 {
  return 1.0 / (1.0 + exp(-g));
}

@compute @workgroup_size(WG)
fn swiglu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * WG + lid;
  if (i >= params.n) { return; }
  let g = gate[i];
  h[i] = g * sigmoid(g) * up[i];
}

@compute @workgroup_size(WG)
fn swiglu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * WG + lid;
  if (i >= params.n) { return; }
  let g = gate[i];
  let s = sigmoid(g);
  let d = dh[i];
  dup[i] = d * g * s;
  dgate[i] = d * up[i] * s * (1.0 + g * (1.0 - s));
}
