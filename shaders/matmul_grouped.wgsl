// matmul_grouped.wgsl — several independent GEMMs ("jobs") in one dispatch, each with operands of its own:
// a decoder's q, k and v projections of one input, or the LoRA products of one group's backward, cost one
// dispatch instead of one each (issue 14). Each job computes gemm's contract (matmul.wgsl, "version 1", which
// src/autograd/matmul_grouped.ts falls back to and tests/autograd/matmul_grouped.test.ts checks against):
//   C[M, Nc] = (accumulate ? C : 0) + Σ_s alpha_s·P_s[M, K_s]·Q_s[K_s, Nc] (+ bias[Nc])
// with any number of K-segments s (dx = dq·Wq + dk·Wk + dv·Wv is one job of three), each segment's P stored
// (M, K) or, when trans_p, (K, M), and its Q stored (K, Nc) or, when trans_q, (Nc, K).
//
// Glossary: M rows of C, Nc columns of C, K_s the inner size of segment s, TILE the tiled entry's output tile
// (TILE = 8·WG), BK its K step; TM × TN the split-K entry's tile (TM·TN = 256), KS its K slices.
//
// Operands live in eight storage bindings, b0..b5 read-only and b6, b7 read-write (WebGPU guarantees 8 storage
// buffers per stage); a job names its operands by binding number and element offset, so several jobs share a
// binding (x, read by every projection; the adapters' packed slab, read by each A and B) and a dispatch holds
// as many jobs as fit eight distinct buffers. Every binding is array<vec4<f32>>: the tiled entry loads vec4s.
// The jobs' workgroups are laid out one job after another (job.first is a job's first workgroup), so a
// workgroup never straddles two jobs; the grid is 2-D only when it exceeds 65535 workgroups in x.
//
// Two entries over the same jobs:
// - matmul_grouped: the register-blocked tile of matmul_fast.wgsl (read its header for the tiling), with each
//   job's transposes read at run time instead of being pipeline constants;
// - matmul_grouped_splitk: the split-K tile of matmul_splitk.wgsl (K split 16 ways inside a workgroup, partial
//   tiles summed in a fixed order), for the adapters' skinny products (dA, dB with K = B·T).

override WG: u32 = 16u;         // matmul_grouped: threads per side (TILE 128), or 8 (TILE 64)
override ALIGNED: bool = false; // matmul_grouped: every extent, leading dimension and offset a multiple of 4
override TM: u32 = 8u;          // matmul_grouped_splitk: tile rows, 8 (TN = 32) or 32 (TN = 8)
override TN: u32 = 256u / TM;

const MAX_JOBS: u32 = 8u;
const MAX_SEGS: u32 = 12u;
const NONE: u32 = 0xffffffffu; // no bias

struct Params {
  jobs: u32,   // jobs in the table
  grid_x: u32, // workgroups along x; workgroup w is (w % grid_x, w / grid_x)
  total: u32,  // workgroups of all jobs
}

struct Job {
  first: u32,    // its first workgroup
  tiles_n: u32,  // its column tiles
  M: u32,
  N: u32,
  c: u32,        // binding of C (6 or 7)
  c_off: u32,    // C's first element in that binding
  ld_c: u32,
  accumulate: u32,
  bias: u32,     // binding of the bias, or NONE
  bias_off: u32,
  seg0: u32,     // its segments: seg[seg0 .. seg0 + segs)
  segs: u32,
}

struct Seg {
  p: u32,        // binding of P
  p_off: u32,
  ld_p: u32,
  trans_p: u32,  // P stored (K, M)
  q: u32,        // binding of Q
  q_off: u32,
  ld_q: u32,
  trans_q: u32,  // Q stored (Nc, K)
  K: u32,
  alpha: f32,
  pad0: u32,
  pad1: u32,
}

struct Table {
  job: array<Job, MAX_JOBS>,
  seg: array<Seg, MAX_SEGS>,
}

