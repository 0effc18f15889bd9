// Parameter counts: the base model's (every tensor its config implies) and an adapter's (r·(in + out) per
// adapted projection per layer, + out with DoRA's magnitude), for the studio's model facts and its
// "trainable share". No GPU here.

import type { LoraTarget } from '../io/peft';
import { projectionDims, weightShapes, type ModelConfig } from './config';

/** Base-model parameters: every tensor the config implies. */
export function modelParams(c: ModelConfig): number {
  let n = 0;
  for (const shape of weightShapes(c).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

/** LoRA parameters: Σ over layers and targets of r·(in + out), and out more for DoRA's magnitude. */
export function trainableParams(c: ModelConfig, lora: { targets: readonly LoraTarget[]; r: number; dora?: boolean }): number {
  let perLayer = 0;
  for (const t of lora.targets) {
    const { inFeatures, outFeatures } = projectionDims(c, t);
    perLayer += lora.r * (inFeatures + outFeatures) + (lora.dora ? outFeatures : 0);
  }
  return c.layers * perLayer;
}
