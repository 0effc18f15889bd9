// attention.wgsl — causal grouped-query self-attention, flash-attention style, and its backward.
//
// Glossary: B batch, T sequence length, N rows = B·T (row n = b·T + t), H query heads, KV key/value heads
// (H % KV == 0; query head h reads kv head h / (H/KV)), D head dimension (≤ MAX_D), G = H/KV heads per group.
//   q    (N, H·D)    k, v (N, KV·D)     (q and k already rotated)
//   out  (N, H·D)    lse (B, H, T): logsumexp of each query row's scaled scores, kept for the backward
//   dout (N, H·D)    delta (B, H, T) = rowsum(dout ∘ out): written by the dq entry, read by dkdv
//   dq   (N, H·D)    dk, dv (N, KV·D)   overwritten, never accumulated
//
// Math, for one (b, h) with scale = 1/√D and keys j ≤ i (causal):
//   S_ij = scale·q_i·k_j     P_ij = exp(S_ij − L_i), L_i = log Σ_j exp(S_ij)     out_i = Σ_j P_ij·v_j
//   dP_ij = dout_i·v_j       dS_ij = P_ij·(dP_ij − delta_i), delta_i = Σ_j P_ij·dP_ij = dout_i·out_i
//   dq_i = scale·Σ_j dS_ij·k_j     dk_j = scale·Σ_{h in group} Σ_{i≥j} dS_ij·q_i     dv_j = Σ_{h in group} Σ_{i≥j} P_ij·dout_i
// FlashAttention-2 (Dao, https://arxiv.org/abs/2307.08691): the forward keeps a running max and sum (online
// softmax) instead of the (T, T) matrix; the backward recomputes P from L, so memory stays O(N·H·D + B·H·T).
//
// Work split, the plain version: one thread per row, looping over D in private arrays.
//   attention_forward, attention_backward_dq: a workgroup per (query block of BQ rows, h, b); key/value
//     rows pass through workgroup memory BK at a time.
//   attention_backward_dkdv: a workgroup per (key block of BQ rows, kv head, b); each thread owns one key
//     row and loops over the G query heads of its group and every query row i ≥ j, staged BK at a time, so
//     dk and dv are sums in a fixed order: deterministic, no atomics.
// A faster kernel may replace these and must be tested against them.

const MAX_D: u32 = 128u;
const BQ: u32 = 64u;   // rows (threads) per workgroup
const BK: u32 = 16u;   // rows per staged tile: 2 tiles × BK × MAX_D × 4 bytes = 16 KiB, WebGPU's default limit
const NEG_BIG: f32 = -3.0e38; // running-max start: exp(NEG_BIG − s) is 0 without relying on infinities

struct Params {
  B: u32,
  T: u32,
  H: u32,
  KV: u32,
  D: u32,
  scale: f32,
}

var<workgroup> tile_a: array<f32, BK * MAX_D>; // (BK, MAX_D): k rows (forward, dq) or q rows (dkdv)
var<workgroup> tile_b: array<f32, BK * MAX_D>; // (BK, MAX_D): v rows (forward, dq) or dout rows (dkdv)

// ---- bindings ------------------------------------------------------------------------------------------
// Pipelines use layout 'auto', which keeps only the bindings an entry uses, and Gpu.dispatch binds
// buffers[i] at @binding(i); so each entry uses bindings 0 .. n−1 with no gaps. Variables that two entries
// bind at the same number are shared; where entries differ, a binding number names a different variable
// per entry (legal in WGSL as long as no one entry uses both).
//
//             0       1        2         3       4      5       6         7    8
//   forward   params  q        k         v       out    lse
//   dq        params  q        k         v       dout   lse_in  delta_dq  dq   out_dq
//   dkdv      params  q        k         v       dout   lse_in  delta_in  dk   dv

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;              // (N, H·D)
@group(0) @binding(2) var<storage, read> k: array<f32>;              // (N, KV·D)
@group(0) @binding(3) var<storage, read> v: array<f32>;              // (N, KV·D)

// Offset of head `head` (of `heads`) of token (b, t) in a (N, heads·D) tensor.
fn row_offset(b: u32, t: u32, heads: u32, head: u32) -> u32 {
  return ((b * params.T + t) * heads + head) * params.D;
}

// Index of (b, h, t) in a (B, H, T) tensor.
fn bht(b: u32, h: u32, t: u32) -> u32 {
  return (b * params.H + h) * params.T + t;
}

