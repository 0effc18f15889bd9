// The model's tensors on the GPU: the frozen base weights uploaded once, an adapter's A and B (and DoRA's
// magnitudes) installed as trainable parameters (replacing the previous adapter's buffers), and read back.
// The one file of src/model that creates or releases GPU buffers; the decoder (decoder.ts) only records ops
// over what lives here.
// Loading and checking the weights on the CPU is weights.ts.
//
// Shapes: R LoRA rank, IN / OUT a projection's input and output features.

import type { Dispatch, Gpu } from '../gpu/gpu';
import { Tensor } from '../autograd/tape';
import { doraNorm } from '../autograd/dora';
import { loraKey, loraMagnitudeKey, loraScale, loraSubmodule, type AdapterConfig } from '../io/peft';
import { projectionDims, weightShapes, type ModelConfig } from './config';
import type { Weights } from './weights';

/** Every base weight's buffer by Hugging Face tensor name; frozen, never recycled. */
export type GpuWeights = Map<string, GPUBuffer>;

export interface LoraParam {
  key: string; // PEFT name
  tensor: Tensor; // persistent, requiresGrad
}

/**
 * Upload every weight the config needs (loadWeights has checked that they are all there); `weights` null:
 * zero buffers of the config's shapes, for the memory plan (src/model/memory.ts), which needs no data.
 */
export function uploadWeights(gpu: Gpu, config: ModelConfig, weights: Weights | null): GpuWeights {
  const out: GpuWeights = new Map();
  for (const [name, shape] of weightShapes(config)) {
    if (weights === null) {
      out.set(name, gpu.zeros(name, 4 * shape.reduce((a, b) => a * b, 1)));
      continue;
    }
    const w = weights.get(name);
    if (!w) throw new Error(`uploadWeights: weight ${name} missing (loadWeights checks this)`);
    out.set(name, gpu.upload(name, w));
  }
  return out;
}

/**
 * The adapter's A (R, IN) and B (OUT, R) of every layer and target, in PEFT key order (layer, target, A then
 * B, then DoRA's magnitude m (OUT)), as persistent trainable tensors (`tensors` null: all zero).
 * A magnitude `tensors` lacks starts as PEFT's does, m = ‖W + s·B·A‖ per output row, computed on the GPU
 * from `base`. `previous` parameters' buffers go back to the pool first.
 */
export function uploadAdapter(
  gpu: Gpu, config: ModelConfig, adapter: AdapterConfig, tensors: Map<string, Float32Array> | null, previous: readonly LoraParam[],
  base?: GpuWeights,
): LoraParam[] {
  for (const p of previous) gpu.release(p.tensor.buffer!);
  const out: LoraParam[] = [];
  const init: Dispatch[] = [];
  for (let l = 0; l < config.layers; l++) {
    for (const t of adapter.targetModules) {
      const { inFeatures, outFeatures } = projectionDims(config, t);
      for (const which of ['A', 'B'] as const) {
        const key = loraKey(l, t, which);
        const data = tensors?.get(key);
        const shape = which === 'A' ? [adapter.r, inFeatures] : [outFeatures, adapter.r];
        if (tensors && (!data || data.length !== shape[0] * shape[1])) throw new Error(`setAdapter: ${key} missing or not ${shape.join('×')}`);
        const tensor = new Tensor(key, shape, true, data ? gpu.upload(key, data) : gpu.zeros(key, 4 * shape[0] * shape[1]));
        tensor.requiresGrad = true;
        out.push({ key, tensor });
      }
      if (!adapter.useDora) continue;
      const key = loraMagnitudeKey(l, t);
      const data = tensors?.get(key);
      if (data && data.length !== outFeatures) throw new Error(`setAdapter: ${key} is not ${outFeatures} values`);
      const m = new Tensor(key, [outFeatures], true, data ? gpu.upload(key, data) : gpu.zeros(key, 4 * outFeatures));
      m.requiresGrad = true;
      const [A, B] = out.slice(-2).map((p) => p.tensor.buffer!);
      const W = base?.get(`model.layers.${l}.${loraSubmodule(t)}.${t}.weight`);
      if (!data && tensors && W) init.push(doraNorm(gpu, `${key}.init`, { n: 0, inF: inFeatures, outF: outFeatures, r: adapter.r, scale: loraScale(adapter) }, W, A, B, m.buffer!));
      out.push({ key, tensor: m });
    }
  }
  if (init.length > 0) {
    gpu.run(init, 'lora.dora_init');
    gpu.releaseDispatches(init);
  }
  return out;
}

/** Current adapter values by PEFT key, read back from the GPU. */
export async function readLora(gpu: Gpu, lora: readonly LoraParam[]): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const p of lora) out.set(p.key, await gpu.read(p.tensor.buffer!, p.tensor.numel));
  return out;
}

// ---- attached adapters (generation only) ----------------------------------------------------------------

/**
 * An adapter attached beside the trainable one for generation (Try it's swap and live blend, the CLI's
 * `generate`): its A (R, IN) and B (OUT, R) by PEFT key, frozen (no gradient, no optimizer state). Uploaded
 * once when attached, released when detached; the base weights are never touched.
 */
export function uploadAttached(gpu: Gpu, config: ModelConfig, adapter: AdapterConfig, tensors: ReadonlyMap<string, Float32Array>): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (let l = 0; l < config.layers; l++) {
    for (const t of adapter.targetModules) {
      const { inFeatures, outFeatures } = projectionDims(config, t);
      for (const which of ['A', 'B'] as const) {
        const key = loraKey(l, t, which);
        const data = tensors.get(key);
        const shape = which === 'A' ? [adapter.r, inFeatures] : [outFeatures, adapter.r];
        if (!data || data.length !== shape[0] * shape[1]) throw new Error(`attach: ${key} missing or not ${shape.join('×')}`);
        out.set(key, new Tensor(`attached.${key}`, shape, true, gpu.upload(`attached.${key}`, data)));
      }
    }
  }
  return out;
}

/** Give an attached adapter's buffers back to the pool (no program may still bind them). */
export function releaseAttached(gpu: Gpu, tensors: ReadonlyMap<string, Tensor>): void {
  for (const t of tensors.values()) gpu.release(t.buffer!);
}
