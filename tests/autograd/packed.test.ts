// Packed parameters (src/autograd/packed.ts): the layout (every tensor on a 256-byte binding offset, a new
// slab when the next would not fit), the tensors' bindings and gradient ranges, and their values round-tripped
// through a slab on the GPU.

import { describe, expect, it } from 'vitest';
import { packLayout, packParameters, slabsOf } from '../../src/autograd/packed';
import { recordingGpu } from '../../src/gpu/recording';
import { testGpu } from '../gpu/test-gpu';

describe('packed parameters', () => {
  it('places each tensor at the next 256-byte offset and opens a new slab when the next would not fit', () => {
    const specs = [{ key: 'a', shape: [3, 5] }, { key: 'b', shape: [64] }, { key: 'c', shape: [1] }, { key: 'd', shape: [100] }];
    const { at, slabBytes } = packLayout(specs, 512);
    // a: 60 bytes at 0; b: 256 bytes at 256; c would start at 512 = the limit: slab 1 at 0; d: 400 bytes at 256 would pass 512: slab 2.
    expect(at).toEqual([{ slab: 0, offset: 0 }, { slab: 0, offset: 256 }, { slab: 1, offset: 0 }, { slab: 2, offset: 0 }]);
    expect(slabBytes).toEqual([512, 16, 400]);
    expect(() => packLayout([{ key: 'big', shape: [129] }], 512)).toThrow(/big: 516 bytes is more than one buffer binding holds/);
  });

  it('binds each tensor as its range of the slab, its gradient at the same range of the twin', () => {
    const gpu = recordingGpu();
    const { tensors, slabs } = packParameters(gpu, 'lora', [{ key: 'A', shape: [2, 3] }, { key: 'B', shape: [4, 2] }]);
    expect(slabs).toHaveLength(1);
    expect(slabs[0].n * 4).toBe(256 + 32);
    const [A, B] = tensors;
    expect(A.binding).toEqual({ buffer: slabs[0].params, offset: 0, size: 24 });
    expect(B.binding).toEqual({ buffer: slabs[0].params, offset: 256, size: 32 });
    expect(B.gradAt).toEqual({ buffer: slabs[0].grads, offset: 256 });
    expect(tensors.every((t) => t.requiresGrad && t.persistent)).toBe(true);
    expect(slabsOf(tensors)).toEqual(slabs);
  });

  it('uploads the values at their offsets, zeros between them', async () => {
    const gpu = await testGpu();
    const a = Float32Array.from([1, 2, 3]), b = Float32Array.from([4, 5]);
    const { tensors, slabs } = packParameters(gpu, 'test.pack', [{ key: 'a', shape: [3], data: a }, { key: 'b', shape: [2], data: b }]);
    const all = await gpu.read(slabs[0].params);
    expect(Array.from(all.slice(0, 3))).toEqual([1, 2, 3]);
    expect(all.slice(3, 64).every((v) => v === 0)).toBe(true);
    expect(Array.from(all.slice(tensors[1].offset / 4, tensors[1].offset / 4 + 2))).toEqual([4, 5]);
    for (const s of slabs) gpu.releaseAll([s.params, s.grads]);
  });
});
