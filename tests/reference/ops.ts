// Float64 CPU reference implementations of every op of a Llama-family transformer with LoRA,
// forward AND backward. Slow and deliberately obvious: plain nested loops, no fusion, no tricks.
// The WebGPU kernels are tested against these; these in turn are checked by central finite
// differences in ops.test.ts.
//
// Dimension glossary (all tensors are Float64Array, row-major, shapes passed as plain numbers):
//   B   batch size
//   T   sequence length
//   N   rows = B*T (row n = b*T + t, i.e. token t of sequence b)
//   C   hidden size (model width)
//   H   number of query (attention) heads
//   KV  number of key/value heads (grouped-query attention; H % KV == 0)
//   D   head dimension (C need not equal H*D in general, but does for Llama)
//   I   MLP intermediate size
//   V   vocabulary size
//   R   LoRA rank (written `r` in argument lists)
//   L   number of decoder layers
//   inF / outF   input / output features of a linear layer
//
// Conventions:
//   * Linear weights use the PyTorch / Hugging Face layout W[outF, inF]: y = x·Wᵀ.
//   * Backward functions take the upstream gradient and RETURN freshly allocated gradient arrays;
//     they never mutate their inputs.
//   * Forward and backward of an op sit side by side with the same stem (fooForward / fooBackward).

export type Ids = Int32Array | number[];

// ───────────────────────────────────────── matmul helpers ─────────────────────────────────────────

/** C[M,N] = A[M,K] · B[N,K]ᵀ. */
export function matmulNT(
  a: Float64Array, // [M, K]
  b: Float64Array, // [N, K]
  M: number,
  N: number,
  K: number,
): Float64Array /* [M, N] */ {
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * b[n * K + k];
      c[m * N + n] = s;
    }
  }
  return c;
}

/** C[M,N] = A[M,K] · B[K,N]. */
export function matmulNN(
  a: Float64Array, // [M, K]
  b: Float64Array, // [K, N]
  M: number,
  N: number,
  K: number,
): Float64Array /* [M, N] */ {
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * b[k * N + n];
      c[m * N + n] = s;
    }
  }
  return c;
}

/** C[M,N] = A[K,M]ᵀ · B[K,N]. */
export function matmulTN(
  a: Float64Array, // [K, M]
  b: Float64Array, // [K, N]
  M: number,
  N: number,
  K: number,
): Float64Array /* [M, N] */ {
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[k * M + m] * b[k * N + n];
      c[m * N + n] = s;
    }
  }
  return c;
}

// ───────────────────────────────────────── plain linear ─────────────────────────────────────────

/** y = x·Wᵀ + bias (a frozen, non-LoRA projection). */
export function linearForward(
  x: Float64Array, // [N, inF]
  W: Float64Array, // [outF, inF]
  bias: Float64Array | undefined, // [outF]
  N: number,
  inF: number,
  outF: number,
): Float64Array /* [N, outF] */ {
  const y = matmulNT(x, W, N, outF, inF);
  if (bias) for (let n = 0; n < N; n++) for (let o = 0; o < outF; o++) y[n * outF + o] += bias[o];
  return y;
}

/** Gradients of linearForward: dx = dy·W, dW = dyᵀ·x, dbias = Σ_rows dy. */
export function linearBackward(
  x: Float64Array, // [N, inF]
  W: Float64Array, // [outF, inF]
  dy: Float64Array, // [N, outF]
  N: number,
  inF: number,
  outF: number,
): { dx: Float64Array /* [N, inF] */; dW: Float64Array /* [outF, inF] */; dbias: Float64Array /* [outF] */ } {
  const dx = matmulNN(dy, W, N, inF, outF);
  const dW = matmulTN(dy, x, outF, inF, N);
  const dbias = new Float64Array(outF);
  for (let n = 0; n < N; n++) for (let o = 0; o < outF; o++) dbias[o] += dy[n * outF + o];
  return { dx, dW, dbias };
}

// ───────────────────────────────────────── LoRA linear ─────────────────────────────────────────

export interface LoraLinearForwardArgs {
  x: Float64Array; // [N, inF]
  W: Float64Array; // [outF, inF] frozen base weight
  bias?: Float64Array; // [outF] optional frozen bias
  A: Float64Array; // [r, inF] LoRA down-projection
  B: Float64Array; // [outF, r] LoRA up-projection
  N: number;
  inF: number;
  outF: number;
  r: number;
  scale: number; // alpha / r
}

/** y = x·Wᵀ + bias + scale·u·Bᵀ with u = x·Aᵀ. Returns u too (saved for backward). */
export function loraLinearForward(args: LoraLinearForwardArgs): {
  y: Float64Array; // [N, outF]
  u: Float64Array; // [N, r]
} {
  const { x, W, bias, A, B, N, inF, outF, r, scale } = args;
  const y = linearForward(x, W, bias, N, inF, outF);
  const u = matmulNT(x, A, N, r, inF);
  const ub = matmulNT(u, B, N, outF, r);
  for (let i = 0; i < N * outF; i++) y[i] += scale * ub[i];
  return { y, u };
}

export interface LoraLinearBackwardArgs {
  x: Float64Array; // [N, inF]
  W: Float64Array; // [outF, inF]
  A: Float64Array; // [r, inF]
  B: Float64Array; // [outF, r]
  u: Float64Array; // [N, r] = x·Aᵀ from the forward
  dy: Float64Array; // [N, outF]
  N: number;
  inF: number;
  outF: number;
  r: number;
  scale: number;
}

