// The model's tensors on the GPU: the frozen base weights uploaded once, each in the format the base dtype
// gives it (float32, bf16/f16, or NF4/int8 quantized on the CPU by quant.ts on the way), an adapter's A and B (and DoRA's
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
import { dequantForward, type StoredFormat, type StoredWeight } from '../autograd/dequant';
import { toFloat16Bits } from '../io/float_encode';
import { projectionDims, weightShapes, type ModelConfig } from './config';
import { dynamicMap, NF4_BLOCK, NF4_SCALE_BLOCK, quantizeInt8, quantizeNf4 } from './quant';
import type { Weights } from './weights';

/**
 * Every base weight by Hugging Face tensor name, as stored on the GPU (its buffers, format and shape); frozen,
 * never recycled. A float32 one is read as it is; any other is dequantized before use (src/autograd/dequant.ts).
 */
export type GpuWeights = Map<string, StoredWeight>;

export interface LoraParam {
  key: string; // PEFT name
  tensor: Tensor; // persistent, requiresGrad
}

const PROJECTION = /\.(q|k|v|o|gate|up|down)_proj\.weight$/;
const TABLE = /^(model\.embed_tokens|lm_head)\.weight$/;

/**
 * The format weight `name` is stored in when the base is held as `baseDtype`: the seven projections in
 * baseDtype itself; the embedding and the LM head in the 16-bit float of a bf16/f16 base, and in bf16 under
 * nf4/int8 (QLoRA keeps them 16-bit: they are read a row at a time and their rounding costs most); norms and
 * biases, a few thousand values each, in float32.
 */
export function storedFormat(name: string, baseDtype: StoredFormat): StoredFormat {
  if (PROJECTION.test(name)) return baseDtype;
  if (TABLE.test(name)) return baseDtype === 'f32' || baseDtype === 'f16' ? baseDtype : 'bf16';
  return 'f32';
}

/** Bytes of each buffer a weight of `shape` takes in `format` (what storeWeight allocates, each rounded up to a word). */
function storedSizes(format: StoredFormat, shape: readonly number[]): { data: number; scales?: number; scaleCodes?: number } {
  const n = shape.reduce((a, b) => a * b, 1);
  const words = (bytes: number) => 4 * Math.ceil(bytes / 4);
  const blocks = Math.ceil(n / NF4_BLOCK);
  switch (format) {
    case 'f32': return { data: 4 * n };
    case 'bf16': case 'f16': return { data: words(2 * n) };
    case 'nf4': return { data: words(Math.ceil(n / 2)), scales: 4 * (256 + Math.ceil(blocks / NF4_SCALE_BLOCK)), scaleCodes: words(blocks) };
    case 'int8': return { data: words(n), scales: 4 * shape[0] };
  }
}

/** bf16 bits of a float32, rounded to nearest-even (a NaN stays a NaN): as toBfloat16Bits, without a float64 detour per value. */
function bf16Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Bytes padded with zeros to whole u32 words. */
function toWords(bytes: Uint8Array | Int8Array): Uint32Array {
  const out = new Uint32Array(Math.ceil(bytes.length / 4));
  new Uint8Array(out.buffer).set(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length));
  return out;
}

/**
 * One weight (float32 values, row-major `shape`) stored in `format`: 16-bit floats rounded to nearest-even
 * (exact for a bf16/f16 checkpoint), NF4 with double-quantized scales (QLoRA's default) or int8 per output
 * channel, both quantized here on the CPU by quant.ts. `data` null: zero buffers of the stored sizes.
 */
export function storeWeight(gpu: Gpu, name: string, format: StoredFormat, shape: readonly number[], data: Float32Array | null): StoredWeight {
  const w = { label: name, format, shape };
  if (data === null) {
    const sizes = storedSizes(format, shape);
    return {
      ...w, data: gpu.zeros(name, sizes.data),
      ...(sizes.scales && { scales: gpu.zeros(`${name}.scales`, sizes.scales) }),
      ...(sizes.scaleCodes && { scaleCodes: gpu.zeros(`${name}.scale_codes`, sizes.scaleCodes) }),
    };
  }
  switch (format) {
    case 'f32':
      return { ...w, data: gpu.upload(name, data) };
    case 'bf16': case 'f16': {
      const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
      const half = new Uint16Array(2 * Math.ceil(data.length / 2));
      if (format === 'bf16') for (let i = 0; i < data.length; i++) half[i] = bf16Bits(bits[i]);
      else for (let i = 0; i < data.length; i++) half[i] = toFloat16Bits(data[i]);
      return { ...w, data: gpu.upload(name, new Uint32Array(half.buffer)) };
    }
    case 'nf4': {
      const q = quantizeNf4(data, { double: true, name });
      if (q.scales.kind !== 'double') throw new Error(`uploadWeights: ${name}: NF4 scales were not double-quantized`);
      // The map and the second-level absmax share one binding: map (256), then absmax2.
      const scales = new Float32Array(256 + q.scales.absmax.length);
      scales.set(dynamicMap());
      scales.set(q.scales.absmax, 256);
      return {
        ...w, data: gpu.upload(name, toWords(q.codes)), scales: gpu.upload(`${name}.scales`, scales),
        scaleCodes: gpu.upload(`${name}.scale_codes`, toWords(q.scales.codes)), offset: q.scales.offset,
      };
    }
    case 'int8': {
      const q = quantizeInt8(data, shape[0], shape[1], name);
      return { ...w, data: gpu.upload(name, toWords(q.codes)), scales: gpu.upload(`${name}.scales`, q.absmax) };
    }
  }
}