@group(0) @binding(0) var<storage, read> b0: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b1: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b2: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b3: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> b5: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> b6: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> b7: array<vec4<f32>>;
@group(0) @binding(8) var<uniform> params: Params;
@group(0) @binding(9) var<uniform> table: Table;

// ---- operands by binding number ---------------------------------------------------------------------

// The vec4 at vec4 index i of binding `bi`.
fn ld4(bi: u32, i: u32) -> vec4<f32> {
  switch (bi) {
    case 0u: { return b0[i]; }
    case 1u: { return b1[i]; }
    case 2u: { return b2[i]; }
    case 3u: { return b3[i]; }
    case 4u: { return b4[i]; }
    case 5u: { return b5[i]; }
    case 6u: { return b6[i]; }
    default: { return b7[i]; }
  }
}

// Element i of binding `bi`.
fn ld1(bi: u32, i: u32) -> f32 {
  switch (bi) {
    case 0u: { return b0[i >> 2u][i & 3u]; }
    case 1u: { return b1[i >> 2u][i & 3u]; }
    case 2u: { return b2[i >> 2u][i & 3u]; }
    case 3u: { return b3[i >> 2u][i & 3u]; }
    case 4u: { return b4[i >> 2u][i & 3u]; }
    case 5u: { return b5[i >> 2u][i & 3u]; }
    case 6u: { return b6[i >> 2u][i & 3u]; }
    default: { return b7[i >> 2u][i & 3u]; }
  }
}

fn st4(bi: u32, i: u32, v: vec4<f32>) {
  if (bi == 6u) { b6[i] = v; } else { b7[i] = v; }
}

fn st1(bi: u32, i: u32, s: f32) {
  if (bi == 6u) { b6[i >> 2u][i & 3u] = s; } else { b7[i >> 2u][i & 3u] = s; }
}

// The job that workgroup `w` belongs to (jobs are in order of `first`).
fn job_of(w: u32) -> u32 {
  var j = 0u;
  for (var i = 1u; i < params.jobs; i++) {
    if (w >= table.job[i].first) { j = i; }
  }
  return j;
}

// C[m, n..n+3] of job `job` ← v (+ bias, + C when accumulating); columns from N on are skipped.
fn store_c(job: Job, m: u32, n: u32, v: vec4<f32>) {
  let idx = job.c_off + m * job.ld_c + n;
  if (ALIGNED) {
    var r = v;
    if (job.bias != NONE) { r += ld4(job.bias, (job.bias_off + n) >> 2u); }
    if (job.accumulate != 0u) { r += ld4(job.c, idx >> 2u); }
    st4(job.c, idx >> 2u, r);
    return;
  }
  for (var l = 0u; l < 4u; l++) {
    if (n + l >= job.N) { break; }
    var s = v[l];
    if (job.bias != NONE) { s += ld1(job.bias, job.bias_off + n + l); }
    if (job.accumulate != 0u) { s += ld1(job.c, idx + l); }
    st1(job.c, idx + l, s);
  }
}

// ---- matmul_grouped: the register-blocked tile --------------------------------------------------------

const BK: u32 = 16u;
const MAX_UNITS: u32 = 4u; // vec4 loads per thread per operand per slab, at WG = 8 (2 at WG = 16)

override TILE: u32 = 8u * WG;
override T4: u32 = TILE / 4u; // vec4s across a tile
override THREADS: u32 = WG * WG;
override UNITS: u32 = BK * T4 / THREADS; // = 32 / WG

// Slabs of P and Q, k-major: element (k, row) is ps[k·T4 + row/4][row%4], so a thread's 4 rows are one vec4.
var<workgroup> ps: array<vec4<f32>, BK * T4>; // (BK, TILE)
var<workgroup> qs: array<vec4<f32>, BK * T4>; // (BK, TILE)

