// The dequant stem: frozen base weights held on the GPU as bf16, f16, NF4 or int8 (how they are stored is
// src/model/gpu_weights.ts's; the quantization itself is src/model/quant.ts's, on the CPU at load), and the
// dispatches of shaders/dequant.wgsl that turn them back into float32. `dequant` is the tape rule: a virtual
// float32 tensor recorded right before the GEMM that reads it, which the caller may register as recomputable
// so it is not kept from the forward to the backward. `tableRows` gives a node rows of a (V, C) table, f32 or
// stored, chunk by chunk. Forward only: a frozen weight has no gradient.
//
// Dequantize-then-GEMM is what bitsandbytes does for QLoRA training: one set of GEMM kernels serves every
// format. A GEMM that dequantizes its tiles as it loads them (no float32 copy at all) is later work.
//
// Shapes: E values, R rows, C columns.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';
import type { UniformLayout } from '../gpu/uniforms';
import { grid, WG } from './elementwise';
import type { Resolve, Tape, Tensor } from './tape';

export const DEQUANT_PARAMS: UniformLayout = [['n', 'u32'], ['first', 'u32'], ['cols', 'u32'], ['offset', 'f32'], ['zero', 'u32']];

/** How a frozen weight is held: float32, two 16-bit floats per word, or quantized (quant.ts). */
export type StoredFormat = 'f32' | 'bf16' | 'f16' | 'nf4' | 'int8';

/** A frozen base weight as it lives on the GPU (built by src/model/gpu_weights.ts). */
export interface StoredWeight {
  label: string;
  format: StoredFormat;
  shape: readonly number[];
  /** f32: (E) values; bf16/f16: ceil(E/2) words of two values; nf4: ceil(E/8) words of eight 4-bit codes; int8: ceil(E/4) words of four codes. */
  data: GPUBuffer;
  /** nf4: (ceil(E/64)) float32 absmax, or with double quantization the dynamic map (256) then absmax2; int8: (R) absmax. */
  scales?: GPUBuffer;
  /** nf4 with double quantization: one 8-bit code per scale, four per word. */
  scaleCodes?: GPUBuffer;
  /** nf4 with double quantization: the mean added back to every scale. */
  offset?: number;
}

const BYTES_PER_VALUE: Record<StoredFormat, number> = { f32: 4, bf16: 2, f16: 2, nf4: 0.5, int8: 1 };

/**
 * out (n) = values [first, first + n) of `w`, as float32.  A 16-bit weight's `data` may be given as a range
 * (`src`) whose value 0 is `first`; the quantized formats bind their whole buffers.
 */
export function dequantForward(gpu: Gpu, label: string, w: StoredWeight, n: number, out: Binding, first = 0, src: Binding = w.data): Dispatch {
  if (w.format === 'f32') throw new Error(`dequant ${w.label}: a float32 weight is read as it is`);
  if (!Number.isInteger(n) || n < 1 || n > 0xffffffff) throw new RangeError(`dequant ${w.label}: ${n} values is not a positive u32`);
  const cols = w.format === 'int8' ? w.shape[1] : 1;
  const params = gpu.uniform(`${label}.dequant_${w.format}.params`, DEQUANT_PARAMS, { n, first, cols, offset: w.offset ?? 0, zero: 0 });
  const double = w.format === 'nf4' && w.scaleCodes !== undefined;
  const pipeline = gpu.pipeline('dequant', `dequant_${w.format}`, w.format === 'nf4' ? { DOUBLE: double ? 1 : 0 } : {});
  const buffers: Binding[] = [params, src, out];
  if (w.format === 'nf4') buffers.push(w.scales!, w.scaleCodes ?? w.data); // single-level: binding 4 is never read
  if (w.format === 'int8') buffers.push(w.scales!);
  // Reads the packed values (and a scale per block or row, mostly cached), writes n floats.
  return gpu.dispatch(`${label}.dequant_${w.format}`, pipeline, buffers, grid(gpu, Math.ceil(n / WG)),
    { flops: w.format === 'nf4' || w.format === 'int8' ? n : 0, bytes: Math.ceil(n * (4 + BYTES_PER_VALUE[w.format])) });
}

/**
 * Tape rule: (rows [r0, r0 + n) of) `w` as a virtual float32 tensor, (n, C), or w's shape when whole. Its
 * buffer lives from this node to its last reader; register it with tape.recomputable so a backward that
 * needs it dequantizes again rather than keeping it.
 */
export function dequant(tape: Tape, label: string, w: StoredWeight, rows?: { r0: number; n: number }): Tensor {
  const gpu = tape.gpu;
  const cols = w.shape.length === 2 ? w.shape[1] : 1;
  const shape = rows ? [rows.n, cols] : w.shape;
  const out = tape.tensor(label, shape);
  const first = rows ? rows.r0 * cols : 0;
  const n = out.numel;
  tape.op(label, [], [out], (b) => {
    if (w.format !== 'bf16' && w.format !== 'f16') return dequantForward(gpu, label, w, n, b(out), first);
    // A 16-bit chunk: bind from the 256-byte offset at or below its first value.
    const start = Math.floor((first * 2) / 256) * 256;
    const size = Math.min(w.data.size - start, Math.ceil(((first - start / 2 + n) * 2) / 4) * 4);
    return dequantForward(gpu, label, w, n, b(out), first - start / 2, { buffer: w.data, offset: start, size });
  });
  return out;
}

/** A (rows, C) table: a persistent float32 tensor, or a stored weight dequantized a chunk at a time. */
export type Table = Tensor | StoredWeight;

/**
 * Rows [r0, r0 + n) of `table` for one node: what the node reads, and their binding. A float32 table gives
 * its own range; a stored one is dequantized into a virtual tensor here, recorded before the node that reads
 * it, so only one chunk of the table exists in float32 at a time.
 */
export function tableRows(tape: Tape, label: string, table: Table, r0: number, n: number): { reads: Tensor[]; bind: (b: Resolve) => Binding } {
  if (!('format' in table)) return { reads: [table], bind: () => table.rows(r0, n) };
  const t = dequant(tape, label, table, { r0, n });
  return { reads: [t], bind: (b) => b(t) };
}
