// matmul_splitk.wgsl — the two-segment GEMM of matmul.wgsl for skinny shapes: one side of C is a LoRA rank
// (M or Nc ≤ 16) and K is long (the adapters' dA += duᵀ·x and dB += s·dyᵀ·u have K = B·T tokens). There the
// 64- and 128-wide tiles of matmul.wgsl and matmul_fast.wgsl leave most of each tile empty and give a few
// workgroups each a K loop thousands long; this kernel splits K over the threads of a workgroup instead.
// It computes exactly gemm's contract and is tested against version 1 and float64
// (tests/autograd/matmul_splitk.test.ts); src/autograd/matmul_fast.ts's gemmChoice says when it runs.
//
// Glossary: M rows of C, Nc columns of C, K1 / K2 the inner size of each segment, TM × TN the workgroup's
// output tile (TM·TN = 256), KS the K slices of a workgroup.
//
//   C[M, Nc] = (accumulate ? C : 0) + alpha1·P1[M, K1]·Q1[K1, Nc] + alpha2·P2[M, K2]·Q2[K2, Nc] (+ bias[Nc])
// with P read as (M, K) or, when TRANS_P, stored as (K, M); Q read as (K, Nc) or, when TRANS_Q, stored (Nc, K).
// The grid's z is a batch index with per-operand batch strides.
//
// Split-K inside one workgroup: 256 threads = KS = 16 slices × 16 threads. Slice s sums k ≡ s (mod KS);
// thread t of a slice owns a 4 × 4 block of the tile, rows t / (TN/4) + (TM/4)·i and columns t % (TN/4) +
// (TN/4)·j, so neighbouring threads read neighbouring columns. Operands are read straight from global memory
// (the tile is too small for workgroup staging to pay). The 16 partial tiles meet in workgroup memory and each
// thread sums one output over the slices, in a fixed order: the result is deterministic, and one dispatch
// with no scratch buffer does what a split across workgroups would need two dispatches and a buffer for.

override TRANS_P: bool = false;
override TRANS_Q: bool = false;
/** Tile rows: 8 when M is the rank (TN = 32), 32 when Nc is (TN = 8). */
override TM: u32 = 8u;
override TN: u32 = 256u / TM;

const KS: u32 = 16u;
const TILE_ELEMS: u32 = 256u; // TM · TN

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

var<workgroup> partial: array<f32, KS * TILE_ELEMS>; // (KS, TM, TN): each slice's sums, 16 KiB

// Element (m, k) of P in segment `seg`, or 0 outside (M, K).
fn p_at(seg: u32, b: u32, m: u32, k: u32, K: u32) -> f32 {
  if (m >= params.M || k >= K) { return 0.0; }
  if (seg == 0u) { return p1[b * params.batch_p1 + select(m * params.ld_p1 + k, k * params.ld_p1 + m, TRANS_P)]; }
  return p2[b * params.batch_p2 + select(m * params.ld_p2 + k, k * params.ld_p2 + m, TRANS_P)];
}

// Element (k, n) of Q in segment `seg`, or 0 outside (K, Nc).
fn q_at(seg: u32, b: u32, k: u32, n: u32, K: u32) -> f32 {
  if (n >= params.N || k >= K) { return 0.0; }
  if (seg == 0u) { return q1[b * params.batch_q1 + select(k * params.ld_q1 + n, n * params.ld_q1 + k, TRANS_Q)]; }
  return q2[b * params.batch_q2 + select(k * params.ld_q2 + n, n * params.ld_q2 + k, TRANS_Q)];
}

@compute @workgroup_size(256, 1, 1)
fn matmul_splitk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let m0 = wg.y * TM;
  let n0 = wg.x * TN;
  let b = wg.z;
  let slice = tid / 16u;
  let t = tid % 16u;
  let cols = TN / 4u; // threads across the tile: column groups
  let ty = t / cols;
  let tx = t % cols;
  var acc: array<array<f32, 4>, 4>;

  for (var seg = 0u; seg < 2u; seg++) {
    let K = select(params.K2, params.K1, seg == 0u);
    let alpha = select(params.alpha2, params.alpha1, seg == 0u);
    for (var k = slice; k < K; k += KS) {
      var pr: array<f32, 4>;
      var qr: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        pr[i] = alpha * p_at(seg, b, m0 + ty + (TM / 4u) * i, k, K);
        qr[i] = q_at(seg, b, k, n0 + tx + cols * i, K);
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i][j] = fma(pr[i], qr[j], acc[i][j]);
        }
      }
    }
  }

  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      partial[slice * TILE_ELEMS + (ty + (TM / 4u) * i) * TN + tx + cols * j] = acc[i][j];
    }
  }
  workgroupBarrier();

  // Thread tid sums output tid of the tile over the slices, in slice order.
  let m = m0 + tid / TN;
  let n = n0 + tid % TN;
  if (m >= params.M || n >= params.N) { return; }
  var v = 0.0;
  for (var s = 0u; s < KS; s++) { v += partial[s * TILE_ELEMS + tid]; }
  let idx = b * params.batch_c + m * params.ld_c + n;
  if (params.has_bias != 0u) { v += bias[n]; }
  if (params.accumulate != 0u) { v += c[idx]; }
  c[idx] = v;
}