struct Operand {
  bi: u32,   // binding
  base: u32, // first element
  ld: u32,   // row stride
  rows: u32, // M for P, Nc for Q
  kc: bool,  // stored (rows, K), K contiguous; else (K, rows), rows contiguous
}

// Unit e of this thread's share of a (BK × TILE) slab starting at (k0, r0): four elements along the operand's
// contiguous axis, zero outside (rows, K). Consecutive threads take consecutive vec4s of a row (coalesced).
fn load_unit(o: Operand, r0: u32, k0: u32, K: u32, e: u32) -> vec4<f32> {
  var row: u32; var k: u32;
  if (o.kc) { row = r0 + e / (BK / 4u); k = k0 + 4u * (e % (BK / 4u)); } else { k = k0 + e / T4; row = r0 + 4u * (e % T4); }
  if (ALIGNED) {
    if (row >= o.rows || k >= K) { return vec4<f32>(); }
    return ld4(o.bi, (o.base + select(k * o.ld + row, row * o.ld + k, o.kc)) >> 2u);
  }
  var v = vec4<f32>();
  for (var j = 0u; j < 4u; j++) {
    let rj = select(row + j, row, o.kc);
    let kj = select(k, k + j, o.kc);
    if (rj < o.rows && kj < K) { v[j] = ld1(o.bi, o.base + select(kj * o.ld + rj, rj * o.ld + kj, o.kc)); }
  }
  return v;
}

// Write a loaded unit of operand `op` (0 = P, 1 = Q) into its k-major slab.
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

// grid: one workgroup per TILE × TILE tile of each job's C. Thread (tx, ty) owns the 8 × 8 block of
// matmul_fast.wgsl: rows {4ty.., TILE/2+4ty..} × columns {4tx.., TILE/2+4tx..}.
@compute @workgroup_size(WG, WG, 1)
fn matmul_grouped(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                  @builtin(local_invocation_index) tid: u32) {
  let w = wg.y * params.grid_x + wg.x;
  if (w >= params.total) { return; }
  let job = table.job[job_of(w)];
  let t = w - job.first;
  let m0 = (t / job.tiles_n) * TILE;
  let n0 = (t % job.tiles_n) * TILE;
  var acc: array<vec4<f32>, 16>; // acc[2i + j]: row i of the thread's 8, column group j
  var pr: array<vec4<f32>, MAX_UNITS>; // the next slab, staged in registers
  var qr: array<vec4<f32>, MAX_UNITS>;

  for (var s = job.seg0; s < job.seg0 + job.segs; s++) {
    let seg = table.seg[s];
    let K = seg.K;
    let op_p = Operand(seg.p, seg.p_off, seg.ld_p, job.M, seg.trans_p == 0u);
    let op_q = Operand(seg.q, seg.q_off, seg.ld_q, job.N, seg.trans_q != 0u);
    for (var u = 0u; u < UNITS; u++) {
      if (K == 0u) { break; }
      pr[u] = load_unit(op_p, m0, 0u, K, tid + u * THREADS);
      qr[u] = load_unit(op_q, n0, 0u, K, tid + u * THREADS);
    }
    for (var k0 = 0u; k0 < K; k0 += BK) {
      for (var u = 0u; u < UNITS; u++) {
        store_unit(0u, op_p, tid + u * THREADS, seg.alpha * pr[u]);
        store_unit(1u, op_q, tid + u * THREADS, qr[u]);
      }
      workgroupBarrier();
      if (k0 + BK < K) {
        for (var u = 0u; u < UNITS; u++) {
          pr[u] = load_unit(op_p, m0, k0 + BK, K, tid + u * THREADS);
          qr[u] = load_unit(op_q, n0, k0 + BK, K, tid + u * THREADS);
        }
      }
      for (var kk = 0u; kk < BK; kk++) {
        let a0 = ps[kk * T4 + lid.y];
        let a1 = ps[kk * T4 + WG + lid.y];
        let c0 = qs[kk * T4 + lid.x];
        let c1 = qs[kk * T4 + WG + lid.x];
        for (var i = 0u; i < 4u; i++) {
          acc[2u * i] = fma(vec4<f32>(a0[i]), c0, acc[2u * i]);
          acc[2u * i + 1u] = fma(vec4<f32>(a0[i]), c1, acc[2u * i + 1u]);
          acc[8u + 2u * i] = fma(vec4<f32>(a1[i]), c0, acc[8u + 2u * i]);
          acc[8u + 2u * i + 1u] = fma(vec4<f32>(a1[i]), c1, acc[8u + 2u * i + 1u]);
        }
      }
      workgroupBarrier();
    }
  }

  for (var i = 0u; i < 8u; i++) {
    let m = m0 + (i / 4u) * (TILE / 2u) + 4u * lid.y + i % 4u;
    if (m >= job.M) { continue; }
    for (var j = 0u; j < 2u; j++) {
      let n = n0 + j * (TILE / 2u) + 4u * lid.x;
      if (n >= job.N) { continue; }
      store_c(job, m, n, acc[2u * i + j]);
    }
  }
}

