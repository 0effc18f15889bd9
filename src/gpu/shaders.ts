// Registry of WGSL sources. Shaders live in /shaders as plain .wgsl files imported with `?raw` (Vite in
// the app and tests; scripts/cli.mjs gives esbuild the same loader), so the code that runs is the code
// you read.
import loraLinear from '../../shaders/lora_linear.wgsl?raw';

export const SHADERS = {
  lora_linear: loraLinear,
} as const;

export type ShaderName = keyof typeof SHADERS;
