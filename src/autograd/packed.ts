// Packed parameters: many small trainable tensors (an adapter's A and B of every layer and target, and any
// other kind an adapter trains) laid out as aligned ranges of a few large "slab" buffers, each slab with a
// twin of the same size that holds the gradients at the same offsets. Ops bind each tensor's range
// (Tensor.binding), the tape puts each gradient in its range of the twin (Tensor.gradAt), and everything
// that touches all parameters at once — zeroing the gradients, AdamW, gradient-norm clipping, the last-good
// copies — runs one dispatch per slab, whatever the number of tensors (issue 14).
//
// Not the optimizer (optimizer.ts runs over a slab like over any buffer) and not the adapter's meaning
// (src/model/gpu_weights.ts says which tensors an adapter has; this file only places a list of them).
//
// Layout: tensors in the order given, each at the next multiple of `align` bytes (the device's
// minStorageBufferOffsetAlignment, 256), a new slab whenever the next would pass `maxSlabBytes` (a slab is
// bound whole by the optimizer, so it stays within maxStorageBufferBindingSize). The gaps hold zeros in
// the values and, once a step has zeroed them, the gradients, and stay zero under every update (AdamW of
// p = g = m = v = 0 is 0).

import type { Gpu } from '../gpu/gpu';
import { Tensor } from './tape';

export interface ParamSpec {
  key: string;
  shape: readonly number[];
  /** Initial values (row-major); zeros when absent. */
  data?: Float32Array;
}

export interface Slab {
  params: GPUBuffer; // (n) the tensors' values and zero gaps
  grads: GPUBuffer; //  (n) their gradients, at the same offsets
  n: number; //         f32 elements of each, gaps included
}

export interface PackedParams {
  /** One persistent trainable tensor per spec, in spec order, each a range of a slab. */
  tensors: Tensor[];
  slabs: Slab[];
}

/** Binding offsets on every WebGPU device are multiples of this (WebGPU's default minStorageBufferOffsetAlignment). */
export const PACK_ALIGN = 256;

/** Each spec's slab and byte offset, and every slab's byte size. */
export function packLayout(specs: readonly ParamSpec[], maxSlabBytes: number, align = PACK_ALIGN): { at: { slab: number; offset: number }[]; slabBytes: number[] } {
  const at: { slab: number; offset: number }[] = [];
  const slabBytes: number[] = [];
  let end = 0;
  for (const s of specs) {
    const bytes = 4 * s.shape.reduce((a, b) => a * b, 1);
    if (bytes > maxSlabBytes) throw new RangeError(`${s.key}: ${bytes} bytes is more than one buffer binding holds on this GPU (${maxSlabBytes})`);
    let offset = Math.ceil(end / align) * align;
    if (slabBytes.length === 0 || offset + bytes > maxSlabBytes) {
      slabBytes.push(0);
      offset = 0;
    }
    at.push({ slab: slabBytes.length - 1, offset });
    end = offset + bytes;
    slabBytes[slabBytes.length - 1] = Math.ceil(end / 16) * 16;
  }
  return { at, slabBytes };
}

/**
 * Place `specs` in slabs of at most `maxSlabBytes` (default: the device's largest binding), upload their
 * values, and return them as trainable tensors whose gradients live in the slabs' twins.
 */
export function packParameters(gpu: Gpu, label: string, specs: readonly ParamSpec[], maxSlabBytes?: number): PackedParams {
  const max = maxSlabBytes ?? Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  const align = Math.max(PACK_ALIGN, gpu.limits.minStorageBufferOffsetAlignment ?? 0);
  const { at, slabBytes } = packLayout(specs, max - (max % align), align);
  // Values and zero gaps go up in one write per slab; the gradients need none (a step zeroes them first).
  const host = slabBytes.map((bytes) => new Float32Array(bytes / 4));
  const slabs: Slab[] = slabBytes.map((bytes, i) => ({
    params: gpu.buffer(`${label}.slab${i}`, bytes), grads: gpu.buffer(`${label}.slab${i}.grad`, bytes), n: bytes / 4,
  }));
  const tensors = specs.map((s, i) => {
    const { slab, offset } = at[i];
    const t = new Tensor(s.key, s.shape, true, slabs[slab].params, offset);
    t.gradAt = { buffer: slabs[slab].grads, offset };
    t.requiresGrad = true;
    if (s.data) {
      if (s.data.length !== t.numel) throw new RangeError(`${s.key}: ${s.data.length} values for a ${s.shape.join('×')} tensor`);
      host[slab].set(s.data, offset / 4);
    }
    return t;
  });
  slabs.forEach((s, i) => gpu.write(s.params, host[i]));
  return { tensors, slabs };
}

/** The slabs `tensors` live in, each once, in order of first use; every tensor must be packed. */
export function slabsOf(tensors: readonly Tensor[]): Slab[] {
  const out = new Map<GPUBuffer, Slab>();
  for (const t of tensors) {
    if (!t.gradAt) throw new Error(`${t.label} is not a packed parameter (packParameters makes them)`);
    if (!out.has(t.buffer!)) out.set(t.buffer!, { params: t.buffer!, grads: t.gradAt.buffer, n: t.buffer!.size / 4 });
  }
  return [...out.values()];
}
