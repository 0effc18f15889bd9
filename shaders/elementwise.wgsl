// elementwise.wgsl — the tiny flat-array helpers the autograd needs: residual add, in-place accumulate,
// explicit zeroing (fill) and in-place scaling. Not a general elementwise library: each entry is one line of math.
//
// Glossary: n elements of any flattened shape (e.g. N·C for a residual stream).
//   add_forward  out = value·(a + b)   a, b, out (n)     (residual add with value = 1; its backward is the identity
//                                                        on both inputs; value = 0.5 with a = b copies a exactly)
//   accumulate   a += b                a, b (n)          (adds one gradient contribution into another)
//   fill         x = value             x (n)             (zeroing is an explicit step: value = 0)
//   scale        x *= value            x (n)
//
// One thread per element, WG threads per workgroup; the flat workgroup index is wg.x + wg.y·num_workgroups.x,
// so n may exceed 65535·WG (src/autograd/elementwise.ts `grid` splits the count over x and y).
// Binding convention of every shader in this family: the uniform `params` sits at @binding(0) and the
// storage buffers of each entry follow from @binding(1); entries reuse binding numbers for their own buffers.

const WG: u32 = 256u;

struct Params {
  n: u32,
  value: f32,
}

@group(0) @binding(0) var<uniform> params: Params;

// add_forward
@group(0) @binding(1) var<storage, read> add_a: array<f32>;         // (n)
@group(0) @binding(2) var<storage, read> add_b: array<f32>;         // (n)
@group(0) @binding(3) var<storage, read_write> add_out: array<f32>; // (n)
// accumulate
@group(0) @binding(1) var<storage, read_write> acc_a: array<f32>;   // (n) accumulated into
@group(0) @binding(2) var<storage, read> acc_b: array<f32>;         // (n)
// fill, scale
@group(0) @binding(1) var<storage, read_write> x: array<f32>;       // (n)

fn flat_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wg.x + wg.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn add_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let i = flat_index(wg, nwg, lid);
  if (i >= params.n) { return; }
  add_out[i] = params.value * (add_a[i] + add_b[i]);
}

@compute @workgroup_size(WG)
fn accumulate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let i = flat_index(wg, nwg, lid);
  if (i >= params.n) { return; }
  acc_a[i] += acc_b[i];
}

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = flat_index(wg, nwg, lid);
  if (i >= params.n) { return; }
  x[i] = params.value;
}

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let i = flat_index(wg, nwg, lid);
  if (i >= params.n) { return; }
  x[i] *= params.value;
}