/** Uploads base weights one at a time (a streaming loader puts each as it is read), then hands them over. */
export interface WeightUploader {
  /**
   * Store weight `name` (float32 values in the config's shape) in the format the base dtype gives it; `dtype`,
   * how the checkpoint stored it (F32, BF16, F16), is the base dtype of this weight when the uploader has none.
   */
  put(name: string, data: Float32Array, dtype?: string): void;
  /** Every weight, once each has been put. */
  done(): GpuWeights;
}

/** A checkpoint's stored dtype as a base dtype: BF16 → bf16, F16 → f16, anything else (F32) → f32. */
export function checkpointFormat(dtype: string | undefined): StoredFormat {
  return dtype === 'BF16' ? 'bf16' : dtype === 'F16' ? 'f16' : 'f32';
}

/**
 * An uploader of `config`'s weights held as `baseDtype`; undefined: each weight as the checkpoint stored it
 * (a BF16 checkpoint stays bf16, an F32 one float32; in a mixed one each tensor keeps its own dtype, so
 * nothing is rounded).
 */
export function weightUploader(gpu: Gpu, config: ModelConfig, baseDtype?: StoredFormat): WeightUploader {
  const shapes = weightShapes(config);
  const out: GpuWeights = new Map();
  return {
    put(name, data, dtype) {
      const shape = shapes.get(name);
      if (!shape) throw new Error(`uploadWeights: ${name} is not a weight of this config`);
      const n = shape.reduce((a, b) => a * b, 1);
      if (data.length !== n) throw new Error(`uploadWeights: ${name} has ${data.length} values, not [${shape}] (loadWeights checks this)`);
      if (out.has(name)) throw new Error(`uploadWeights: ${name} is put twice`);
      out.set(name, storeWeight(gpu, name, storedFormat(name, baseDtype ?? checkpointFormat(dtype)), shape, data));
    },
    done() {
      const missing = [...shapes.keys()].filter((k) => !out.has(k));
      if (missing.length) throw new Error(`uploadWeights: weight ${missing[0]} missing (loadWeights checks this)`);
      return out;
    },
  };
}

/**
 * Upload every weight the config needs (loadWeights has checked that they are all there), each in the format
 * `baseDtype` gives it (storedFormat); `weights` null: zero buffers of the stored sizes, for the memory plan
 * (src/model/memory.ts), which needs no data.
 */
export function uploadWeights(gpu: Gpu, config: ModelConfig, weights: Weights | null, baseDtype: StoredFormat = 'f32'): GpuWeights {
  if (weights === null) {
    const out: GpuWeights = new Map();
    for (const [name, shape] of weightShapes(config)) out.set(name, storeWeight(gpu, name, storedFormat(name, baseDtype), shape, null));
    return out;
  }
  const uploader = weightUploader(gpu, config, baseDtype);
  for (const name of weightShapes(config).keys()) {
    const w = weights.get(name);
    if (!w) throw new Error(`uploadWeights: weight ${name} missing (loadWeights checks this)`);
    uploader.put(name, w);
  }
  return uploader.done();
}

/** A base weight's float32 values (dequantized on the GPU when stored in fewer bits), read back. */
export async function readWeight(gpu: Gpu, w: StoredWeight): Promise<Float32Array> {
  const n = w.shape.reduce((a, b) => a * b, 1);
  if (w.format === 'f32') return gpu.read(w.data, n);
  const out = gpu.buffer(`${w.label}.read`, 4 * n);
  const d = dequantForward(gpu, `${w.label}.read`, w, n, out);
  gpu.run([d]);
  const values = await gpu.read(out, n);
  gpu.releaseDispatches([d]);
  gpu.release(out);
  return values;
}

/** Every GPU buffer the base weights hold. */
export function weightBuffers(weights: GpuWeights): GPUBuffer[] {
  return [...weights.values()].flatMap((w) => [w.data, ...(w.scales ? [w.scales] : []), ...(w.scaleCodes ? [w.scaleCodes] : [])]);
}

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
      const stored = base?.get(`model.layers.${l}.${loraSubmodule(t)}.${t}.weight`);
      if (tensors && !tensors.has(key) && stored) {
        // m lives in the slab that A and B are read from, and one dispatch may not both read and write a buffer:
        // the norm goes to a scratch buffer first, then into m (which the packing left zero).
        const [A, B] = [byKey.get(loraKey(l, t, 'A'))!, byKey.get(loraKey(l, t, 'B'))!];
        const norm = gpu.buffer(`${key}.init`, 4 * outFeatures);
        scratch.push(norm);
        let W = stored.data;
        if (stored.format !== 'f32') {
          // The norm is of the weight the model computes with: the dequantized one.
          W = gpu.buffer(`${key}.init.weight`, 4 * outFeatures * inFeatures);
          scratch.push(W);
          init.push(dequantForward(gpu, `${key}.init.weight`, stored, outFeatures * inFeatures, W));
        }
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
