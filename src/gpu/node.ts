// Node entry to WebGPU: Dawn through the `webgpu` npm package. A real GPU is used when Vulkan finds
// one; otherwise we fall back to SwiftShader, the CPU Vulkan driver shipped by Debian's chromium package.
// Never imported by browser code.

import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GpuError } from './errors';
import { Gpu } from './gpu';
import { requestAdapter, requestDevice, type DeviceOptions } from './device';

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/**
 * Every Dawn instance we create stays referenced for the life of the process. With webgpu 0.6.2, a
 * collected `GPU` object frees the native instance while its devices still schedule event processing on
 * it, and the process aborts in InstanceBase::ProcessEvents (seen under gdb).
 */
const keptInstances: GPU[] = [];

export async function createNodeGpu(opts: DeviceOptions = {}): Promise<Gpu> {
  const { create, globals } = await import('webgpu');
  // The WebGPU enums (GPUBufferUsage, ...) are globals in a browser; install Dawn's in Node.
  Object.assign(globalThis, globals);
  // With no GPU device node on Linux, go straight to SwiftShader: trying Vulkan's default drivers first
  // creates an instance that can crash the process when it is collected (see keptInstances).
  const noGpuDevice = process.platform === 'linux' && !existsSync('/dev/dri') && !existsSync('/dev/nvidia0');
  if (noGpuDevice && !process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  // SwiftShader's Vulkan loader prints a warning at every device creation without a runtime dir.
  if (process.platform === 'linux' && !process.env.XDG_RUNTIME_DIR) {
    const dir = join(tmpdir(), `lora-studio-xdg-${process.getuid?.() ?? 0}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  let gpu = create([]) as GPU;
  keptInstances.push(gpu);
  let adapter = await requestAdapter(gpu, opts);
  if (!adapter && !process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    gpu = create([]) as GPU;
    keptInstances.push(gpu);
    adapter = await requestAdapter(gpu, opts);
  }
  if (!adapter) {
    throw new GpuError(
      'no-adapter',
      'No WebGPU adapter in Node: install a Vulkan driver for your GPU, or `apt-get install chromium libvulkan1` for the SwiftShader CPU fallback ' +
        `(then VK_ICD_FILENAMES=${SWIFTSHADER_ICD}).`,
    );
  }
  const { device, info } = await requestDevice(gpu, opts, adapter);
  return new Gpu(device, info);
}