// tile_a, tile_b ← k, v rows j0 .. j0 + BK − 1 of kv head `kvh` (zeros past T).
fn stage_kv(tid: u32, b: u32, kvh: u32, j0: u32) {
  for (var e = tid; e < BK * params.D; e += BQ) {
    let jj = e / params.D;
    let d = e % params.D;
    var kk = 0.0;
    var vv = 0.0;
    if (j0 + jj < params.T) {
      let o = row_offset(b, j0 + jj, params.KV, kvh) + d;
      kk = k[o];
      vv = v[o];
    }
    tile_a[jj * MAX_D + d] = kk;
    tile_b[jj * MAX_D + d] = vv;
  }
}

// ---- forward ---------------------------------------------------------------------------------------------

@group(0) @binding(4) var<storage, read_write> out: array<f32>;      // (N, H·D)
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;      // (B, H, T)

// grid (⌈T/BQ⌉, H, B)
@compute @workgroup_size(BQ, 1, 1)
fn attention_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let D = params.D;
  let b = wg.z;
  let h = wg.y;
  let kvh = h / (params.H / params.KV);
  let q0 = wg.x * BQ;
  let i = q0 + tid;   // this thread's query position
  let valid = i < params.T;

  var qi: array<f32, MAX_D>;    // q_i
  var acc: array<f32, MAX_D>;   // Σ_j exp(S_ij − m)·v_j
  if (valid) {
    let o = row_offset(b, i, params.H, h);
    for (var d = 0u; d < D; d++) { qi[d] = q[o + d]; }
  }
  var m = NEG_BIG;   // running max of S_ij
  var l = 0.0;       // running Σ_j exp(S_ij − m)

  // Keys 0 .. min(T, q0 + BQ) − 1 are visible to some row of this block.
  let j_end = min(params.T, q0 + BQ);
  for (var j0 = 0u; j0 < j_end; j0 += BK) {
    stage_kv(tid, b, kvh, j0);
    workgroupBarrier();
    if (valid && j0 <= i) {
      let count = min(BK, i + 1u - j0);   // keys j0 .. min(i, j0 + BK − 1)
      for (var jj = 0u; jj < count; jj++) {
        var s = 0.0;
        for (var d = 0u; d < D; d++) { s += qi[d] * tile_a[jj * MAX_D + d]; }
        s *= params.scale;
        let m_new = max(m, s);
        let correction = exp(m - m_new);
        let p = exp(s - m_new);
        l = l * correction + p;
        for (var d = 0u; d < D; d++) { acc[d] = acc[d] * correction + p * tile_b[jj * MAX_D + d]; }
        m = m_new;
      }
    }
    workgroupBarrier();
  }

  if (valid) {
    let o = row_offset(b, i, params.H, h);
    for (var d = 0u; d < D; d++) { out[o + d] = acc[d] / l; }
    lse[bht(b, h, i)] = m + log(l);   // l ≥ 1 (the max key adds exp(0)), so the log is finite
  }
}

// ---- backward: dq and dk, dv -------------------------------------------------------------------------------

@group(0) @binding(4) var<storage, read> dout: array<f32>;           // (N, H·D)
@group(0) @binding(5) var<storage, read> lse_in: array<f32>;         // (B, H, T)
@group(0) @binding(6) var<storage, read> delta_in: array<f32>;       // (B, H, T)  (dkdv entry)
@group(0) @binding(6) var<storage, read_write> delta_dq: array<f32>; // (B, H, T)  (dq entry)
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;       // (N, H·D)   (dq entry)
@group(0) @binding(8) var<storage, read> out_dq: array<f32>;         // (N, H·D)   (dq entry)
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;       // (N, KV·D)  (dkdv entry)
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;       // (N, KV·D)  (dkdv entry)

