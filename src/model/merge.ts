// A LoRA adapter merged into its base model's weights, as PEFT's merge_and_unload does: every targeted
// projection becomes
//
//   W' = W + s·B·A        W (out, in), B (out, r), A (r, in); s = α/r, or α/√r with rsLoRA (peft.ts loraScale)
//
// and, for a DoRA adapter (use_dora), as PEFT's DoRA merge does, each output row o rescaled to its magnitude:
//
//   W'[o] = m[o] / ‖W[o] + s·(B·A)[o]‖ · (W[o] + s·(B·A)[o])        m (out), the norm over the row's `in` values
//
// with W as stored in the checkpoint, (out, in). PEFT transposes ΔW for fan_in_fan_out (GPT-2's Conv1D,
// weights stored (in, out)); that flag is refused on import (peft.ts), as no Llama-family weight is stored
// that way, so no transpose applies here. Every other tensor (embeddings, norms, biases, lm_head or its
// absence under tied embeddings, tensors the engine does not read) is copied byte for byte.
//
// Rounding: W (F32, F16 or BF16, widened exactly) plus s·B·A is computed in float64 and rounded ONCE to the
// base's own dtype, to nearest with ties to even (io/float_encode.ts). PEFT on a GPU rounds twice for a
// half-precision base (ΔW cast to the weight's dtype, then the sum rounded again); one rounding is never
// further from the exact W + s·B·A. A merged float32 base differs from base + adapter only by float32
// rounding (tests/model/merge.test.ts: logits within 1e-5 relative).
//
// This file is CPU work on safetensors bytes and the folder's assembly; it does not write files (the CLI and
// the worker do) and runs no GPU. The base must be F32, F16 or BF16: a quantized one has no W to add to.
//
// Glossary: L layers, r rank, in / out a projection's features.

import { LoraStudioError, ShapeError, UnsupportedError } from '../io/errors';
import { encodeFloats, FLOAT_DTYPES, type FloatDtype } from '../io/float_encode';
import { writeMergedModelFolder, type FolderFile } from '../io/merged_model';
import { findWeightFiles, readConfigText, readWeightFiles, type ModelFiles, type OnProgress } from '../io/model_source';
import { loraKey, loraMagnitudeKey, loraScale, loraSubmodule, type AdapterConfig, type LoraTarget } from '../io/peft';
import { parseSafetensors, type RawTensorToWrite } from '../io/safetensors';
import { parseModelConfig, projectionDims, type ModelConfig } from './config';

export interface MergeAdapter {
  config: AdapterConfig;
  /** PEFT keys (loraKey) → lora_A (r, in) and lora_B (out, r), row-major; with useDora, loraMagnitudeKey → m (out). */
  weights: ReadonlyMap<string, Float32Array>;
}

export interface MergedModel {
  files: FolderFile[];
  /** What the user should know: the dtype and its rounding, shards written as one file. */
  notes: string[];
}

const NEEDS = 'needs a bf16/f16/f32 base';

// The largest magnitudes that round to a finite value in each dtype: the format's maximum plus half an ulp.
const FINITE_BELOW: Record<FloatDtype, number> = { F32: 2 ** 128 - 2 ** 103, F16: 65520, BF16: 2 ** 128 - 2 ** 119 };

/** Refuses what cannot be merged: a quantized base (config.json's quantization_config). */
export function checkMergeable(configText: string, configFile = 'config.json'): void {
  const raw = JSON.parse(configText) as Record<string, unknown>;
  if (raw.quantization_config != null) {
    const method = (raw.quantization_config as { quant_method?: unknown }).quant_method;
    throw new UnsupportedError(configFile, `${configFile}: the base model is quantized${typeof method === 'string' ? ` (${method})` : ''}; a merge ${NEEDS}, whose weights W + s·B·A can be written back. Merge into the unquantized model.`);
  }
}

/**
 * The base's tensors (from its safetensors files, one or several shards) with the adapter merged in: the
 * targeted projections in their stored dtype, the rest as stored. Refuses an adapter that does not fit the
 * model and a targeted weight that is not F32, F16 or BF16.
 */
export function mergeWeights(model: ModelConfig, files: { name: string; bytes: Uint8Array }[], adapter: MergeAdapter): { tensors: RawTensorToWrite[]; dtypes: FloatDtype[] } {
  const { config } = adapter;
  const scale = loraScale(config);
  const targets = new Map<string, { layer: number; target: LoraTarget }>();
  for (let l = 0; l < model.layers; l++) {
    for (const t of config.targetModules) targets.set(`model.layers.${l}.${loraSubmodule(t)}.${t}.weight`, { layer: l, target: t });
  }
  const tensors: RawTensorToWrite[] = [];
  const dtypes = new Set<FloatDtype>();
  const merged = new Set<string>();
  for (const f of files) {
    const st = parseSafetensors(f.bytes, f.name);
    for (const [name, info] of st.tensors) {
      const at = targets.get(name);
      if (at === undefined) {
        tensors.push({ name, dtype: info.dtype, shape: info.shape, bytes: st.bytes(name) });
        continue;
      }
      const dtype = info.dtype as FloatDtype;
      if (!FLOAT_DTYPES.includes(dtype)) throw new UnsupportedError(f.name, `${f.name}: ${name} is ${info.dtype}; a merge ${NEEDS}.`);
      const { inFeatures, outFeatures } = projectionDims(model, at.target);
      if (info.shape.length !== 2 || info.shape[0] !== outFeatures || info.shape[1] !== inFeatures) {
        throw new ShapeError(f.name, `${f.name}: ${name} has shape [${info.shape}] but config.json implies [${outFeatures}, ${inFeatures}]: the weights and the config belong to different models.`);
      }
      const W = Float64Array.from(st.readF32(name)); // (out, in): F16/BF16 widen exactly
      addDelta(W, adapter, at.layer, at.target, scale, inFeatures, outFeatures);
      if (config.useDora) rescaleRows(W, adapter, at.layer, at.target, inFeatures, outFeatures, name);
      refuseOverflow(W, dtype, name);
      tensors.push({ name, dtype, shape: info.shape, bytes: encodeFloats(W, dtype) });
      dtypes.add(dtype);
      merged.add(name);
    }
  }
  const missing = [...targets.keys()].filter((n) => !merged.has(n));
  if (missing.length > 0) {
    const names = files.map((f) => f.name).join(', ');
    throw new ShapeError(names, `${names}: has no ${missing[0]}${missing.length > 1 ? ` (and ${missing.length - 1} more targeted weights)` : ''}; ` +
      `the adapter targets it. A quantized checkpoint stores its projections under other names: a merge ${NEEDS}.`);
  }
  return { tensors, dtypes: FLOAT_DTYPES.filter((d) => dtypes.has(d)) };
}

