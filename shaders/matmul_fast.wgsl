// matmul_fast.wgsl — a register-blocked, vectorised version of the two-segment GEMM of matmul.wgsl.
// That kernel is "version 1": this one computes the same thing and is tested against it
// (tests/autograd/matmul_fast.test.ts). The model runs it by default (src/autograd/matmul.ts); bench/ measures both.
//
// Glossary: M rows of C, Nc columns of C, K1 / K2 the inner size of each segment, TILE the workgroup's
// output tile (TILE = 8·WG), BK the K step.
//
// The contract and the Params struct are matmul.wgsl's gemm:
//   C[M, Nc] = (accumulate ? C : 0) + alpha1·P1[M, K1]·Q1[K1, Nc] + alpha2·P2[M, K2]·Q2[K2, Nc] (+ bias[Nc])
// with P stored (M, K) or, when TRANS_P, (K, M); Q stored (K, Nc) or, when TRANS_Q, (Nc, K); the grid's z is a
// batch index with per-operand batch strides. Every forward linear and the LM head are P·Qᵀ (TRANS_Q: both
// operands K-contiguous); dx is P·Q.
//
// Tiling: a TILE × TILE tile of C per workgroup of WG × WG threads. Thread (tx, ty) owns an 8 × 8 block of C:
// rows {4ty..4ty+3, TILE/2+4ty..TILE/2+4ty+3} × columns {4tx..4tx+3, TILE/2+4tx..TILE/2+4tx+3}. Per k step it
// reads 2 vec4 of P and 2 vec4 of Q from workgroup memory and does 64 FMAs (16 vec4 FMAs): 4 FMAs per float
// read, against 1 in version 1's 4×4 scalar block. Splitting each axis in two halves TILE/2 apart keeps a warp's
// workgroup-memory reads either a broadcast (P) or consecutive vec4s (Q).
// K advances BK at a time through one workgroup buffer per operand; the next slab's global loads are issued
// into registers before the current slab's FMAs (register prefetch), so their latency hides behind the math.
//
// Vectorisation: every operand is bound as array<vec4<f32>>. With ALIGNED (set by the builder when M, Nc, K1,
// K2, every leading dimension and every batch stride are multiples of 4), global loads and C stores move
// whole vec4s, and a vec4 is either wholly inside the matrix or wholly outside it, so one bounds check covers
// four elements. Without ALIGNED the same tiles are filled and stored by bounds-checked scalar accesses
// (element i of a buffer is v[i / 4][i % 4]), so any M, Nc, K works.

override TRANS_P: bool = false;
override TRANS_Q: bool = false;
override ALIGNED: bool = false;
/** Threads per side of the workgroup: 16 (TILE 128) for big GEMMs, 8 (TILE 64) when 128-tiles would leave the GPU idle. */
override WG: u32 = 16u;

const BK: u32 = 16u;
const MAX_UNITS: u32 = 4u; // vec4 loads per thread per operand per slab, at WG = 8 (2 at WG = 16)

override TILE: u32 = 8u * WG;
override T4: u32 = TILE / 4u; // vec4s across a tile
override THREADS: u32 = WG * WG;
override UNITS: u32 = BK * T4 / THREADS; // = 32 / WG

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

@group(0) @binding(0) var<storage, read> p1: array<vec4<f32>>;      // (M, K1) or (K1, M)
@group(0) @binding(1) var<storage, read> q1: array<vec4<f32>>;      // (K1, Nc) or (Nc, K1)
@group(0) @binding(2) var<storage, read> p2: array<vec4<f32>>;      // (M, K2) or (K2, M); unused when K2 = 0
@group(0) @binding(3) var<storage, read> q2: array<vec4<f32>>;      // (K2, Nc) or (Nc, K2)
@group(0) @binding(4) var<storage, read> bias: array<vec4<f32>>;    // (Nc); read only when has_bias
@group(0) @binding(5) var<storage, read_write> c: array<vec4<f32>>; // (M, Nc), row stride ld_c
@group(0) @binding(6) var<uniform> params: Params;

