// Parameter counts: the base model's (every tensor its config implies) and an adapter's (r·(in + out) per
// adapted projection per layer), for the studio's model facts and its "trainable share". No GPU here.

import type { LoraTarget } from '../io/peft';
import { projectionDims, weightShapes, type ModelConfig } from './config';

/** Base-model parameters: every tensor the config implies. */
export function modelParams(c: ModelConfig): number {
  let n = 0;
  for (const shape of weightShapes(c).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

/** LoRA parameters: Σ over layers and targets of r·(in + out). */
export function trainableParams(c: ModelConfig, lora: { targets: readonly LoraTarget[]; r: number }): number {
  let perLayer = 0;
  for (const t of lora.targets) {
    const { inFeatures, outFeatures } = projectionDims(c, t);
    perLayer += lora.r * (inFeatures + outFeatures);
  }
  return c.layers * perLayer;
}