// ---- matmul_grouped_splitk: K split over the threads of a workgroup ---------------------------------------

const KS: u32 = 16u;
const TILE_ELEMS: u32 = 256u; // TM · TN

var<workgroup> partial: array<f32, KS * TILE_ELEMS>; // (KS, TM, TN): each slice's sums, 16 KiB

// Element (m, k) of segment s's P, or 0 outside (M, K).
fn p_at(s: Seg, M: u32, m: u32, k: u32) -> f32 {
  if (m >= M || k >= s.K) { return 0.0; }
  return ld1(s.p, s.p_off + select(m * s.ld_p + k, k * s.ld_p + m, s.trans_p != 0u));
}

// Element (k, n) of segment s's Q, or 0 outside (K, Nc).
fn q_at(s: Seg, N: u32, k: u32, n: u32) -> f32 {
  if (n >= N || k >= s.K) { return 0.0; }
  return ld1(s.q, s.q_off + select(k * s.ld_q + n, n * s.ld_q + k, s.trans_q != 0u));
}

// grid: one workgroup per TM × TN tile of each job's C; 256 threads = KS slices × 16 threads, slice `slice`
// summing k ≡ slice (mod KS), thread t of a slice a 4 × 4 block, as in matmul_splitk.wgsl.
@compute @workgroup_size(256, 1, 1)
fn matmul_grouped_splitk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let w = wg.y * params.grid_x + wg.x;
  if (w >= params.total) { return; }
  let job = table.job[job_of(w)];
  let t0 = w - job.first;
  let m0 = (t0 / job.tiles_n) * TM;
  let n0 = (t0 % job.tiles_n) * TN;
  let slice = tid / 16u;
  let t = tid % 16u;
  let cols = TN / 4u; // threads across the tile: column groups
  let ty = t / cols;
  let tx = t % cols;
  var acc: array<array<f32, 4>, 4>;

  for (var si = job.seg0; si < job.seg0 + job.segs; si++) {
    let s = table.seg[si];
    for (var k = slice; k < s.K; k += KS) {
      var pr: array<f32, 4>;
      var qr: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        pr[i] = s.alpha * p_at(s, job.M, m0 + ty + (TM / 4u) * i, k);
        qr[i] = q_at(s, job.N, k, n0 + tx + cols * i);
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
  if (m >= job.M || n >= job.N) { return; }
  var v = 0.0;
  for (var sl = 0u; sl < KS; sl++) { v += partial[sl * TILE_ELEMS + tid]; }
  let idx = job.c_off + m * job.ld_c + n;
  if (job.bias != NONE) { v += ld1(job.bias, job.bias_off + n); }
  if (job.accumulate != 0u) { v += ld1(job.c, idx); }
  st1(job.c, idx, v);
}