// Slabs of P and Q, k-major: element (k, row) is ps[k·T4 + row/4][row%4], so a thread's 4 rows are one vec4.
var<workgroup> ps: array<vec4<f32>, BK * T4>; // (BK, TILE)
var<workgroup> qs: array<vec4<f32>, BK * T4>; // (BK, TILE)

// ---- global memory: operand `op` (0 = P, 1 = Q) of segment `seg`, by element index ---------------------

fn load1(op: u32, seg: u32, i: u32) -> f32 {
  switch (op * 2u + seg) {
    case 0u: { return p1[i >> 2u][i & 3u]; }
    case 1u: { return p2[i >> 2u][i & 3u]; }
    case 2u: { return q1[i >> 2u][i & 3u]; }
    default: { return q2[i >> 2u][i & 3u]; }
  }
}

// Four consecutive elements from `i` (a multiple of 4 when ALIGNED).
fn load4(op: u32, seg: u32, i: u32) -> vec4<f32> {
  switch (op * 2u + seg) {
    case 0u: { return p1[i >> 2u]; }
    case 1u: { return p2[i >> 2u]; }
    case 2u: { return q1[i >> 2u]; }
    default: { return q2[i >> 2u]; }
  }
}

struct Operand {
  base: u32, // batch offset, in elements
  ld: u32,   // row stride
  rows: u32, // M for P, Nc for Q
  kc: bool,  // stored (rows, K), K contiguous; else (K, rows), rows contiguous
}

fn operand(op: u32, seg: u32, b: u32) -> Operand {
  if (op == 0u) {
    if (seg == 0u) { return Operand(b * params.batch_p1, params.ld_p1, params.M, !TRANS_P); }
    return Operand(b * params.batch_p2, params.ld_p2, params.M, !TRANS_P);
  }
  if (seg == 0u) { return Operand(b * params.batch_q1, params.ld_q1, params.N, TRANS_Q); }
  return Operand(b * params.batch_q2, params.ld_q2, params.N, TRANS_Q);
}

// Unit u of this thread's share of a (BK × TILE) slab starting at (k0, r0): four elements along the operand's
// contiguous axis, zero outside (rows, K). Consecutive threads take consecutive vec4s of a row (coalesced).
fn load_unit(op: u32, seg: u32, o: Operand, r0: u32, k0: u32, K: u32, e: u32) -> vec4<f32> {
  var row: u32; var k: u32;
  if (o.kc) { row = r0 + e / (BK / 4u); k = k0 + 4u * (e % (BK / 4u)); } else { k = k0 + e / T4; row = r0 + 4u * (e % T4); }
  if (ALIGNED) {
    if (row >= o.rows || k >= K) { return vec4<f32>(); }
    return load4(op, seg, o.base + select(k * o.ld + row, row * o.ld + k, o.kc));
  }
  var v = vec4<f32>();
  for (var j = 0u; j < 4u; j++) {
    let rj = select(row + j, row, o.kc);
    let kj = select(k, k + j, o.kc);
    if (rj < o.rows && kj < K) { v[j] = load1(op, seg, o.base + select(kj * o.ld + rj, rj * o.ld + kj, o.kc)); }
  }
  return v;
}

// Write a loaded unit into the k-major slab.
fn store_unit(op: u32, o: Operand, e: u32, v: vec4<f32>) {
  if (o.kc) {
    let row = e / (BK / 4u);
    let k = 4u * (e % (BK / 4u));
    for (var j = 0u; j < 4u; j++) {
      let idx = (k + j) * T4 + row / 4u;
      if (op == 0u) { ps[idx][row % 4u] = v[j]; } else { qs[idx][row % 4u] = v[j]; }
    }
  } else {
    // e = k·T4 + row/4: already the slab's own vec4 index.
    if (op == 0u) { ps[e] = v; } else { qs[e] = v; }
  }
}

