// Getting a GPUDevice from whatever `GPU` object the platform provides: `navigator.gpu` in a tab or a
// worker, or the `webgpu` package's Dawn in Node (see ./node.ts, kept separate so browser bundles never
// see the native addon). This file is the only place that calls requestAdapter/requestDevice.

import { GpuError, WEBGPU_MISSING_MESSAGE } from './errors';

export interface DeviceOptions {
  /** requestAdapter can hang on a machine whose driver does not answer: give up after this long. */
  adapterTimeoutMs?: number;
  powerPreference?: GPUPowerPreference;
}

export interface GpuInfo {
  /** e.g. "nvidia" or "google/swiftshader" */
  name: string;
  features: string[];
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  /**
   * Kernels may take their subgroup path (`enable subgroups;` shader files): the device has the `subgroups`
   * feature and WGSL has the subgroup_id builtin, which those files use to place each subgroup's partial sum.
   */
  subgroups?: boolean;
}

/** Features we use when present; none is required. */
const WANTED_FEATURES: GPUFeatureName[] = ['subgroups', 'timestamp-query', 'shader-f16'] as GPUFeatureName[];

/**
 * The limits we raise to what the adapter supports instead of the spec defaults (128 MiB bindings,
 * 256 MiB buffers are too small for a 150k-vocabulary embedding).
 */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

export function browserGpu(): GPU {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) throw new GpuError('webgpu-missing', WEBGPU_MISSING_MESSAGE);
  return gpu;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(
      () => reject(new GpuError('adapter-timeout', `${what} did not answer within ${ms} ms: the GPU driver may be hung; restart the browser or the machine and try again.`)),
      ms,
    );
    p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
  });
}

export async function requestAdapter(gpu: GPU, opts: DeviceOptions = {}): Promise<GPUAdapter | null> {
  return withTimeout(
    gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' }),
    opts.adapterTimeoutMs ?? 10_000,
    'navigator.gpu.requestAdapter()',
  );
}

/** A device with the adapter's own limits. Pass `adapter` when the caller already has one. */
export async function requestDevice(gpu: GPU, opts: DeviceOptions = {}, adapter?: GPUAdapter | null): Promise<{ device: GPUDevice; adapter: GPUAdapter; info: GpuInfo }> {
  adapter ??= await requestAdapter(gpu, opts);
  if (!adapter) throw new GpuError('no-adapter', `${WEBGPU_MISSING_MESSAGE} (requestAdapter returned no adapter.)`);
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const device = await adapter.requestDevice({ label: 'LoraStudio.device', requiredFeatures, requiredLimits });
  const adapterInfo = adapter.info;
  const name = [adapterInfo?.vendor, adapterInfo?.architecture].filter(Boolean).join('/') || adapterInfo?.description || 'unknown';
  return {
    device,
    adapter,
    info: {
      name,
      features: [...device.features].map(String).sort(),
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxBufferSize: device.limits.maxBufferSize,
      subgroups: device.features.has('subgroups') && (gpu.wgslLanguageFeatures?.has('subgroup_id') ?? false),
    },
  };
}