/** dB = scale·dyᵀ·u, du = scale·dy·B, dA = duᵀ·x, dx = dy·W + du·A, dbias = Σ_rows dy. */
export function loraLinearBackward(args: LoraLinearBackwardArgs): {
  dx: Float64Array; // [N, inF]
  dA: Float64Array; // [r, inF]
  dB: Float64Array; // [outF, r]
  dbias: Float64Array; // [outF]
} {
  const { x, W, A, B, u, dy, N, inF, outF, r, scale } = args;
  const dB = matmulTN(dy, u, outF, r, N);
  for (let i = 0; i < dB.length; i++) dB[i] *= scale;
  const du = matmulNN(dy, B, N, r, outF);
  for (let i = 0; i < du.length; i++) du[i] *= scale;
  const dA = matmulTN(du, x, r, inF, N);
  const dx = matmulNN(dy, W, N, inF, outF);
  const duA = matmulNN(du, A, N, inF, r);
  for (let i = 0; i < dx.length; i++) dx[i] += duA[i];
  const dbias = new Float64Array(outF);
  for (let n = 0; n < N; n++) for (let o = 0; o < outF; o++) dbias[o] += dy[n * outF + o];
  return { dx, dA, dB, dbias };
}

// ───────────────────────────────────────── DoRA linear ─────────────────────────────────────────
// PEFT's DoraLinearLayer (arXiv:2402.09353): norm[o] = ‖W[o,:] + scale·(B·A)[o,:]‖ (detached: no gradient
// flows through it), g = m / norm, and with the adapter's input xd = x ⊙ keep (lora_dropout; keep = 1 without):
//   y = x·Wᵀ + bias + (g − 1) ⊙ (xd·Wᵀ) + g ⊙ scale·(xd·Aᵀ)·Bᵀ

/** norm[o] = ‖W[o,:] + scale·(B·A)[o,:]‖₂, one per output row. */
export function doraNorm(W: Float64Array, A: Float64Array, B: Float64Array, inF: number, outF: number, r: number, scale: number): Float64Array {
  const norm = new Float64Array(outF);
  for (let o = 0; o < outF; o++) {
    let s = 0;
    for (let i = 0; i < inF; i++) {
      let ba = 0;
      for (let k = 0; k < r; k++) ba += B[o * r + k] * A[k * inF + i];
      const v = W[o * inF + i] + scale * ba;
      s += v * v;
    }
    norm[o] = Math.sqrt(s);
  }
  return norm;
}

export interface DoraLinearArgs extends LoraLinearForwardArgs {
  m: Float64Array; // [outF] magnitude
  keep?: Float64Array; // [N, inF] lora_dropout's keep/(1 − p) factors; absent: no dropout
  /** Use this norm instead of computing it (finite differences hold it fixed, as the detach does). */
  norm?: Float64Array;
}

/** The DoRA linear, computed literally as PEFT writes it. Returns what the backward needs. */
export function doraLinearForward(args: DoraLinearArgs): { y: Float64Array; u: Float64Array; z: Float64Array; norm: Float64Array } {
  const { x, W, bias, A, B, m, keep, N, inF, outF, r, scale } = args;
  const xd = keep ? x.map((v, i) => v * keep[i]) : x;
  const norm = args.norm ?? doraNorm(W, A, B, inF, outF, r, scale);
  const base = linearForward(x, W, bias, N, inF, outF); // PEFT's result: the base layer on x
  const baseD = linearForward(xd, W, undefined, N, inF, outF);
  const u = matmulNT(xd, A, N, r, inF);
  const ub = matmulNT(u, B, N, outF, r);
  const y = new Float64Array(N * outF), z = new Float64Array(N * outF);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < outF; o++) {
      const i = n * outF + o, g = m[o] / norm[o];
      z[i] = baseD[i] + scale * ub[i];
      y[i] = base[i] + (g - 1) * baseD[i] + g * scale * ub[i];
    }
  }
  return { y, u, z, norm };
}

/** dz = g ⊙ dy, dm = Σ_rows dy ⊙ z / norm, then the LoRA backward on xd with dz; dx through both x and xd. */
export function doraLinearBackward(args: DoraLinearArgs & { u: Float64Array; z: Float64Array; norm: Float64Array; dy: Float64Array }): {
  dx: Float64Array; // [N, inF]
  dA: Float64Array; // [r, inF]
  dB: Float64Array; // [outF, r]
  dm: Float64Array; // [outF]
} {
  const { x, W, A, B, m, keep, u, z, norm, dy, N, inF, outF, r, scale } = args;
  const xd = keep ? x.map((v, i) => v * keep[i]) : x;
  const dz = new Float64Array(N * outF), dm = new Float64Array(outF);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < outF; o++) {
      const i = n * outF + o;
      dz[i] = (m[o] / norm[o]) * dy[i];
      dm[o] += (dy[i] * z[i]) / norm[o];
    }
  }
  const lb = loraLinearBackward({ x: xd, W, A, B, u, dy: dz, N, inF, outF, r, scale });
  if (!keep) return { dx: lb.dx, dA: lb.dA, dB: lb.dB, dm };
  const dyW = matmulNN(dy, W, N, inF, outF);
  const dx = dyW.map((v, i) => v + keep[i] * (lb.dx[i] - v));
  return { dx, dA: lb.dA, dB: lb.dB, dm };
}

