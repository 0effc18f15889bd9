// matmul.wgsl — the general two-segment GEMM ("version 1"): every linear of the model, the LoRA path, the
// LM head and their backwards run on it, or on matmul_fast.wgsl, which computes the same and is tested against it.
//
// Glossary: M rows of C, Nc columns of C, K1 / K2 the inner size of each segment, TILE the workgroup's
// output tile, BK the K step.
//
//   C[M, Nc] = (ACCUMULATE ? C : 0) + alpha1·P1[M, K1]·Q1[K1, Nc] + alpha2·P2[M, K2]·Q2[K2, Nc] (+ bias[Nc])
// with P read as (M, K) or, when TRANS_P, stored as (K, M); Q read as (K, Nc) or, when TRANS_Q, stored (Nc, K).
// Two segments let one dispatch fuse a LoRA layer's frozen and adapter products (src/autograd/lora_linear.ts
// lists its six passes): y = x·Wᵀ + s·u·Bᵀ + bias is P1 = x, Q1 = W, P2 = u, Q2 = B, all TRANS_Q.
//
// Tiling: a 64×64 output tile per workgroup of 16×16 threads, each thread owning a 4×4 block strided by
// 16 (rows ty + 16i, columns tx + 16j); K advances 16 at a time through workgroup memory. Loads are
// bounds-checked (zero padding), so any M, Nc, K works. The grid's z is a batch index with per-operand
// batch strides. This is the straightforward version: matmul_fast.wgsl is the register-blocked, vectorised
// kernel that replaces it for speed, and is tested against this one.

override TRANS_P: bool = false;
override TRANS_Q: bool = false;

const TILE: u32 = 64u;
const BK: u32 = 16u;
const THREADS: u32 = 256u;

struct Params {
  M: u32,
  N: u32,
  K1: u32,
  K2: u32,
  ld_p1: u32,
  ld_q1: u32,
  ld_p2: u32,
  ld_q2: u32,
  ld_c: u32,
  batch_p1: u32,
  batch_q1: u32,
  batch_p2: u32,
  batch_q2: u32,
  batch_c: u32,
  alpha1: f32,
  alpha2: f32,
  accumulate: u32,
  has_bias: u32,
}

@group(0) @binding(0) var<storage, read> p1: array<f32>;        // (M, K1) or (K1, M)
@group(0) @binding(1) var<storage, read> q1: array<f32>;        // (K1, Nc) or (Nc, K1)
@group(0) @binding(2) var<storage, read> p2: array<f32>;        // (M, K2) or (K2, M); unused when K2 = 0
@group(0) @binding(3) var<storage, read> q2: array<f32>;        // (K2, Nc) or (Nc, K2)
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // (Nc); read only when has_bias
@group(0) @binding(5) var<storage, read_write> c: array<f32>;   // (M, Nc), row stride ld_c
@group(0) @binding(6) var<uniform> params: Params;

var<workgroup> ps: array<f32, 1024>; // (BK, TILE): k-major, so a thread's 4 rows are one broadcast read each
var<workgroup> qs: array<f32, 1024>; // (BK, TILE)

// Element (m, k) of P in segment `seg`, or 0 outside (M, K).
fn p_at(seg: u32, b: u32, m: u32, k: u32, K: u32) -> f32 {
  if (m >= params.M || k >= K) { return 0.0; }
  if (seg == 0u) {
    let i = b * params.batch_p1 + select(m * params.ld_p1 + k, k * params.ld_p1 + m, TRANS_P);
    return p1[i];
  }
  let i = b * params.batch_p2 + select(m * params.ld_p2 + k, k * params.ld_p2 + m, TRANS_P);
  return p2[i];
}

// Element (k, n) of Q in segment `seg`, or 0 outside (K, Nc).
fn q_at(seg: u32, b: u32, k: u32, n: u32, K: u32) -> f32 {
  if (n >= params.N || k >= K) { return 0.0; }
  if (seg == 0u) {
    let i = b * params.batch_q1 + select(k * params.ld_q1 + n, n * params.ld_q1 + k, TRANS_Q);
    return q1[i];
  }
  let i = b * params.batch_q2 + select(k * params.ld_q2 + n, n * params.ld_q2 + k, TRANS_Q);
  return q2[i];
}

@compute @workgroup_size(16, 16, 1)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let m0 = wg.y * TILE;
  let n0 = wg.x * TILE;
  let b = wg.z;
  var acc: array<array<f32, 4>, 4>;

  for (var seg = 0u; seg < 2u; seg++) {
    let K = select(params.K2, params.K1, seg == 0u);
    let alpha = select(params.alpha2, params.alpha1, seg == 0u);
    for (var k0 = 0u; k0 < K; k0 += BK) {
      // Stage a (BK × TILE) slab of P and of Q. Consecutive threads walk the operand's contiguous axis.
      for (var i = 0u; i < 1024u / THREADS; i++) {
        let e = tid + i * THREADS;
        var kk: u32; var mm: u32;
        if (TRANS_P) { kk = e / TILE; mm = e % TILE; } else { mm = e / BK; kk = e % BK; }
        ps[kk * TILE + mm] = alpha * p_at(seg, b, m0 + mm, k0 + kk, K);
        var nn: u32;
        if (TRANS_Q) { nn = e / BK; kk = e % BK; } else { kk = e / TILE; nn = e % TILE; }
        qs[kk * TILE + nn] = q_at(seg, b, k0 + kk, n0 + nn, K);
      }
      workgroupBarrier();
      for (var kk = 0u; kk < BK; kk++) {
        var pr: array<f32, 4>;
        var qr: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) {
          pr[i] = ps[kk * TILE + lid.y + 16u * i];
          qr[i] = qs[kk * TILE + lid.x + 16u * i];
        }
        for (var i = 0u; i < 4u; i++) {
          for (var j = 0u; j < 4u; j++) {
            acc[i][j] = fma(pr[i], qr[j], acc[i][j]);
          }
        }
      }
      workgroupBarrier();
    }
  }

  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y + 16u * i;
    if (m >= params.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid.x + 16u * j;
      if (n >= params.N) { continue; }
      let idx = b * params.batch_c + m * params.ld_c + n;
      var v = acc[i][j];
      if (params.has_bias != 0u) { v += bias[n]; }
      if (params.accumulate != 0u) { v += c[idx]; }
      c[idx] = v;
    }
  }
}
