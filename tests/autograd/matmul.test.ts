// The matmul stem's kernel choice (src/autograd/matmul.ts): `matmul` runs the device's chosen GEMM, the
// fast kernel by default and version 1 (`gemm`, shaders/matmul.wgsl) when set, on that device only. Both
// kernels' numbers are checked against each other and against float64 in matmul_fast.test.ts and
// lora_linear.test.ts; here only which pipeline a dispatch binds.

import { describe, expect, it } from 'vitest';
import type { GemmSpec } from '../../src/autograd/matmul';
import { gemmKernel, matmul, setGemmKernel } from '../../src/autograd/matmul_fast';
import { testGpu } from '../gpu/test-gpu';

describe('matmul', () => {
  it('dispatches the kernel chosen for its device', async () => {
    const gpu = await testGpu(); // this file's own device: the choice below reaches no other test's model
    const [M, N, K] = [8, 12, 16];
    const spec: GemmSpec = { M, N, K1: K, p1: gpu.buffer('p', M * K * 4), q1: gpu.buffer('q', N * K * 4), transQ: true, c: gpu.buffer('c', M * N * 4) };
    const label = (s: GemmSpec) => matmul(gpu, 'test', s).pipeline.label;
    expect(gemmKernel(gpu)).toBe('fast');
    expect(label(spec)).toMatch(/^matmul_fast\.matmul_fast\{/);
    setGemmKernel(gpu, 'v1');
    expect(label(spec)).toMatch(/^matmul\.gemm\{TRANS_P=0,TRANS_Q=1\}$/);
  });
});