// ───────────────────────────────────────── embedding ─────────────────────────────────────────

/** out[n] = table[ids[n]]. */
export function embeddingForward(
  ids: Ids, // [N] token ids in [0, V)
  table: Float64Array, // [V, C]
  C: number,
): Float64Array /* [N, C] */ {
  const N = ids.length;
  const out = new Float64Array(N * C);
  for (let n = 0; n < N; n++) {
    const id = ids[n];
    for (let c = 0; c < C; c++) out[n * C + c] = table[id * C + c];
  }
  return out;
}

/** dtable[v] = Σ_{n: ids[n]=v} dout[n] (repeated ids accumulate). */
export function embeddingBackward(
  ids: Ids, // [N]
  dout: Float64Array, // [N, C]
  V: number,
  C: number,
): Float64Array /* [V, C] */ {
  const dtable = new Float64Array(V * C);
  for (let n = 0; n < ids.length; n++) {
    const id = ids[n];
    for (let c = 0; c < C; c++) dtable[id * C + c] += dout[n * C + c];
  }
  return dtable;
}

// ───────────────────────────────────────── RMSNorm ─────────────────────────────────────────

/** y = x · rsqrt(mean(x²) + eps) · w, per row. Returns rstd (per row) for backward. */
export function rmsnormForward(
  x: Float64Array, // [N, C]
  w: Float64Array, // [C]
  N: number,
  C: number,
  eps: number,
): { y: Float64Array /* [N, C] */; rstd: Float64Array /* [N] */ } {
  const y = new Float64Array(N * C);
  const rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[n * C + c] * x[n * C + c];
    const r = 1 / Math.sqrt(ss / C + eps);
    rstd[n] = r;
    for (let c = 0; c < C; c++) y[n * C + c] = x[n * C + c] * r * w[c];
  }
  return { y, rstd };
}

/**
 * With g = dy·w:  dx = rstd·g − rstd³·x·(Σ_c g·x)/C;   dw = Σ_rows dy·x·rstd.
 */
export function rmsnormBackward(
  x: Float64Array, // [N, C]
  w: Float64Array, // [C]
  rstd: Float64Array, // [N] from the forward
  dy: Float64Array, // [N, C]
  N: number,
  C: number,
): { dx: Float64Array /* [N, C] */; dw: Float64Array /* [C] */ } {
  const dx = new Float64Array(N * C);
  const dw = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const r = rstd[n];
    let dot = 0;
    for (let c = 0; c < C; c++) dot += dy[n * C + c] * w[c] * x[n * C + c];
    for (let c = 0; c < C; c++) {
      const i = n * C + c;
      dx[i] = r * dy[i] * w[c] - (r * r * r * x[i] * dot) / C;
      dw[c] += dy[i] * x[i] * r;
    }
  }
  return { dx, dw };
}

// ───────────────────────────────────────── RoPE ─────────────────────────────────────────

/** cos/sin tables [T, D/2] for positions 0..T-1: angle = t · theta^(−2i/D). */
function ropeTables(T: number, D: number, theta: number): { cos: Float64Array; sin: Float64Array } {
  const half = D / 2;
  const cos = new Float64Array(T * half);
  const sin = new Float64Array(T * half);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      // transformers: inv_freq = 1 / (base ** (arange(0, dim, 2) / dim))
      const invFreq = 1 / Math.pow(theta, (2 * i) / D);
      const ang = t * invFreq;
      cos[t * half + i] = Math.cos(ang);
      sin[t * half + i] = Math.sin(ang);
    }
  }
  return { cos, sin };
}

/**
 * Hugging Face Llama rotate-half RoPE, position = t within each sequence. Per head, with
 * x1 = x[:D/2], x2 = x[D/2:]:  out1 = x1·cos − x2·sin,  out2 = x2·cos + x1·sin.
 * (Equivalently out = x·cos + rotate_half(x)·sin with rotate_half(x) = [−x2, x1] and cos/sin
 * duplicated over both halves.)
 */
export function ropeForward(
  x: Float64Array, // [B, T, H, D] viewed as [N, H*D], N = B*T
  B: number,
  T: number,
  H: number, // heads in x (H for queries, KV for keys)
  D: number,
  theta: number,
): Float64Array /* [N, H*D] */ {
  const half = D / 2;
  const { cos, sin } = ropeTables(T, D, theta);
  const out = new Float64Array(B * T * H * D);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const base = ((b * T + t) * H + h) * D;
        for (let i = 0; i < half; i++) {
          const c = cos[t * half + i];
          const s = sin[t * half + i];
          const x1 = x[base + i];
          const x2 = x[base + i + half];
          out[base + i] = x1 * c - x2 * s;
          out[base + i + half] = x2 * c + x1 * s;
        }
      }
    }
  }
  return out;
}

/** Transpose rotation: dx1 = do1·cos + do2·sin,  dx2 = −do1·sin + do2·cos. */
export function ropeBackward(
  dout: Float64Array, // [N, H*D]
  B: number,
  T: number,
  H: number,
  D: number,
  theta: number,
): Float64Array /* [N, H*D] */ {
  const half = D / 2;
  const { cos, sin } = ropeTables(T, D, theta);
  const dx = new Float64Array(B * T * H * D);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const base = ((b * T + t) * H + h) * D;
        for (let i = 0; i < half; i++) {
          const c = cos[t * half + i];
          const s = sin[t * half + i];
          const d1 = dout[base + i];
          const d2 = dout[base + i + half];
          dx[base + i] = d1 * c + d2 * s;
          dx[base + i + half] = -d1 * s + d2 * c;
        }
      }
    }
  }
  return dx;
}

