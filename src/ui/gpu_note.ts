// What the studio says about the GPU beside the training speed: on SwiftShader (Chromium's CPU
// implementation of a GPU, what a machine without a usable GPU driver gets) every figure the Train panel
// shows is that of a CPU, so the user learns why it is slow and what a real GPU would change. Pure: the panel
// passes the GpuInfo the worker reported when it started (gpu/device.ts names the adapter "vendor/architecture",
// else its description).

import type { GpuInfo } from '../worker/protocol';

export const SWIFTSHADER_NOTE = 'SwiftShader: a CPU emulation of a GPU; a real GPU is typically 100–1000× faster.';

/** Whether the adapter is SwiftShader, by any of the names it goes by ("google/swiftshader", "SwiftShader Device (Subzero)"). */
export function isSwiftShader(info: Pick<GpuInfo, 'name'> | null): boolean {
  return info !== null && /swiftshader/i.test(info.name);
}

/** The note to show beside the speed, or null on a real GPU (or before the GPU is known). */
export function gpuSpeedNote(info: Pick<GpuInfo, 'name'> | null): string | null {
  return isSwiftShader(info) ? SWIFTSHADER_NOTE : null;
}
