// Which GEMM kernel the model's linears, LoRA path and LM head run: the register-blocked matmul_fast
// (shaders/matmul_fast.wgsl) by default, or version 1, the plain tiled lora_gemm (shaders/lora_linear.wgsl)
// it is tested against. The choice is per device, so a test or the bench can run one model on each kernel
// and compare; both compute the same contract (GemmSpec), so nothing else changes.
//
// Measured so far only on SwiftShader (CPU), where the fast kernel gives about 2x version 1's FLOP/s
// (`npm run bench -- --quick`, matmul vs matmul_fast); GPU figures: README, Performance.

import type { Dispatch, Gpu } from '../gpu/gpu';
import { gemm, type GemmSpec } from './lora_linear';
import { gemmFast } from './matmul_fast';

export type GemmKernel = 'v1' | 'fast';

const chosen = new WeakMap<Gpu, GemmKernel>();

/** Sets the GEMM kernel for every model recorded on `gpu` from now on. */
export function setGemmKernel(gpu: Gpu, kernel: GemmKernel): void {
  chosen.set(gpu, kernel);
}

export function gemmKernel(gpu: Gpu): GemmKernel {
  return chosen.get(gpu) ?? 'fast';
}

/** One GEMM dispatch on the device's chosen kernel (gemmFast itself falls back to v1 for bindings it cannot view as vec4s). */
export function matmul(gpu: Gpu, label: string, s: GemmSpec): Dispatch {
  return gemmKernel(gpu) === 'fast' ? gemmFast(gpu, label, s) : gemm(gpu, label, s);
}