// ───────────────────────────────────────── attention ─────────────────────────────────────────

export interface AttentionForwardArgs {
  q: Float64Array; // [N, H*D] (already rotated)
  k: Float64Array; // [N, KV*D] (already rotated)
  v: Float64Array; // [N, KV*D]
  B: number;
  T: number;
  H: number;
  KV: number;
  D: number;
}

/**
 * Causal grouped-query scaled-dot-product attention. Query head h reads kv head
 * floor(h / (H/KV)). scores[t,s] = q_t·k_s / sqrt(D) for s ≤ t; probs = softmax over s ≤ t
 * (masked entries are exactly 0 in `probs`).
 */
export function attentionForward(args: AttentionForwardArgs): {
  out: Float64Array; // [N, H*D]
  probs: Float64Array; // [B, H, T, T]
} {
  const { q, k, v, B, T, H, KV, D } = args;
  const group = H / KV;
  const scale = 1 / Math.sqrt(D);
  const out = new Float64Array(B * T * H * D);
  const probs = new Float64Array(B * H * T * T);
  const qs = H * D;
  const ks = KV * D;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / group);
      for (let t = 0; t < T; t++) {
        const prow = ((b * H + h) * T + t) * T;
        const qo = (b * T + t) * qs + h * D;
        let mx = -Infinity;
        for (let s = 0; s <= t; s++) {
          const ko = (b * T + s) * ks + kh * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
          probs[prow + s] = dot * scale;
          if (probs[prow + s] > mx) mx = probs[prow + s];
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) {
          probs[prow + s] = Math.exp(probs[prow + s] - mx);
          sum += probs[prow + s];
        }
        for (let s = 0; s <= t; s++) probs[prow + s] /= sum;
        for (let s = 0; s <= t; s++) {
          const vo = (b * T + s) * ks + kh * D;
          const p = probs[prow + s];
          for (let d = 0; d < D; d++) out[qo + d] += p * v[vo + d];
        }
      }
    }
  }
  return { out, probs };
}

export interface AttentionBackwardArgs extends AttentionForwardArgs {
  probs: Float64Array; // [B, H, T, T] from the forward
  dout: Float64Array; // [N, H*D]
}

/**
 * dP[t,s] = dout_t·v_s;  dS = P ⊙ (dP − Σ_s P·dP);  dq_t = scale·Σ_s dS[t,s]·k_s;
 * dk_s = scale·Σ_t dS[t,s]·q_t;  dv_s = Σ_t P[t,s]·dout_t. dk/dv accumulate over the H/KV query
 * heads sharing a kv head.
 */
export function attentionBackward(args: AttentionBackwardArgs): {
  dq: Float64Array; // [N, H*D]
  dk: Float64Array; // [N, KV*D]
  dv: Float64Array; // [N, KV*D]
} {
  const { q, k, v, probs, dout, B, T, H, KV, D } = args;
  const group = H / KV;
  const scale = 1 / Math.sqrt(D);
  const qs = H * D;
  const ks = KV * D;
  const dq = new Float64Array(B * T * qs);
  const dk = new Float64Array(B * T * ks);
  const dv = new Float64Array(B * T * ks);
  const dP = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / group);
      for (let t = 0; t < T; t++) {
        const prow = ((b * H + h) * T + t) * T;
        const qo = (b * T + t) * qs + h * D;
        let rowDot = 0;
        for (let s = 0; s <= t; s++) {
          const vo = (b * T + s) * ks + kh * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += dout[qo + d] * v[vo + d];
          dP[s] = dot;
          rowDot += probs[prow + s] * dot;
        }
        for (let s = 0; s <= t; s++) {
          const p = probs[prow + s];
          const dS = p * (dP[s] - rowDot);
          const ko = (b * T + s) * ks + kh * D;
          for (let d = 0; d < D; d++) {
            dq[qo + d] += scale * dS * k[ko + d];
            dk[ko + d] += scale * dS * q[qo + d];
            dv[ko + d] += p * dout[qo + d];
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}

// ───────────────────────────────────────── SwiGLU ─────────────────────────────────────────

function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

/** h = silu(gate)·up with silu(g) = g·σ(g). */
export function swigluForward(
  gate: Float64Array, // [N, I]
  up: Float64Array, // [N, I]
): Float64Array /* [N, I] */ {
  const h = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) h[i] = gate[i] * sigmoid(gate[i]) * up[i];
  return h;
}

/** dgate = dh·up·σ(g)·(1 + g·(1−σ(g))),  dup = dh·silu(g). */
export function swigluBackward(
  gate: Float64Array, // [N, I]
  up: Float64Array, // [N, I]
  dh: Float64Array, // [N, I]
): { dgate: Float64Array /* [N, I] */; dup: Float64Array /* [N, I] */ } {
  const dgate = new Float64Array(gate.length);
  const dup = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    const sg = sigmoid(g);
    dup[i] = dh[i] * g * sg;
    dgate[i] = dh[i] * up[i] * sg * (1 + g * (1 - sg));
  }
  return { dgate, dup };
}