/** DoRA: each row o of W (out, in), already W + s·B·A, times m[o] / its norm, in float64. */
function rescaleRows(W: Float64Array, adapter: MergeAdapter, layer: number, target: LoraTarget, inF: number, outF: number, name: string): void {
  const m = adapter.weights.get(loraMagnitudeKey(layer, target));
  if (m === undefined || m.length !== outF) {
    throw new ShapeError(undefined, `The DoRA adapter's layer ${layer} ${target} needs a lora_magnitude_vector of ${outF} values for this model: it is incomplete or was trained for another model.`);
  }
  for (let o = 0; o < outF; o++) {
    let sq = 0;
    for (let i = 0; i < inF; i++) sq += W[o * inF + i] ** 2;
    if (sq === 0) throw new LoraStudioError('bad-input', `${name}: row ${o} of W + s·B·A is zero, so DoRA's direction W / ‖W‖ is undefined there and the merge cannot be written.`);
    const f = m[o] / Math.sqrt(sq);
    for (let i = 0; i < inF; i++) W[o * inF + i] *= f;
  }
}

/** W (out, in) += s·B·A, B (out, r), A (r, in), in float64. */
function addDelta(W: Float64Array, adapter: MergeAdapter, layer: number, target: LoraTarget, scale: number, inF: number, outF: number): void {
  const r = adapter.config.r;
  const A = adapter.weights.get(loraKey(layer, target, 'A'));
  const B = adapter.weights.get(loraKey(layer, target, 'B'));
  if (A === undefined || B === undefined || A.length !== r * inF || B.length !== outF * r) {
    throw new ShapeError(undefined, `The adapter's layer ${layer} ${target} needs lora_A [${r}, ${inF}] and lora_B [${outF}, ${r}] for this model (r = ${r}): ` +
      'it is incomplete or was trained for another model.');
  }
  for (let o = 0; o < outF; o++) {
    const row = o * inF;
    for (let j = 0; j < r; j++) {
      const b = scale * B[o * r + j];
      if (b === 0) continue;
      const a = j * inF;
      for (let i = 0; i < inF; i++) W[row + i] += b * A[a + i];
    }
  }
}

function refuseOverflow(W: Float64Array, dtype: FloatDtype, name: string): void {
  const limit = FINITE_BELOW[dtype];
  for (let i = 0; i < W.length; i++) {
    const v = W[i];
    if (!(Math.abs(v) < limit)) {
      throw new LoraStudioError('bad-input', Number.isNaN(v)
        ? `Merging gives NaN in ${name}: the adapter or the base holds a NaN. Nothing was written.`
        : `Merging gives ${v.toPrecision(4)} in ${name}, beyond the largest ${dtype} number: the adapter is too strong for a ${dtype} model. Nothing was written.`);
    }
  }
}

/**
 * The merged model's folder (io/merged_model.ts) from the base's files and an adapter for it: the same code
 * for the CLI (a folder on disk) and the studio's worker (the loaded model's source, read again).
 */
export async function mergedModelFiles(base: ModelFiles, adapter: MergeAdapter, onProgress?: OnProgress): Promise<MergedModel> {
  const configText = await readConfigText(base, onProgress);
  const configFile = base.path('config.json');
  checkMergeable(configText, configFile);
  const model = parseModelConfig(configText, configFile);
  const weightFiles = await findWeightFiles(base, onProgress);
  const { tensors, dtypes } = mergeWeights(model, await readWeightFiles(base, weightFiles, onProgress), adapter);
  const notes = [
    `Merged ${adapter.config.useDora ? 'DoRA\'s m / ‖W + s·B·A‖ · (W + s·B·A)' : 'W + s·B·A'} with s = ${+loraScale(adapter.config).toPrecision(6)}${adapter.config.useRslora ? ' (rsLoRA: α/√r)' : ''} into ${adapter.config.targetModules.join(', ')} ` +
      `of ${model.layers} layers, in float64, each weight rounded once to ${dtypes.join('/')} (round to nearest, ties to even); every other tensor is copied as stored.`,
  ];
  if (weightFiles.shards.length > 1) notes.push(`The base's ${weightFiles.shards.length} shards are written as one model.safetensors.`);
  return { files: await writeMergedModelFolder(base, tensors, onProgress), notes };
}
