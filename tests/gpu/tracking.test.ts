// Allocation tracking in the Gpu: track() returns what was built with every buffer it took (new or pooled,
// uploads and uniforms included, nested scopes each see theirs), releaseAll() gives them back so the next
// build of the same shapes allocates nothing new, a throwing build closes its scope, and zeros() never
// hands out a pooled buffer that still holds old values.

import { describe, expect, it } from 'vitest';
import { testGpu } from './test-gpu';
import { ELEMENTWISE_PARAMS } from '../../src/autograd/elementwise';

describe('Gpu allocation tracking', () => {
  it('records every buffer a build takes, and releaseAll lets the next build reuse them', async () => {
    const gpu = await testGpu();
    const build = () => {
      const a = gpu.buffer('tracking.a', 100); // rounded up to 112
      const b = gpu.upload('tracking.b', new Float32Array(64));
      const u = gpu.uniform('tracking.u', ELEMENTWISE_PARAMS, { n: 1, value: 0 });
      return { a, b, u };
    };
    const before = gpu.allocatedBytes;
    const first = gpu.track(build);
    expect(first.buffers).toEqual([first.value.a, first.value.b, first.value.u]);
    const grown = gpu.allocatedBytes - before;
    expect(grown).toBe(112 + 256 + first.value.u.size);
    expect(gpu.peakBytes).toBeGreaterThanOrEqual(gpu.allocatedBytes);

    gpu.releaseAll(first.buffers);
    const second = gpu.track(build);
    expect(gpu.allocatedBytes - before, 'the second build came from the pool').toBe(grown);
    expect(new Set(second.buffers)).toEqual(new Set(first.buffers));
    expect(second.value.a.label).toBe('tracking.a');
    gpu.releaseAll(second.buffers);
  });

  it('nests scopes, and closes a scope whose build throws', async () => {
    const gpu = await testGpu();
    const outer = gpu.track(() => {
      const x = gpu.buffer('tracking.outer', 32);
      const inner = gpu.track(() => gpu.buffer('tracking.inner', 48));
      return { x, inner };
    });
    expect(outer.value.inner.buffers).toEqual([outer.value.inner.value]);
    expect(outer.buffers).toEqual([outer.value.x, outer.value.inner.value]);

    expect(() => gpu.track(() => {
      gpu.buffer('tracking.failed', 64);
      throw new Error('build failed');
    })).toThrow('build failed');
    const after = gpu.track(() => gpu.buffer('tracking.after', 80));
    expect(after.buffers).toEqual([after.value]);
    const untracked = gpu.buffer('tracking.untracked', 96);
    expect(after.buffers).not.toContain(untracked);
    gpu.releaseAll([...outer.buffers, ...after.buffers, untracked]);
  });

  it('zeros() is a new zero-filled buffer even when the pool holds one of its size', async () => {
    const gpu = await testGpu();
    const used = gpu.upload('tracking.used', new Float32Array(16).fill(7));
    gpu.release(used);
    const z = gpu.track(() => gpu.zeros('tracking.zeros', 64));
    expect(z.value).not.toBe(used);
    expect(z.buffers).toEqual([z.value]);
    expect([...(await gpu.read(z.value))]).toEqual(new Array(16).fill(0));
    expect(gpu.buffer('tracking.reused', 64), 'buffer() still reuses the pooled one').toBe(used);
  });
});