// ───────────────────────────────────────── cross entropy ─────────────────────────────────────────

export const IGNORE_INDEX = -100;

/**
 * Mean token cross entropy over rows whose target is not IGNORE_INDEX (-100), as
 * torch.nn.functional.cross_entropy(reduction='mean', ignore_index=-100). `probs` is the row
 * softmax of every row (ignored rows included). If every row is ignored, loss = 0 (torch gives NaN).
 */
export function crossEntropyForward(
  logits: Float64Array, // [N, V]
  targets: Ids, // [N], -100 = ignore
  N: number,
  V: number,
): { loss: number; probs: Float64Array /* [N, V] */; count: number } {
  const probs = new Float64Array(N * V);
  let total = 0;
  let count = 0;
  for (let n = 0; n < N; n++) {
    let mx = -Infinity;
    for (let j = 0; j < V; j++) mx = Math.max(mx, logits[n * V + j]);
    let sum = 0;
    for (let j = 0; j < V; j++) sum += Math.exp(logits[n * V + j] - mx);
    const lse = mx + Math.log(sum);
    for (let j = 0; j < V; j++) probs[n * V + j] = Math.exp(logits[n * V + j] - lse);
    const tgt = targets[n];
    if (tgt !== IGNORE_INDEX) {
      total += lse - logits[n * V + tgt];
      count++;
    }
  }
  return { loss: count > 0 ? total / count : 0, probs, count };
}

/** dlogits = (softmax − onehot(target)) / count for non-ignored rows, 0 for ignored (dloss = 1). */
export function crossEntropyBackward(
  probs: Float64Array, // [N, V]
  targets: Ids, // [N]
  N: number,
  V: number,
): Float64Array /* [N, V] */ {
  let count = 0;
  for (let n = 0; n < N; n++) if (targets[n] !== IGNORE_INDEX) count++;
  const dlogits = new Float64Array(N * V);
  if (count === 0) return dlogits;
  for (let n = 0; n < N; n++) {
    const tgt = targets[n];
    if (tgt === IGNORE_INDEX) continue;
    for (let j = 0; j < V; j++) dlogits[n * V + j] = probs[n * V + j] / count;
    dlogits[n * V + tgt] -= 1 / count;
  }
  return dlogits;
}

// ───────────────────────────────────────── residual ─────────────────────────────────────────

/** a + b, elementwise. (Backward: both inputs receive dout unchanged.) */
export function residualAdd(
  a: Float64Array, // [any]
  b: Float64Array, // [same as a]
): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

// ───────────────────────────────────────── optimizers ─────────────────────────────────────────

/** p − lr·g (fresh array). */
export function sgdStep(
  p: Float64Array, // [any]
  g: Float64Array, // [same as p]
  lr: number,
): Float64Array {
  const out = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) out[i] = p[i] - lr * g[i];
  return out;
}

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/**
 * One torch.optim.AdamW step (amsgrad=False, maximize=False), returning fresh arrays:
 *   p *= 1 − lr·wd;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;
 *   bc1 = 1 − β1^step;  bc2 = 1 − β2^step;  p −= (lr/bc1) · m / (sqrt(v)/sqrt(bc2) + eps).
 */
export function adamwStep(
  p: Float64Array, // [any]
  g: Float64Array, // [same]
  m: Float64Array, // [same] first moment
  v: Float64Array, // [same] second moment
  step: number, // 1-based step count (after incrementing)
  hp: AdamWHyper,
): { p: Float64Array; m: Float64Array; v: Float64Array } {
  const { lr, beta1, beta2, eps, weightDecay } = hp;
  const bc1 = 1 - Math.pow(beta1, step);
  const bc2 = 1 - Math.pow(beta2, step);
  const np = new Float64Array(p.length);
  const nm = new Float64Array(p.length);
  const nv = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    let pi = p[i] * (1 - lr * weightDecay);
    nm[i] = beta1 * m[i] + (1 - beta1) * g[i];
    nv[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
    const denom = Math.sqrt(nv[i]) / Math.sqrt(bc2) + eps;
    pi -= (lr / bc1) * (nm[i] / denom);
    np[i] = pi;
  }
  return { p: np, m: nm, v: nv };
}

/**
 * torch.nn.utils.clip_grad_norm_ (L2): totalNorm = sqrt(Σ all g²); coef = maxNorm/(totalNorm+1e-6);
 * grads are scaled by coef only when coef < 1. Returns fresh (possibly unscaled copies of) grads.
 */
export function clipGradNorm(
  grads: Float64Array[], // list of gradient tensors, any shapes
  maxNorm: number,
): { grads: Float64Array[]; totalNorm: number } {
  let ss = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) ss += g[i] * g[i];
  const totalNorm = Math.sqrt(ss);
  const coef = maxNorm / (totalNorm + 1e-6);
  const out = grads.map((g) => {
    const c = new Float64Array(g);
    if (coef < 1) for (let i = 0; i < c.length; i++) c[i] *= coef;
    return c;
  });
  return { grads: out, totalNorm };
}

// ───────────────────────────────────────── whole model ─────────────────────────────────────────

export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

