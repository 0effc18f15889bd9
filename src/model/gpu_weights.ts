// The model's tensors on the GPU: the frozen base weights uploaded once, an adapter's A and B installed as
// trainable parameters (replacing the previous adapter's buffers), and read back. The one file of src/model
// that creates or releases GPU buffers; the decoder (decoder.ts) only records ops over what lives here.
// Loading and checking the weights on the CPU is weights.ts.
//
// Shapes: R LoRA rank, IN / OUT a projection's input and output features.

import type { Gpu } from '../gpu/gpu';
import type { Tensor } from '../autograd/tape';
import { packParameters, type ParamSpec } from '../autograd/packed';
import { loraKey, type AdapterConfig } from '../io/peft';
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
 * The adapter's tensors in the order they are packed: per layer, every target's A, then every target's B
 * (with their values from `tensors`, when given).
 */
export function adapterSpecs(config: ModelConfig, adapter: AdapterConfig, tensors: Map<string, Float32Array> | null = null): ParamSpec[] {
  const specs: ParamSpec[] = [];
  for (let l = 0; l < config.layers; l++) {
    for (const which of ['A', 'B'] as const) {
      for (const t of adapter.targetModules) {
        const { inFeatures, outFeatures } = projectionDims(config, t);
        const key = loraKey(l, t, which);
        const data = tensors?.get(key);
        const shape = which === 'A' ? [adapter.r, inFeatures] : [outFeatures, adapter.r];
        if (tensors && (!data || data.length !== shape[0] * shape[1])) throw new Error(`setAdapter: ${key} missing or not ${shape.join('×')}`);
        specs.push({ key, shape, data });
      }
    }
  }
  return specs;
}

/**
 * The adapter's A (R, IN) and B (OUT, R) of every layer and target as persistent trainable tensors, packed
 * (src/autograd/packed.ts) so that a step zeroes, clips and updates them in one dispatch per slab; returned
 * in PEFT key order (layer, target, A then B); `tensors` null: all zero. Placed per layer with every A
 * before every B, so the A's of targets that share an input (q, k, v; gate, up) sit at one stride and a
 * single batched GEMM reaches them all (lora_linear.ts). `previous` parameters' slabs go back to the pool first.
 */
export function uploadAdapter(
  gpu: Gpu, config: ModelConfig, adapter: AdapterConfig, tensors: Map<string, Float32Array> | null, previous: readonly LoraParam[],
): LoraParam[] {
  for (const b of new Set(previous.flatMap((p) => [p.tensor.buffer!, p.tensor.gradAt?.buffer]))) if (b) gpu.release(b);
  const specs = adapterSpecs(config, adapter, tensors);
  const packed = packParameters(gpu, 'lora', specs);
  const byKey = new Map(packed.tensors.map((t) => [t.label, t]));
  const out: LoraParam[] = [];
  for (let l = 0; l < config.layers; l++) {
    for (const t of adapter.targetModules) {
      for (const which of ['A', 'B'] as const) out.push({ key: loraKey(l, t, which), tensor: byKey.get(loraKey(l, t, which))! });
    }
  }
  return out;
}

/** Current adapter values by PEFT key, read back from the GPU. */
export async function readLora(gpu: Gpu, lora: readonly LoraParam[]): Promise<Map<string, Float32Array>> {
  // One read per slab, not per tensor: each read is a wait for the GPU.
  const slabs = new Map<GPUBuffer, Float32Array>();
  for (const b of new Set(lora.map((p) => p.tensor.buffer!))) slabs.set(b, await gpu.read(b));
  const out = new Map<string, Float32Array>();
  for (const { key, tensor: t } of lora) out.set(key, slabs.get(t.buffer!)!.slice(t.offset / 4, t.offset / 4 + t.numel));
  return out;
}
