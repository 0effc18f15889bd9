// One WebGPU device per test file (Dawn in Node: a real GPU if Vulkan finds one, else SwiftShader).
import { afterAll } from 'vitest';
import { createNodeGpu } from '../../src/gpu/node';
import type { Gpu } from '../../src/gpu/gpu';

let gpu: Promise<Gpu> | undefined;

export function testGpu(): Promise<Gpu> {
  if (!gpu) {
    gpu = createNodeGpu();
    afterAll(async () => (await gpu!).destroy());
  }
  return gpu;
}

/** Max |a − b| over elements, divided by max |b|: the tolerance measure the issues state. */
export function relMaxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let diff = 0, mag = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(b[i]));
  }
  return mag === 0 ? diff : diff / mag;
}