export interface RefConfig {
  vocab: number; // V
  hidden: number; // C
  heads: number; // H
  kvHeads: number; // KV
  headDim: number; // D
  intermediate: number; // I
  layers: number; // L
  rmsEps: number;
  ropeTheta: number;
  tied: boolean; // lm_head shares model.embed_tokens.weight
  attnBias: boolean; // q/k/v projections have biases (Qwen2-style)
  qkNorm?: boolean; // Qwen3: per-head RMSNorm of q and k (weights [D]) between the projection and RoPE
}

export interface RefLora {
  r: number; // R
  alpha: number; // scale = alpha / r
  targets: string[]; // subset of LORA_TARGETS
  /** `layers.{i}.{target}.A` → [r, inF], `layers.{i}.{target}.B` → [outF, r]. */
  weights: Map<string, Float64Array>;
}

export interface RefModel {
  config: RefConfig;
  /** Hugging Face names → frozen weights (see file header / refWeightShapes). */
  weights: Map<string, Float64Array>;
  lora: RefLora;
}

/** [inF, outF] of a layer projection. */
export function projDims(cfg: RefConfig, target: string): [number, number] {
  const C = cfg.hidden;
  const qd = cfg.heads * cfg.headDim;
  const kvd = cfg.kvHeads * cfg.headDim;
  const I = cfg.intermediate;
  switch (target) {
    case 'q_proj':
      return [C, qd];
    case 'k_proj':
    case 'v_proj':
      return [C, kvd];
    case 'o_proj':
      return [qd, C];
    case 'gate_proj':
    case 'up_proj':
      return [C, I];
    case 'down_proj':
      return [I, C];
    default:
      throw new Error(`unknown projection ${target}`);
  }
}

