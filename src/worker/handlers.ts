// What the worker does for each request, as plain async functions of (gpu, request) → response body.
// They know nothing of postMessage, so the same code can run under Node's Dawn in a test.
// engine.worker.ts owns the device and the message loop; this file owns no state.

import { runLoraLinear } from '../autograd/lora_linear';
import type { Gpu } from '../gpu/gpu';
import { parseLoraLinearInput } from '../io/lora_linear_input';
import type { EngineRequest, Matrix, ResponseBody } from './protocol';

type LoraLinearRequest = Extract<EngineRequest, { type: 'loraLinear' }>;

/**
 * y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ for the caller's x and ΔW = s·B·A, from the same kernels and the same
 * input checks as the CLI calculator (src/io/lora_linear_input.ts); W + ΔW is their sum.
 */
export async function loraLinear(gpu: Gpu, req: LoraLinearRequest): Promise<ResponseBody<'loraLinear'>> {
  const input = parseLoraLinearInput({ W: req.W, A: req.A, B: req.B, x: req.x, alpha: req.alpha, bias: req.bias }, 'Teach panel');
  const { n, inF, outF, r } = input;
  const scale = input.alpha / r;
  const { y, deltaW } = await gpu.checked('loraLinear', () => runLoraLinear(gpu, { n, inF, outF, r, scale }, input));
  const merged = deltaW.map((d, i) => d + input.W[i]);
  return {
    type: 'loraLinearResult',
    y: rows(y, n, outF),
    deltaW: rows(deltaW, outF, inF),
    merged: rows(merged, outF, inF),
    scale,
    params: { lora: r * (inF + outF), full: inF * outF },
  };
}

/** (R, C) row-major → rows. */
function rows(v: Float32Array, r: number, c: number): Matrix {
  return Array.from({ length: r }, (_, i) => Array.from(v.subarray(i * c, (i + 1) * c)));
}
