// A recording GPUDevice: it implements what gpu.ts calls (buffers, shader modules, pipelines, bind groups,
// command encoders and compute passes, queue writes and submits, error scopes, limits, `lost`) and executes
// nothing, counting instead what would have run: buffers and their bytes, dispatches, command buffers,
// bytes written, CPU waits. A Gpu over it builds the real model, trainer and tape exactly as on a GPU, so its
// allocation accounting (allocatedBytes, peakBytes, track) is the engine's own memory plan for that build
// (src/model/memory.ts), and the counts are what a step would submit (the seed of `bench --dry-run`).
//
// It is not an emulator: shaders are neither compiled nor checked, and reads give zeros.

import type { GpuInfo } from './device';
import { Gpu, type Dispatch } from './gpu';

/** What a recording device was asked to do. */
export interface RecordingStats {
  /** Buffers created (pooled reuse creates none) and their bytes; live ones and bytes not yet destroyed. */
  buffers: number;
  bufferBytes: number;
  liveBuffers: number;
  liveBytes: number;
  shaderModules: number;
  pipelines: number;
  bindGroups: number;
  /** Compute passes encoded, dispatches in them (empty grids are skipped), command buffers submitted. */
  passes: number;
  dispatches: number;
  commandBuffers: number;
  submits: number;
  /** queue.writeBuffer calls and the bytes they carried. */
  writes: number;
  writeBytes: number;
  /** Buffer-to-buffer copies (read-backs) and their bytes. */
  copies: number;
  copyBytes: number;
  /** Promises the CPU would wait on for the GPU: mapAsync and onSubmittedWorkDone calls. */
  cpuWaits: number;
}

/** Limits the recording device reports: WebGPU's defaults unless given. */
export type RecordingLimits = Partial<Record<'maxBufferSize' | 'maxStorageBufferBindingSize' | 'maxComputeWorkgroupsPerDimension', number>>;

const DEFAULT_LIMITS = { maxBufferSize: 256 * 2 ** 20, maxStorageBufferBindingSize: 128 * 2 ** 20, maxComputeWorkgroupsPerDimension: 65535 };

export class RecordingDevice {
  readonly label = 'LoraStudio.recording';
  /** The features assumed for a discrete GPU, as DRY_RUN_LIMITS assumes its limits: kernels take their subgroup path. */
  readonly features = new Set<string>(['subgroups', 'timestamp-query']);
  readonly limits: Record<string, number>;
  /** Never lost: nothing runs. */
  readonly lost = new Promise<GPUDeviceLostInfo>(() => {});
  readonly stats: RecordingStats = {
    buffers: 0, bufferBytes: 0, liveBuffers: 0, liveBytes: 0, shaderModules: 0, pipelines: 0, bindGroups: 0,
    passes: 0, dispatches: 0, commandBuffers: 0, submits: 0, writes: 0, writeBytes: 0, copies: 0, copyBytes: 0, cpuWaits: 0,
  };
  readonly queue = {
    label: 'LoraStudio.recording.queue',
    writeBuffer: (_buffer: GPUBuffer, _offset: number, data: BufferSource | SharedArrayBuffer, dataOffset = 0, size?: number) => {
      // WebGPU counts dataOffset and size in elements for a typed array, in bytes for an ArrayBuffer.
      const unit = ArrayBuffer.isView(data) ? ((data as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1) : 1;
      const total = ArrayBuffer.isView(data) ? data.byteLength / unit : (data as ArrayBuffer).byteLength;
      this.stats.writes++;
      this.stats.writeBytes += (size ?? total - dataOffset) * unit;
    },
    submit: (buffers: Iterable<GPUCommandBuffer>) => {
      this.stats.submits++;
      this.stats.commandBuffers += [...buffers].length;
    },
    onSubmittedWorkDone: async () => void this.stats.cpuWaits++,
  };

  /** The label of every pipeline created ("<shader>.<entry>{constants}"), in order: the kernels a build chose. */
  readonly pipelineLabels: string[] = [];

  constructor(limits: RecordingLimits = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  createBuffer(d: GPUBufferDescriptor): GPUBuffer {
    const stats = this.stats;
    stats.buffers++;
    stats.liveBuffers++;
    stats.bufferBytes += d.size;
    stats.liveBytes += d.size;
    let destroyed = false;
    const buffer = {
      label: d.label ?? '',
      size: d.size,
      usage: d.usage,
      mapState: 'unmapped',
      mapAsync: async () => void stats.cpuWaits++,
      getMappedRange: (offset = 0, size?: number) => new ArrayBuffer(size ?? d.size - offset),
      unmap: () => {},
      destroy: () => {
        if (destroyed) return;
        destroyed = true;
        stats.liveBuffers--;
        stats.liveBytes -= d.size;
      },
    };
    return buffer as unknown as GPUBuffer;
  }

  createShaderModule(d: GPUShaderModuleDescriptor): GPUShaderModule {
    this.stats.shaderModules++;
    return { label: d.label ?? '' } as GPUShaderModule;
  }

  createComputePipeline(d: GPUComputePipelineDescriptor): GPUComputePipeline {
    this.stats.pipelines++;
    const label = d.label ?? '';
    this.pipelineLabels.push(label);
    return { label, getBindGroupLayout: (i: number) => ({ label: `${label}.layout${i}` }) } as unknown as GPUComputePipeline;
  }

  createBindGroup(d: GPUBindGroupDescriptor): GPUBindGroup {
    this.stats.bindGroups++;
    return { label: d.label ?? '' } as GPUBindGroup;
  }

  createCommandEncoder(d: GPUCommandEncoderDescriptor = {}): GPUCommandEncoder {
    const stats = this.stats;
    const encoder = {
      label: d.label ?? '',
      beginComputePass: (p: GPUComputePassDescriptor = {}) => {
        stats.passes++;
        return { label: p.label ?? '', setPipeline: () => {}, setBindGroup: () => {}, dispatchWorkgroups: () => void stats.dispatches++, end: () => {} };
      },
      copyBufferToBuffer: (_src: GPUBuffer, _srcOffset: number, _dst: GPUBuffer, _dstOffset: number, size: number) => {
        stats.copies++;
        stats.copyBytes += size;
      },
      finish: () => ({ label: d.label ?? '' }),
    };
    return encoder as unknown as GPUCommandEncoder;
  }

  pushErrorScope(): void {}

  async popErrorScope(): Promise<GPUError | null> {
    return null;
  }

  destroy(): void {}
}

/** A Gpu over a recording device that also keeps every dispatch it encodes, in order (empty grids skipped, as encode skips them). */
export class RecordingGpu extends Gpu {
  declare readonly device: GPUDevice & RecordingDevice;
  readonly encoded: Dispatch[] = [];

  override encode(encoder: GPUCommandEncoder, dispatches: readonly Dispatch[], label?: string): void {
    for (const d of dispatches) if (d.workgroups.every((w) => w > 0)) this.encoded.push(d);
    super.encode(encoder, dispatches, label);
  }
}

/**
 * A Gpu over a fresh recording device: build on it as on a real one, then read its accounting, `device.stats`
 * and the dispatches it encoded (`encoded`, with the costs their ops' builders gave them).
 */
export function recordingGpu(limits: RecordingLimits = {}): RecordingGpu {
  const device = new RecordingDevice(limits);
  const info: GpuInfo = {
    name: 'recording',
    features: [...device.features],
    subgroups: true,
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxBufferSize: device.limits.maxBufferSize,
  };
  return new RecordingGpu(device as unknown as GPUDevice, info);
}
