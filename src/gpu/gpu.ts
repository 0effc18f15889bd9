// Gpu: the device plus everything that creates GPU objects — labelled pipelines (cached), pooled buffers,
// uniform buffers, bind groups, submission and read-back. Nothing outside src/gpu calls device.create*.
//
// Allocation tracking: `track(make)` returns what `make` built with every buffer it took from this Gpu, so a
// trainer or generator can hand them all back to the pool (`releaseAll`) when it is replaced; allocatedBytes
// and peakBytes count what the device holds. On a recording device (recording.ts) the same accounting is
// the memory plan of whatever was built (src/model/memory.ts).
//
// Work is described as Dispatch records (pipeline + bind group + grid). Ops build them; the caller decides
// when to encode: `run()` for one-off work, or the autograd tape, which records a whole training step once
// and replays its dispatches into a single command buffer each step.

import type { GpuInfo } from './device';
import { GpuError } from './errors';
import { SHADERS, type ShaderName } from './shaders';
import { packUniform, type UniformLayout } from './uniforms';

export interface Dispatch {
  label: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: readonly [number, number, number];
  /** Uniform buffers made for this dispatch alone; release them with releaseDispatches() when done. */
  uniforms: GPUBuffer[];
  /** What the work costs, as its op's builder states it (`bench --dry-run` sums these per kernel family). */
  cost?: DispatchCost;
}

/**
 * The cost of one dispatch, by the op's own arithmetic, not by any kernel's: flops counts floating-point
 * operations (a multiply-add is 2; an exp, a division or a square root is 1); bytes is the least global-memory
 * traffic the op needs (every operand read once, every output written once, read too when accumulated), the
 * figure a roofline divides by. Kernels re-read tiles through caches, which neither counts.
 */
export interface DispatchCost {
  flops: number;
  bytes: number;
}

/** What may take over Gpu.encode: the Profiler (profiler.ts), which times each dispatch. */
export interface EncodeHook {
  encode(encoder: GPUCommandEncoder, dispatches: readonly Dispatch[], label: string): void;
}

/** A whole buffer, or a range of one ({buffer, offset, size}; offset a multiple of 256 bytes). */
export type Binding = GPUBuffer | GPUBufferBinding;

export type TypedArray = Float32Array | Uint32Array | Int32Array;

/** Something built on the GPU together with every buffer it took from the Gpu (see Gpu.track). */
export interface Tracked<T> {
  value: T;
  buffers: GPUBuffer[];
}

const STORAGE = 0x0080 | 0x0004 | 0x0008; // STORAGE | COPY_SRC | COPY_DST (numeric so this file needs no globals at import)
const UNIFORM_USAGE = 0x0040; // GPUBufferUsage.UNIFORM
const UNIFORM = UNIFORM_USAGE | 0x0008; // UNIFORM | COPY_DST

export class Gpu {
  readonly device: GPUDevice;
  readonly info: GpuInfo;
  private modules = new Map<ShaderName, GPUShaderModule>();
  private pipelines = new Map<string, GPUComputePipeline>();
  /** Released buffers by "usage:size", handed out again before anything new is allocated. */
  private pool = new Map<string, GPUBuffer[]>();
  /** Open track() scopes, innermost last: each records every buffer handed out while it is open. */
  private scopes: GPUBuffer[][] = [];
  /** Bytes currently allocated by this Gpu (pooled ones included) and the most ever allocated. */
  allocatedBytes = 0;
  peakBytes = 0;
  lost: GPUDeviceLostInfo | null = null;
  /**
   * Whether ops build their subgroup pipelines (rmsnorm, cross-entropy, attention's forward: `<op>_subgroups.wgsl`): true when the
   * device can (GpuInfo.subgroups). A test sets it false to run the plain path on the same device.
   */
  subgroups: boolean;
  /** While set, every encode goes through it (bench --profile attaches a Profiler for one step). */
  profiler: EncodeHook | null = null;

