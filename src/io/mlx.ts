// A LoRA adapter as the folder mlx-lm reads (`mlx_lm.generate --adapter-path DIR`, `mlx_lm.fuse`):
// adapters.safetensors and adapter_config.json, as mlx_lm/tuner/utils.py load_adapters reads them.
// Pure bytes: no files, no GPU, no model code.
//
// load_adapters reads adapter_config.json's fine_tune_type ("lora"), num_layers (LoRA goes on the last
// num_layers decoder layers: every layer here) and lora_parameters {rank, scale, dropout, keys} (keys are
// module paths inside a layer, "self_attn.q_proj"), wraps each such Linear in a LoRALinear, then loads
// adapters.safetensors over the model's parameters by name:
//   model.layers.{L}.{self_attn|mlp}.{target}.lora_a   (in, r)  = PEFT's lora_A (r, in) transposed
//   model.layers.{L}.{self_attn|mlp}.{target}.lora_b   (r, out) = PEFT's lora_B (out, r) transposed
// LoRALinear computes y = W·x + scale · (x @ lora_a) @ lora_b, and PEFT y = W·x + s · B·(A·x), so the two
// agree exactly with scale = s: α/r, or α/√r for rsLoRA (mlx-lm has no rsLoRA flag; the note says so).
// mlx-lm's Llama, Mistral (read by its llama model), Qwen2 and Qwen3 keep Hugging Face's q/k row order, so
// nothing is permuted. A DoRA adapter is refused: LoRA Studio does not write mlx-lm's DoRA layout.

import { UnsupportedError } from './errors.ts';
import type { ExportableAdapter, ExportBase } from './export_types.ts';
import { LORA_TARGETS, loraKey, loraScale, loraSubmodule, type LoraTarget } from './peft.ts';
import { writeSafetensors } from './safetensors.ts';

export const MLX_CONFIG_FILE = 'adapter_config.json';
export const MLX_WEIGHTS_FILE = 'adapters.safetensors';

export function mlxLoraKey(layer: number, target: LoraTarget, which: 'a' | 'b'): string {
  return `model.layers.${layer}.${loraSubmodule(target)}.${target}.lora_${which}`;
}

/** The transpose of a row-major (rows, cols) matrix. */
export function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = m[i * cols + j];
  return out;
}

/** adapter_config.json and adapters.safetensors for mlx-lm. `adapter` must already fit `base` (export.ts checks it). */
export function writeMlxAdapter(
  adapter: ExportableAdapter,
  base: ExportBase,
): { configJson: string; weights: Uint8Array; notes: string[] } {
  const { config, weights } = adapter;
  if (config.useDora === true) {
    throw new UnsupportedError(
      undefined,
      'MLX export: this is a DoRA adapter. LoRA Studio does not write mlx-lm\'s DoRA layout (fine_tune_type "dora" with a magnitude ' +
        'vector per layer) yet; export PEFT files, or merge the adapter into the base.',
    );
  }
  const { r } = config;
  const scale = loraScale(config);
  const notes: string[] = [];
  if (config.useRslora) {
    notes.push(`rsLoRA: mlx-lm multiplies by lora_parameters.scale, so scale is written as α/√r = ${scale} (α = ${config.loraAlpha}, r = ${r}), PEFT's rsLoRA scale exactly.`);
  }
  const targets = LORA_TARGETS.filter((t) => config.targetModules.includes(t));
  const tensors = [];
  for (let layer = 0; layer < base.expectation.numLayers; layer++) {
    for (const target of targets) {
      const { inFeatures, outFeatures } = base.expectation.shapes(target);
      const A = weights.get(loraKey(layer, target, 'A'))!; // (r, in)
      const B = weights.get(loraKey(layer, target, 'B'))!; // (out, r)
      tensors.push({ name: mlxLoraKey(layer, target, 'a'), shape: [inFeatures, r], data: transpose(A, r, inFeatures) });
      tensors.push({ name: mlxLoraKey(layer, target, 'b'), shape: [r, outFeatures], data: transpose(B, outFeatures, r) });
    }
  }
  const json = {
    fine_tune_type: 'lora',
    model: base.baseModel,
    num_layers: base.expectation.numLayers,
    lora_parameters: {
      rank: r,
      scale,
      dropout: config.loraDropout,
      keys: targets.map((t) => `${loraSubmodule(t)}.${t}`),
    },
  };
  // mx.save_safetensors marks its files with format "mlx".
  return { configJson: `${JSON.stringify(json, null, 2)}\n`, weights: writeSafetensors(tensors, { format: 'mlx' }), notes };
}
