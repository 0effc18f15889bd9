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
import { accumulate } from '../autograd/elementwise';
import { packParameters, type ParamSpec } from '../autograd/packed';
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
/**
 * The adapter's tensors in the order they are packed: per layer, every target's A, then every target's B,
 * then (DoRA) every target's magnitude m (OUT) (with their values from `tensors`, when given).
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
    if (!adapter.useDora) continue;
    for (const t of adapter.targetModules) {
      const { outFeatures } = projectionDims(config, t);
      const key = loraMagnitudeKey(l, t);
      const data = tensors?.get(key);
      if (data && data.length !== outFeatures) throw new Error(`setAdapter: ${key} is not ${outFeatures} values`);
      specs.push({ key, shape: [outFeatures], data });
    }
  }
  return specs;
}

/**
 * The adapter's A (R, IN) and B (OUT, R) of every layer and target (and DoRA's magnitude m (OUT)) as
 * persistent trainable tensors, packed (src/autograd/packed.ts) so that a step zeroes, clips and updates them
 * in one dispatch per slab; returned in PEFT key order (layer, target, A then B, then m); `tensors` null: all
 * zero. Placed per layer with every A before every B, so the A's of targets that share an input (q, k, v;
 * gate, up) sit at one stride and a single batched GEMM reaches them all (lora_group.ts). A magnitude
 * `tensors` lacks starts as PEFT's does, m = ‖W + s·B·A‖ per output row, computed on the GPU from `base`.
 * `previous` parameters' slabs go back to the pool first.
 */
export function uploadAdapter(
  gpu: Gpu, config: ModelConfig, adapter: AdapterConfig, tensors: Map<string, Float32Array> | null, previous: readonly LoraParam[],
  base?: GpuWeights,
): LoraParam[] {
  for (const b of new Set(previous.flatMap((p) => [p.tensor.buffer!, p.tensor.gradAt?.buffer]))) if (b) gpu.release(b);
  const specs = adapterSpecs(config, adapter, tensors);
  const packed = packParameters(gpu, 'lora', specs);
  const byKey = new Map(packed.tensors.map((t) => [t.label, t]));
  const out: LoraParam[] = [];
  const init: Dispatch[] = [];
  const scratch: GPUBuffer[] = [];
  for (let l = 0; l < config.layers; l++) {
    for (const t of adapter.targetModules) {
      for (const which of ['A', 'B'] as const) out.push({ key: loraKey(l, t, which), tensor: byKey.get(loraKey(l, t, which))! });
      if (!adapter.useDora) continue;
      const key = loraMagnitudeKey(l, t);
      const m = byKey.get(key)!;
      out.push({ key, tensor: m });
      const { inFeatures, outFeatures } = projectionDims(config, t);
      const W = base?.get(`model.layers.${l}.${loraSubmodule(t)}.${t}.weight`);
      if (tensors && !tensors.has(key) && W) {
        // m lives in the slab that A and B are read from, and one dispatch may not both read and write a buffer:
        // the norm goes to a scratch buffer first, then into m (which the packing left zero).
        const [A, B] = [byKey.get(loraKey(l, t, 'A'))!, byKey.get(loraKey(l, t, 'B'))!];
        const norm = gpu.buffer(`${key}.init`, 4 * outFeatures);
        scratch.push(norm);
        init.push(doraNorm(gpu, `${key}.init`, { n: 0, inF: inFeatures, outF: outFeatures, r: adapter.r, scale: loraScale(adapter) }, W, A.binding, B.binding, norm));
        init.push(accumulate(gpu, `${key}.init.copy`, outFeatures, m.binding, norm));
      }
    }
  }
  if (init.length > 0) {
    gpu.run(init, 'lora.dora_init');
    gpu.releaseDispatches(init);
    gpu.releaseAll(scratch);
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
