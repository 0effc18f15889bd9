// Registry of WGSL sources. Shaders live in /shaders as plain .wgsl files imported with `?raw` (Vite in
// the app and tests; scripts/cli.mjs gives esbuild the same loader), so the code that runs is the code
// you read.
import matmul from '../../shaders/matmul.wgsl?raw';
import rope from '../../shaders/rope.wgsl?raw';
import attention from '../../shaders/attention.wgsl?raw';
import rmsnorm from '../../shaders/rmsnorm.wgsl?raw';
import embedding from '../../shaders/embedding.wgsl?raw';
import swiglu from '../../shaders/swiglu.wgsl?raw';
import crossEntropy from '../../shaders/cross_entropy.wgsl?raw';
import optimizer from '../../shaders/optimizer.wgsl?raw';
import elementwise from '../../shaders/elementwise.wgsl?raw';
import dropout from '../../shaders/dropout.wgsl?raw';
import matmulFast from '../../shaders/matmul_fast.wgsl?raw';
import matmulSplitK from '../../shaders/matmul_splitk.wgsl?raw';
import matmulGrouped from '../../shaders/matmul_grouped.wgsl?raw';
import rmsnormSubgroups from '../../shaders/rmsnorm_subgroups.wgsl?raw';
import crossEntropySubgroups from '../../shaders/cross_entropy_subgroups.wgsl?raw';
import attentionSubgroups from '../../shaders/attention_subgroups.wgsl?raw';
import dora from '../../shaders/dora.wgsl?raw';
import addRmsnorm from '../../shaders/add_rmsnorm.wgsl?raw';
import dequant from '../../shaders/dequant.wgsl?raw';

export const SHADERS = {
  matmul,
  rope,
  attention,
  rmsnorm,
  embedding,
  swiglu,
  cross_entropy: crossEntropy,
  optimizer,
  elementwise,
  dropout,
  matmul_fast: matmulFast,
  matmul_splitk: matmulSplitK,
  matmul_grouped: matmulGrouped,
  // `enable subgroups;` variants of an op's reducing entries, compiled only on a device with the feature
  // (Gpu.subgroups); the op's own .ts picks them, and the plain file stays the reference.
  rmsnorm_subgroups: rmsnormSubgroups,
  cross_entropy_subgroups: crossEntropySubgroups,
  attention_subgroups: attentionSubgroups,
  dora,
  add_rmsnorm: addRmsnorm,
  dequant,
} as const;

export type ShaderName = keyof typeof SHADERS;
