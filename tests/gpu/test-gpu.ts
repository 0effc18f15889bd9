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

/** The two ways an op with a subgroup variant reduces: `<op>_subgroups.wgsl`, or the plain `<op>.wgsl`. */
export const REDUCTION_PATHS = ['subgroups', 'plain'] as const;
export type ReductionPath = (typeof REDUCTION_PATHS)[number];

/**
 * This file's device with ops building their `path` pipelines (Gpu.subgroups). SwiftShader has subgroups (size
 * 4), so CI runs both paths; a device without them fails the subgroup tests by name rather than skip them.
 */
export async function testGpuOn(path: ReductionPath): Promise<Gpu> {
  const gpu = await testGpu();
  if (path === 'subgroups' && !gpu.info.subgroups) {
    throw new Error(`${gpu.info.name} has no 'subgroups' feature (or WGSL subgroup_id), so the subgroup path cannot be tested here`);
  }
  gpu.subgroups = path === 'subgroups';
  return gpu;
}

/** The shader a dispatch's pipeline comes from (its label is "<shader>.<entry>{constants}"). */
export const shaderOf = (d: { pipeline: { label: string } }) => d.pipeline.label.split('.')[0];
