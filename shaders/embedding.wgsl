// embedding.wgsl — token embedding lookup and its (deterministic) scatter-add gradient.
//
// Glossary: N rows (tokens, B·T), V vocabulary size, C hidden size.
//   ids (N) i32 in [0, V)   table (V, C)   out (N, C)
//
//   embedding_forward   out[n, c] = table[ids[n] − v0, c]   for ids in this table chunk [v0, v0 + V); a table
//                                                            bigger than one binding runs as several chunks.
//                                                            The first chunk (v0 = 0) writes zero rows for ids
//                                                            outside it, later chunks overwrite their own ids
//                                                            only, so an id outside the vocabulary stays a zero
//                                                            row and nothing reads out of bounds.
//   embedding_backward  dtable[v, c] += Σ_{n: ids[n] = v} dout[n, c]
// The table is frozen in LoRA training, so the trainer never runs the backward; it exists for completeness
// and full fine-tuning experiments. It is deterministic (no float atomics, which WGSL lacks anyway): one thread
// per (v, c) walks all N ids in order, so repeated ids sum in row order. That costs V·C·N reads: fine for tests
// and small vocabularies, not for a 150k vocabulary (a sort-by-id version would replace it, tested against this).
//
// One thread per output element; flat workgroup index wg.x + wg.y·num_workgroups.x.
// Binding convention: the uniform `params` at @binding(0), each entry's storage buffers from @binding(1).

const WG: u32 = 256u;

struct Params {
  N: u32,
  C: u32,
  V: u32,
  v0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<i32>;             // (N)
// embedding_forward
@group(0) @binding(2) var<storage, read> table: array<f32>;           // (V, C)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;       // (N, C)
// embedding_backward
@group(0) @binding(2) var<storage, read> dout: array<f32>;            // (N, C)
@group(0) @binding(3) var<storage, read_write> dtable: array<f32>;    // (V, C) accumulated into

@compute @workgroup_size(WG)
fn embedding_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * WG + lid;
  if (i >= params.N * params.C) { return; }
  let n = i / params.C;
  let c = i % params.C;
  let id = ids[n];
  if (id >= i32(params.v0) && u32(id) - params.v0 < params.V) {
    out[i] = table[(u32(id) - params.v0) * params.C + c];
  } else if (params.v0 == 0u) {
    out[i] = 0.0;
  }
}

@compute @workgroup_size(WG)
fn embedding_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * WG + lid;
  if (i >= params.V * params.C) { return; }
  let v = i32(i / params.C + params.v0);
  let c = i % params.C;
  var s = 0.0;
  for (var n = 0u; n < params.N; n++) {
    if (ids[n] == v) { s += dout[n * params.C + c]; }
  }
  dtable[i] += s;
}