// grid (⌈T/BQ⌉, H, B): thread i of the block owns query row i and sums over keys j ≤ i. It also computes
// delta_i = dout_i·out_i, which it needs first, and writes it for attention_backward_dkdv, dispatched after:
// one dispatch fewer than a separate pass for delta (issue 14).
@compute @workgroup_size(BQ, 1, 1)
fn attention_backward_dq(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let D = params.D;
  let b = wg.z;
  let h = wg.y;
  let kvh = h / (params.H / params.KV);
  let q0 = wg.x * BQ;
  let i = q0 + tid;
  let valid = i < params.T;

  var qi: array<f32, MAX_D>;    // q_i
  var doi: array<f32, MAX_D>;   // dout_i
  var acc: array<f32, MAX_D>;   // Σ_j dS_ij·k_j
  var L = 0.0;
  var delta_i = 0.0;
  if (valid) {
    let o = row_offset(b, i, params.H, h);
    for (var d = 0u; d < D; d++) {
      qi[d] = q[o + d];
      doi[d] = dout[o + d];
      delta_i += doi[d] * out_dq[o + d];
    }
    L = lse_in[bht(b, h, i)];
    delta_dq[bht(b, h, i)] = delta_i;
  }

  let j_end = min(params.T, q0 + BQ);
  for (var j0 = 0u; j0 < j_end; j0 += BK) {
    stage_kv(tid, b, kvh, j0);
    workgroupBarrier();
    if (valid && j0 <= i) {
      let count = min(BK, i + 1u - j0);
      for (var jj = 0u; jj < count; jj++) {
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < D; d++) {
          s += qi[d] * tile_a[jj * MAX_D + d];
          dp += doi[d] * tile_b[jj * MAX_D + d];
        }
        let p = exp(s * params.scale - L);
        let ds = p * (dp - delta_i);
        for (var d = 0u; d < D; d++) { acc[d] += ds * tile_a[jj * MAX_D + d]; }
      }
    }
    workgroupBarrier();
  }

  if (valid) {
    let o = row_offset(b, i, params.H, h);
    for (var d = 0u; d < D; d++) { dq[o + d] = params.scale * acc[d]; }
  }
}

// tile_a, tile_b ← q, dout rows i0 .. i0 + BK − 1 of query head `h` (zeros past T).
fn stage_q_dout(tid: u32, b: u32, h: u32, i0: u32) {
  for (var e = tid; e < BK * params.D; e += BQ) {
    let ii = e / params.D;
    let d = e % params.D;
    var qq = 0.0;
    var dd = 0.0;
    if (i0 + ii < params.T) {
      let o = row_offset(b, i0 + ii, params.H, h) + d;
      qq = q[o];
      dd = dout[o];
    }
    tile_a[ii * MAX_D + d] = qq;
    tile_b[ii * MAX_D + d] = dd;
  }
}

// grid (⌈T/BQ⌉, KV, B): thread j of the block owns key row j of kv head kvh and sums over the G query heads
// of its group and query rows i ≥ j, in a fixed order.
@compute @workgroup_size(BQ, 1, 1)
fn attention_backward_dkdv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let D = params.D;
  let b = wg.z;
  let kvh = wg.y;
  let G = params.H / params.KV;
  let j_first = wg.x * BQ;
  let j = j_first + tid;
  let valid = j < params.T;

  var kj: array<f32, MAX_D>;     // k_j
  var vj: array<f32, MAX_D>;     // v_j
  var dk_acc: array<f32, MAX_D>; // Σ dS_ij·q_i
  var dv_acc: array<f32, MAX_D>; // Σ P_ij·dout_i
  if (valid) {
    let o = row_offset(b, j, params.KV, kvh);
    for (var d = 0u; d < D; d++) {
      kj[d] = k[o + d];
      vj[d] = v[o + d];
    }
  }

  for (var g = 0u; g < G; g++) {
    let h = kvh * G + g;
    // Query rows before j_first see none of this block's keys.
    for (var i0 = j_first; i0 < params.T; i0 += BK) {
      stage_q_dout(tid, b, h, i0);
      workgroupBarrier();
      if (valid) {
        for (var ii = 0u; ii < BK; ii++) {
          let i = i0 + ii;
          if (i >= params.T) { break; }
          if (i < j) { continue; }
          var s = 0.0;
          var dp = 0.0;
          for (var d = 0u; d < D; d++) {
            s += tile_a[ii * MAX_D + d] * kj[d];
            dp += tile_b[ii * MAX_D + d] * vj[d];
          }
          let p = exp(s * params.scale - lse_in[bht(b, h, i)]);
          let ds = p * (dp - delta_in[bht(b, h, i)]);
          for (var d = 0u; d < D; d++) {
            dv_acc[d] += p * tile_b[ii * MAX_D + d];
            dk_acc[d] += ds * tile_a[ii * MAX_D + d];
          }
        }
      }
      workgroupBarrier();
    }
  }

  if (valid) {
    let o = row_offset(b, j, params.KV, kvh);
    for (var d = 0u; d < D; d++) {
      dk[o + d] = params.scale * dk_acc[d];
      dv[o + d] = dv_acc[d];
    }
  }
}