function projWeightName(layer: number, target: string): string {
  const mod = target === 'gate_proj' || target === 'up_proj' || target === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${mod}.${target}`;
}

/** Every frozen weight name of the model with its shape (row-major, HF layout). */
export function refWeightShapes(cfg: RefConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  shapes.set('model.embed_tokens.weight', [cfg.vocab, cfg.hidden]);
  for (let l = 0; l < cfg.layers; l++) {
    shapes.set(`model.layers.${l}.input_layernorm.weight`, [cfg.hidden]);
    shapes.set(`model.layers.${l}.post_attention_layernorm.weight`, [cfg.hidden]);
    if (cfg.qkNorm) {
      shapes.set(`model.layers.${l}.self_attn.q_norm.weight`, [cfg.headDim]);
      shapes.set(`model.layers.${l}.self_attn.k_norm.weight`, [cfg.headDim]);
    }
    for (const t of LORA_TARGETS) {
      const [inF, outF] = projDims(cfg, t);
      shapes.set(`${projWeightName(l, t)}.weight`, [outF, inF]);
      if (cfg.attnBias && (t === 'q_proj' || t === 'k_proj' || t === 'v_proj')) {
        shapes.set(`${projWeightName(l, t)}.bias`, [outF]);
      }
    }
  }
  shapes.set('model.norm.weight', [cfg.hidden]);
  if (!cfg.tied) shapes.set('lm_head.weight', [cfg.vocab, cfg.hidden]);
  return shapes;
}

/** Shapes of the LoRA matrices: `layers.{i}.{target}.A` [r, inF], `.B` [outF, r]. */
export function refLoraShapes(cfg: RefConfig, r: number, targets: string[]): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (let l = 0; l < cfg.layers; l++) {
    for (const t of targets) {
      const [inF, outF] = projDims(cfg, t);
      shapes.set(`layers.${l}.${t}.A`, [r, inF]);
      shapes.set(`layers.${l}.${t}.B`, [outF, r]);
    }
  }
  return shapes;
}

function getW(model: RefModel, name: string): Float64Array {
  const w = model.weights.get(name);
  if (!w) throw new Error(`missing weight ${name}`);
  return w;
}

/** Targets for next-token prediction: row b*T+t predicts ids[b*T+t+1]; the last position is ignored. */
export function shiftTargets(ids: Ids, B: number, T: number): Int32Array {
  const targets = new Int32Array(B * T).fill(IGNORE_INDEX);
  for (let b = 0; b < B; b++) for (let t = 0; t < T - 1; t++) targets[b * T + t] = ids[b * T + t + 1];
  return targets;
}

interface ProjCache {
  x: Float64Array;
  u?: Float64Array;
}

interface LayerCache {
  x: Float64Array; // layer input [N, C]
  rstd1: Float64Array;
  n1: Float64Array;
  q: ProjCache;
  k: ProjCache;
  v: ProjCache;
  qNorm?: { x: Float64Array; rstd: Float64Array }; // q_norm's input [N, H*D] and rstd [N*H] (qkNorm only)
  kNorm?: { x: Float64Array; rstd: Float64Array }; // k_norm's input [N, KV*D] and rstd [N*KV]
  qr: Float64Array;
  kr: Float64Array;
  vv: Float64Array;
  probs: Float64Array;
  attn: ProjCache; // o_proj input
  h: Float64Array; // after attention residual
  rstd2: Float64Array;
  n2: Float64Array;
  gate: Float64Array;
  up: Float64Array;
  gateP: ProjCache;
  upP: ProjCache;
  downP: ProjCache;
}

/** One projection of layer l: LoRA-wrapped when `target` is among lora.targets. */
function projForward(model: RefModel, l: number, target: string, x: Float64Array, N: number): { y: Float64Array; cache: ProjCache } {
  const cfg = model.config;
  const [inF, outF] = projDims(cfg, target);
  const name = projWeightName(l, target);
  const W = getW(model, `${name}.weight`);
  const bias = model.weights.get(`${name}.bias`);
  if (model.lora.targets.includes(target)) {
    const A = model.lora.weights.get(`layers.${l}.${target}.A`);
    const Bm = model.lora.weights.get(`layers.${l}.${target}.B`);
    if (!A || !Bm) throw new Error(`missing LoRA weights for layers.${l}.${target}`);
    const r = model.lora.r;
    const { y, u } = loraLinearForward({ x, W, bias, A, B: Bm, N, inF, outF, r, scale: model.lora.alpha / r });
    return { y, cache: { x, u } };
  }
  return { y: linearForward(x, W, bias, N, inF, outF), cache: { x } };
}

/** Backward of projForward; records dA/dB into `grads` for LoRA targets; returns dx. */
function projBackward(
  model: RefModel,
  l: number,
  target: string,
  cache: ProjCache,
  dy: Float64Array,
  N: number,
  grads: Map<string, Float64Array>,
): Float64Array {
  const cfg = model.config;
  const [inF, outF] = projDims(cfg, target);
  const W = getW(model, `${projWeightName(l, target)}.weight`);
  if (cache.u) {
    const A = model.lora.weights.get(`layers.${l}.${target}.A`)!;
    const Bm = model.lora.weights.get(`layers.${l}.${target}.B`)!;
    const r = model.lora.r;
    const g = loraLinearBackward({ x: cache.x, W, A, B: Bm, u: cache.u, dy, N, inF, outF, r, scale: model.lora.alpha / r });
    grads.set(`layers.${l}.${target}.A`, g.dA);
    grads.set(`layers.${l}.${target}.B`, g.dB);
    return g.dx;
  }
  return matmulNN(dy, W, N, inF, outF);
}

interface ForwardResult {
  loss: number;
  logits: Float64Array; // [N, V]
  probs: Float64Array; // [N, V]
  targets: Int32Array; // [N]
  final: Float64Array; // [N, C] final-norm output
  finalIn: Float64Array; // [N, C] final-norm input
  finalRstd: Float64Array; // [N]
  layers: LayerCache[];
}

function llamaForwardInternal(model: RefModel, ids: Ids, B: number, T: number): ForwardResult {
  const cfg = model.config;
  const { hidden: C, heads: H, kvHeads: KV, headDim: D, vocab: V } = cfg;
  const N = B * T;
  if (ids.length !== N) throw new Error(`ids has ${ids.length} entries, expected B*T = ${N}`);
  const embed = getW(model, 'model.embed_tokens.weight');
  let x = embeddingForward(ids, embed, C);
  const layers: LayerCache[] = [];
  for (let l = 0; l < cfg.layers; l++) {
    const w1 = getW(model, `model.layers.${l}.input_layernorm.weight`);
    const w2 = getW(model, `model.layers.${l}.post_attention_layernorm.weight`);
    const { y: n1, rstd: rstd1 } = rmsnormForward(x, w1, N, C, cfg.rmsEps);
    const q = projForward(model, l, 'q_proj', n1, N);
    const k = projForward(model, l, 'k_proj', n1, N);
    const v = projForward(model, l, 'v_proj', n1, N);
    // Qwen3: q [N, H*D] is [N*H, D] row-major, so q_norm is an RMSNorm over N*H rows of D (k likewise).
    const qn = cfg.qkNorm ? rmsnormForward(q.y, getW(model, `model.layers.${l}.self_attn.q_norm.weight`), N * H, D, cfg.rmsEps) : undefined;
    const kn = cfg.qkNorm ? rmsnormForward(k.y, getW(model, `model.layers.${l}.self_attn.k_norm.weight`), N * KV, D, cfg.rmsEps) : undefined;
    const qr = ropeForward(qn?.y ?? q.y, B, T, H, D, cfg.ropeTheta);
    const kr = ropeForward(kn?.y ?? k.y, B, T, KV, D, cfg.ropeTheta);
    const att = attentionForward({ q: qr, k: kr, v: v.y, B, T, H, KV, D });
    const o = projForward(model, l, 'o_proj', att.out, N);
    const h = residualAdd(x, o.y);
    const { y: n2, rstd: rstd2 } = rmsnormForward(h, w2, N, C, cfg.rmsEps);
    const g = projForward(model, l, 'gate_proj', n2, N);
    const u = projForward(model, l, 'up_proj', n2, N);
    const act = swigluForward(g.y, u.y);
    const dn = projForward(model, l, 'down_proj', act, N);
    layers.push({
      x,
      rstd1,
      n1,
      q: q.cache,
      k: k.cache,
      v: v.cache,
      qNorm: qn && { x: q.y, rstd: qn.rstd },
      kNorm: kn && { x: k.y, rstd: kn.rstd },
      qr,
      kr,
      vv: v.y,
      probs: att.probs,
      attn: o.cache,
      h,
      rstd2,
      n2,
      gate: g.y,
      up: u.y,
      gateP: g.cache,
      upP: u.cache,
      downP: dn.cache,
    });
    x = residualAdd(h, dn.y);
  }
  const { y: final, rstd: finalRstd } = rmsnormForward(x, getW(model, 'model.norm.weight'), N, C, cfg.rmsEps);
  const head = cfg.tied ? embed : getW(model, 'lm_head.weight');
  const logits = matmulNT(final, head, N, V, C);
  const targets = shiftTargets(ids, B, T);
  const ce = crossEntropyForward(logits, targets, N, V);
  return { loss: ce.loss, logits, probs: ce.probs, targets, final, finalIn: x, finalRstd, layers };
}

/** Logits [B*T, V] of the model (LoRA applied). */
export function llamaLogits(model: RefModel, ids: Ids, B: number, T: number): Float64Array /* [N, V] */ {
  return llamaForwardInternal(model, ids, B, T).logits;
}

/** Mean next-token cross entropy of ids [B, T] (positions t < T-1 predict ids[b, t+1]). */
export function llamaLoss(model: RefModel, ids: Ids /* [B*T] */, B: number, T: number): number {
  return llamaForwardInternal(model, ids, B, T).loss;
}

/** llamaLoss and its gradient with respect to every LoRA A/B matrix (keys as in model.lora.weights). */
export function llamaLossAndLoraGrads(
  model: RefModel,
  ids: Ids, // [B*T]
  B: number,
  T: number,
): { loss: number; grads: Map<string, Float64Array> } {
  const cfg = model.config;
  const { hidden: C, heads: H, kvHeads: KV, headDim: D, vocab: V } = cfg;
  const N = B * T;
  const fw = llamaForwardInternal(model, ids, B, T);
  const grads = new Map<string, Float64Array>();

  const dlogits = crossEntropyBackward(fw.probs, fw.targets, N, V);
  const head = cfg.tied ? getW(model, 'model.embed_tokens.weight') : getW(model, 'lm_head.weight');
  const dfinal = matmulNN(dlogits, head, N, C, V);
  let dx = rmsnormBackward(fw.finalIn, getW(model, 'model.norm.weight'), fw.finalRstd, dfinal, N, C).dx;

  for (let l = cfg.layers - 1; l >= 0; l--) {
    const c = fw.layers[l];
    // MLP branch: out = h + down(swiglu(gate(n2), up(n2))).
    const dAct = projBackward(model, l, 'down_proj', c.downP, dx, N, grads);
    const { dgate, dup } = swigluBackward(c.gate, c.up, dAct);
    const dn2 = residualAdd(
      projBackward(model, l, 'gate_proj', c.gateP, dgate, N, grads),
      projBackward(model, l, 'up_proj', c.upP, dup, N, grads),
    );
    const w2 = getW(model, `model.layers.${l}.post_attention_layernorm.weight`);
    const dh = residualAdd(dx, rmsnormBackward(c.h, w2, c.rstd2, dn2, N, C).dx);
    // Attention branch: h = x + o_proj(attn(rope(q), rope(k), v)), q and k through q_norm/k_norm first with qkNorm.
    const dattn = projBackward(model, l, 'o_proj', c.attn, dh, N, grads);
    const { dq, dk, dv } = attentionBackward({ q: c.qr, k: c.kr, v: c.vv, probs: c.probs, dout: dattn, B, T, H, KV, D });
    let dqPre = ropeBackward(dq, B, T, H, D, cfg.ropeTheta);
    let dkPre = ropeBackward(dk, B, T, KV, D, cfg.ropeTheta);
    if (c.qNorm && c.kNorm) {
      dqPre = rmsnormBackward(c.qNorm.x, getW(model, `model.layers.${l}.self_attn.q_norm.weight`), c.qNorm.rstd, dqPre, N * H, D).dx;
      dkPre = rmsnormBackward(c.kNorm.x, getW(model, `model.layers.${l}.self_attn.k_norm.weight`), c.kNorm.rstd, dkPre, N * KV, D).dx;
    }
    let dn1 = projBackward(model, l, 'q_proj', c.q, dqPre, N, grads);
    dn1 = residualAdd(dn1, projBackward(model, l, 'k_proj', c.k, dkPre, N, grads));
    dn1 = residualAdd(dn1, projBackward(model, l, 'v_proj', c.v, dv, N, grads));
    const w1 = getW(model, `model.layers.${l}.input_layernorm.weight`);
    dx = residualAdd(dh, rmsnormBackward(c.x, w1, c.rstd1, dn1, N, C).dx);
  }
  return { loss: fw.loss, grads };
}

/**
 * Deterministic random model for tests: every frozen weight ~ N(0, std) (norm weights ~ 1 + N(0, 0.1)),
 * LoRA A ~ N(0, loraStd) and B ~ N(0, loraStd) (B non-zero so that dA is non-trivial).
 */
export function randomRefModel(
  cfg: RefConfig,
  lora: { r: number; alpha: number; targets: string[] },
  rand: (n: number, std: number) => Float64Array, // e.g. (n, s) => randn(rng, n, s)
  std = 0.3,
  loraStd = 0.3,
): RefModel {
  const weights = new Map<string, Float64Array>();
  for (const [name, shape] of refWeightShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (name.endsWith('norm.weight')) {
      const w = rand(n, 0.1);
      for (let i = 0; i < n; i++) w[i] += 1;
      weights.set(name, w);
    } else {
      weights.set(name, rand(n, std));
    }
  }
  const lw = new Map<string, Float64Array>();
  for (const [name, shape] of refLoraShapes(cfg, lora.r, lora.targets)) {
    lw.set(name, rand(shape[0] * shape[1], loraStd));
  }
  return { config: cfg, weights, lora: { ...lora, weights: lw } };
}