  constructor(device: GPUDevice, info: GpuInfo) {
    this.device = device;
    this.info = info;
    this.subgroups = info.subgroups ?? false;
    device.lost.then((l) => { this.lost = l; });
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  // ---- pipelines -------------------------------------------------------------------------------------

  private module(shader: ShaderName): GPUShaderModule {
    let m = this.modules.get(shader);
    if (!m) {
      m = this.device.createShaderModule({ label: `${shader}.wgsl`, code: SHADERS[shader] });
      this.modules.set(shader, m);
    }
    return m;
  }

  /** A compute pipeline for `entry` in `shader`, specialised by `override` constants; cached. */
  pipeline(shader: ShaderName, entry: string, constants: Record<string, number> = {}): GPUComputePipeline {
    const keys = Object.keys(constants).sort();
    const key = `${shader}.${entry}` + (keys.length ? `{${keys.map((k) => `${k}=${constants[k]}`).join(',')}}` : '');
    let p = this.pipelines.get(key);
    if (!p) {
      p = this.device.createComputePipeline({
        label: key,
        layout: 'auto',
        compute: { module: this.module(shader), entryPoint: entry, constants },
      });
      this.pipelines.set(key, p);
    }
    return p;
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  // ---- buffers ---------------------------------------------------------------------------------------

  /** A storage buffer of at least `bytes` (rounded up to 16), reused from the pool when one is free. */
  buffer(label: string, bytes: number, usage = STORAGE): GPUBuffer {
    return this.take(label, bytes, usage, true);
  }

  /**
   * A storage buffer of `bytes` zeros: always a new one, which WebGPU zero-fills, never a pooled one that
   * still holds old values. A model built from shapes alone (the memory plan) gets its weights here.
   */
  zeros(label: string, bytes: number): GPUBuffer {
    return this.take(label, bytes, STORAGE, false);
  }

  private take(label: string, bytes: number, usage: number, pooled: boolean): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (size > this.device.limits.maxBufferSize) {
      throw new GpuError('out-of-memory', `${label}: ${size} bytes exceeds this GPU's largest buffer (${this.device.limits.maxBufferSize} bytes).`);
    }
    let buf = pooled ? this.pool.get(`${usage}:${size}`)?.pop() : undefined;
    if (buf) {
      buf.label = label;
    } else {
      buf = this.device.createBuffer({ label, size, usage });
      this.allocatedBytes += size;
      this.peakBytes = Math.max(this.peakBytes, this.allocatedBytes);
    }
    for (const scope of this.scopes) scope.push(buf);
    return buf;
  }

  /**
   * Runs `make` and returns what it built with every buffer it took here (parameters' gradients, optimizer
   * moments, the tape's activations, uniforms: Trainer, Evaluator and Generator take all theirs from this
   * Gpu), to give back with releaseAll() when it is dropped. Scopes nest: a buffer counts in each open one.
   */
  track<T>(make: () => T): Tracked<T> {
    const buffers: GPUBuffer[] = [];
    this.scopes.push(buffers);
    try {
      return { value: make(), buffers };
    } finally {
      this.scopes.splice(this.scopes.lastIndexOf(buffers), 1);
    }
  }

  /** Give every buffer of a track() back to the pool. Only once no queued work still reads them. */
  releaseAll(buffers: readonly GPUBuffer[]): void {
    for (const b of buffers) this.release(b);
  }

  /** Give a buffer back to the pool. Only do this once no queued work still reads it. */
  release(buf: GPUBuffer): void {
    const key = `${buf.usage}:${buf.size}`;
    let free = this.pool.get(key);
    if (!free) this.pool.set(key, (free = []));
    free.push(buf);
  }

  /** Return the uniform buffers of finished one-off dispatches to the pool. */
  releaseDispatches(dispatches: readonly Dispatch[]): void {
    for (const d of dispatches) for (const u of d.uniforms) this.release(u);
  }

  /** Destroy pooled buffers (the pool otherwise keeps them for reuse). */
  trimPool(): void {
    for (const list of this.pool.values()) for (const b of list) { this.allocatedBytes -= b.size; b.destroy(); }
    this.pool.clear();
  }

  upload(label: string, data: TypedArray): GPUBuffer {
    const buf = this.buffer(label, data.byteLength);
    this.write(buf, data);
    return buf;
  }

  write(buf: GPUBuffer, data: TypedArray, byteOffset = 0): void {
    // writeBuffer needs a multiple of 4 bytes, which every TypedArray we use already is.
    this.device.queue.writeBuffer(buf, byteOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** A uniform buffer holding `values` laid out by `layout` (see uniforms.ts). */
  uniform(label: string, layout: UniformLayout, values: Record<string, number>): GPUBuffer {
    const bytes = packUniform(layout, values);
    const buf = this.buffer(label, bytes.byteLength, UNIFORM);
    this.device.queue.writeBuffer(buf, 0, bytes);
    return buf;
  }

  // ---- dispatch ----------------------------------------------------------------------------------------

  /**
   * A dispatch binding `buffers[i]` at @binding(i) of @group(0). A binding may be a range of a buffer,
   * {buffer, offset, size}, with offset a multiple of minStorageBufferOffsetAlignment (256 bytes). `cost`:
   * what the op's builder says the work costs (see DispatchCost).
   */
  dispatch(label: string, pipeline: GPUComputePipeline, buffers: Binding[], workgroups: readonly [number, number, number], cost?: DispatchCost): Dispatch {
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (workgroups.some((w) => w > max)) throw new GpuError('validation', `${label}: grid ${workgroups.join('×')} exceeds ${max} workgroups per dimension.`);
    const bindGroup = this.device.createBindGroup({
      label,
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((b, binding) => ({ binding, resource: 'buffer' in b ? b : { buffer: b } })),
    });
    const uniforms = buffers.filter((b): b is GPUBuffer => !('buffer' in b) && (b.usage & UNIFORM_USAGE) !== 0);
    return { label, pipeline, bindGroup, workgroups, uniforms, ...(cost && { cost }) };
  }

  /** Record dispatches into one compute pass of `encoder`. */
  encode(encoder: GPUCommandEncoder, dispatches: readonly Dispatch[], label = 'LoraStudio.pass'): void {
    if (this.profiler) return this.profiler.encode(encoder, dispatches, label);
    const pass = encoder.beginComputePass({ label });
    for (const d of dispatches) {
      if (d.workgroups[0] === 0 || d.workgroups[1] === 0 || d.workgroups[2] === 0) continue;
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
    }
    pass.end();
  }

  /** Encode and submit dispatches as one command buffer. */
  run(dispatches: readonly Dispatch[], label = 'LoraStudio.run'): void {
    const encoder = this.device.createCommandEncoder({ label });
    this.encode(encoder, dispatches, label);
    this.device.queue.submit([encoder.finish()]);
  }

  // ---- read-back ---------------------------------------------------------------------------------------

  /** Copy `bytes` from `buf` (default: all of it) to the CPU. Waits for all queued work. */
  async readBytes(buf: GPUBuffer, bytes = buf.size, byteOffset = 0): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ label: `${buf.label}.readback`, size, usage: 0x0001 | 0x0008 }); // MAP_READ | COPY_DST
    const encoder = this.device.createCommandEncoder({ label: `${buf.label}.readback` });
    encoder.copyBufferToBuffer(buf, byteOffset, staging, 0, size);
    this.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(0x0001);
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    if (this.lost) throw new GpuError('device-lost', `The GPU device was lost (${this.lost.message}). Reload the page; your saved adapters are kept.`);
    return out;
  }

  async read(buf: GPUBuffer, count?: number, offset = 0): Promise<Float32Array> {
    return new Float32Array(await this.readBytes(buf, (count ?? buf.size / 4) * 4, offset * 4));
  }

  /** Surface validation / out-of-memory errors raised by `fn`'s GPU calls as a GpuError. */
  async checked<T>(what: string, fn: () => T): Promise<T> {
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    const result = fn();
    const validation = await this.device.popErrorScope();
    const oom = await this.device.popErrorScope();
    if (oom) throw new GpuError('out-of-memory', `${what}: the GPU ran out of memory (${oom.message}). Use a smaller batch, sequence length or model.`);
    if (validation) throw new GpuError('validation', `${what}: ${validation.message}`);
    return result;
  }

  destroy(): void {
    this.trimPool();
    this.device.destroy();
  }
}