// ---- the kernel ------------------------------------------------------------------------------------

@compute @workgroup_size(WG, WG, 1)
fn matmul_fast(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(local_invocation_index) tid: u32) {
  let m0 = wg.y * TILE;
  let n0 = wg.x * TILE;
  let b = wg.z;
  var acc: array<vec4<f32>, 16>; // acc[2i + j]: row i of the thread's 8, column group j
  var pr: array<vec4<f32>, MAX_UNITS>; // the next slab, staged in registers
  var qr: array<vec4<f32>, MAX_UNITS>;

  for (var seg = 0u; seg < 2u; seg++) {
    let K = select(params.K2, params.K1, seg == 0u);
    let alpha = select(params.alpha2, params.alpha1, seg == 0u);
    let op_p = operand(0u, seg, b);
    let op_q = operand(1u, seg, b);
    for (var u = 0u; u < UNITS; u++) {
      if (K == 0u) { break; }
      pr[u] = load_unit(0u, seg, op_p, m0, 0u, K, tid + u * THREADS);
      qr[u] = load_unit(1u, seg, op_q, n0, 0u, K, tid + u * THREADS);
    }
    for (var k0 = 0u; k0 < K; k0 += BK) {
      for (var u = 0u; u < UNITS; u++) {
        store_unit(0u, op_p, tid + u * THREADS, alpha * pr[u]);
        store_unit(1u, op_q, tid + u * THREADS, qr[u]);
      }
      workgroupBarrier();
      if (k0 + BK < K) {
        for (var u = 0u; u < UNITS; u++) {
          pr[u] = load_unit(0u, seg, op_p, m0, k0 + BK, K, tid + u * THREADS);
          qr[u] = load_unit(1u, seg, op_q, n0, k0 + BK, K, tid + u * THREADS);
        }
      }
      for (var kk = 0u; kk < BK; kk++) {
        let a0 = ps[kk * T4 + lid.y];
        let a1 = ps[kk * T4 + WG + lid.y];
        let b0 = qs[kk * T4 + lid.x];
        let b1 = qs[kk * T4 + WG + lid.x];
        for (var i = 0u; i < 4u; i++) {
          acc[2u * i] = fma(vec4<f32>(a0[i]), b0, acc[2u * i]);
          acc[2u * i + 1u] = fma(vec4<f32>(a0[i]), b1, acc[2u * i + 1u]);
          acc[8u + 2u * i] = fma(vec4<f32>(a1[i]), b0, acc[8u + 2u * i]);
          acc[8u + 2u * i + 1u] = fma(vec4<f32>(a1[i]), b1, acc[8u + 2u * i + 1u]);
        }
      }
      workgroupBarrier();
    }
  }

  for (var i = 0u; i < 8u; i++) {
    let m = m0 + (i / 4u) * (TILE / 2u) + 4u * lid.y + i % 4u;
    if (m >= params.M) { continue; }
    for (var j = 0u; j < 2u; j++) {
      let n = n0 + j * (TILE / 2u) + 4u * lid.x;
      if (n >= params.N) { continue; }
      let idx = b * params.batch_c + m * params.ld_c + n;
      var v = acc[2u * i + j];
      if (ALIGNED) {
        if (params.has_bias != 0u) { v += bias[n >> 2u]; }
        if (params.accumulate != 0u) { v += c[idx >> 2u]; }
        c[idx >> 2u] = v;
      } else {
        for (var l = 0u; l < 4u; l++) {
          if (n + l >= params.N) { break; }
          var s = v[l];
          if (params.has_bias != 0u) { s += bias[(n + l) >> 2u][(n + l) & 3u]; }
          if (params.accumulate != 0u) { s += c[(idx + l) >> 2u][(idx + l) & 3u]; }
          c[(idx + l) >> 2u][(idx + l) & 3u] = s;
        }
      }
    }
  }
}
