// `bench --dry-run` (src/cli/bench_dry_run.ts): one training step counted on the recording device, no GPU.
// CI holds the per-step figures of two bench shapes under the limits below, so a change that adds dispatches,
// command buffers, CPU waits, uploads or memory to a step fails here; lower a limit when a change earns it.
// Also: the per-family costs add up and match the shapes, and bad input gets one line, not a stack trace.
// Not a timing test: nothing here depends on the machine.

import { describe, expect, it, vi } from 'vitest';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { benchCommand, benchModelConfig } from '../../src/cli/bench';
import { createNodeGpu } from '../../src/gpu/node';
import { dryRunModel, type DryRunResult } from '../../src/cli/bench_dry_run';
import { LoraStudioError } from '../../src/io/errors';
import { weightShapes } from '../../src/model/config';

// Whatever asks for a WebGPU device in this file fails the test that did.
vi.mock('../../src/gpu/node', () => ({ createNodeGpu: vi.fn(async () => { throw new Error('the dry run asked for a WebGPU device'); }) }));

const root = fileURLToPath(new URL('../..', import.meta.url));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['scripts/cli.mjs', ...args], { cwd: root, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

type Limited = 'dispatches_per_step' | 'command_buffers_per_step' | 'cpu_waits_per_step' | 'uploaded_bytes_per_step' | 'peak_gpu_bytes';

/**
 * Per-step limits at the bench shape (batch 8 × 256, LoRA r = 8 on q_proj and v_proj, AdamW, fast GEMM).
 * Measured on 2026-12-02 (`npm run bench -- --dry-run --model all`), after issue 14's packed adapter, in-place
 * residual gradients, fused RoPE, fused add + norm, the MLP recomputed every third layer, each projection
 * group's GEMMs grouped into a few dispatches (matmul_grouped) and attention's delta computed by its dq pass
 * (before: 1471 and 1077 dispatches, peaks 2294020000 and 8827486272 bytes; then 1025 and 750):
 *   smollm2-135m     747 dispatches, 2 command buffers, 1 CPU wait, 16448 bytes uploaded, peak 1930908256 bytes
 *   tinyllama-1.1b   547 dispatches, 2 command buffers, 1 CPU wait, 16448 bytes uploaded, peak 7829420128 bytes
 * Two command buffers: the step, and the copy of the loss to a staging buffer for its one read-back (the one
 * CPU wait). Uploads: ids and targets (2·N·4 = 16384 bytes) plus one 64-byte AdamW uniform per adapter slab.
 * smollm2's limits are issue 14's: at most 800 dispatches (held here at its figure plus a small margin) and
 * 1.8 GiB.
 */
const LIMITS: Record<string, Record<Limited, number>> = {
  'smollm2-135m': {
    dispatches_per_step: 760, command_buffers_per_step: 2, cpu_waits_per_step: 1, uploaded_bytes_per_step: 17_000, peak_gpu_bytes: 1.8 * 2 ** 30,
  },
  'tinyllama-1.1b': {
    dispatches_per_step: 560, command_buffers_per_step: 2, cpu_waits_per_step: 1, uploaded_bytes_per_step: 17_000, peak_gpu_bytes: 7.9e9,
  },
};

async function dryRun(name: string, batch = 8, seq = 256): Promise<DryRunResult> {
  return dryRunModel(name, benchModelConfig(name), { batch, seq, gemm: 'fast' });
}

describe('bench --dry-run', () => {
  for (const [name, limits] of Object.entries(LIMITS)) {
    it(`${name}: one step stays under CI's limits`, async () => {
      const r = await dryRun(name);
      const summary = JSON.stringify({ ...r, families: undefined });
      for (const [key, limit] of Object.entries(limits)) expect(r[key as Limited], `${key} in ${summary}`).toBeLessThanOrEqual(limit);
      expect(r.cpu_waits_per_step, summary).toBeGreaterThanOrEqual(1); // the loss is read back every step
      expect(r.peak_gpu_bytes).toBeGreaterThan(r.weights_bytes);
      expect(r.buffers_created_per_step, 'only the read-back staging buffer').toBe(1);
    });
  }

  it('the families add up to the step, and the GEMM FLOPs are the model\'s', async () => {
    const name = 'smollm2-135m';
    const r = await dryRun(name);
    const c = benchModelConfig(name);
    const fam = Object.values(r.families);
    expect(fam.reduce((s, f) => s + f.dispatches, 0)).toBe(r.dispatches_per_step);
    expect(fam.reduce((s, f) => s + f.flops, 0)).toBe(r.flops_per_step);
    expect(fam.reduce((s, f) => s + f.bytes, 0)).toBe(r.bytes_per_step);
    for (const [k, f] of Object.entries(r.families)) expect(f.bytes, k).toBeGreaterThan(0);
    const N = 8 * 256, L = c.layers, C = c.hidden, qDim = c.heads * c.headDim, kvDim = c.kvHeads * c.headDim;
    // The frozen linears, forward and dx, 2·N·IN·OUT each, with the adapters' up products fused into q's and v's
    // forward jobs (+ 2·N·r·OUT) and their down products x·Aᵀ (2·N·C·r each) in the dispatch of the frozen k
    // (lora_group.ts: that dispatch is a matmul). Layer 0's q/k/v take no dx: their input is the normed
    // embedding of a frozen table. dx's rank-r terms go with dA (lora). Every third layer's gate and up run
    // again in the backward (Decoder.recomputeMlpEvery = 3).
    const r8 = 8, qkv = C * (qDim + 2 * kvDim), layer = qkv + qDim * C + 3 * C * c.intermediate;
    const forward = 2 * N * (L * layer + L * r8 * (qDim + kvDim) + L * 2 * r8 * C);
    const dx = 2 * N * (L * layer - qkv);
    const recomputed = Math.floor(L / 3) * 2 * N * 2 * C * c.intermediate;
    expect(r.families.matmul.flops).toBe(forward + dx + recomputed);
    // The LM head (tied): logits, their recompute in the backward, and dxf: 3 × 2·N·V·C.
    expect(r.families.lm_head.flops).toBe(3 * 2 * N * c.vocab * C);
    // Per layer: du and dB of q and v in one dispatch, their dA and dx's rank-r terms in another.
    expect(r.families.lora.dispatches).toBe(L * 2);
    // Per layer: the forward, dq (with delta) and dk/dv.
    expect(r.families.attention.dispatches).toBe(L * 3);
    expect(r.families.optimizer.dispatches).toBe(1); // one AdamW over the one packed slab
    // Zeroing the packed gradients and the loss sum, adding up the loss: the residual adds are fused with the
    // norms (add_rmsnorm, two a layer) and their gradients taken in place, with no copy.
    expect(r.families.elementwise.dispatches).toBe(3);
    expect(r.families.add_rmsnorm.dispatches).toBe(2 * L);
    // Layer 0's input norm; two norm backwards a layer; the input norm recomputed for q/v's dA every layer and
    // the post-attention norm every third layer, for the MLP's recompute; the final norm recomputed for the LM
    // head's backward (every backward read of a value with a recipe reads its recomputed copy: tape.ts).
    expect(r.families.rmsnorm.dispatches).toBe(1 + 2 * L + L + Math.floor(L / 3) + 1);
    expect(r.families.rope.dispatches).toBe(2 * L); // q and k together, forward and backward (layer 0: q alone)
  });

  it('shows the GEMM tile chosen per shape: split-K for the adapters\' dA and dB, register-blocked tiles elsewhere', async () => {
    const r = await dryRun('smollm2-135m');
    const L = benchModelConfig('smollm2-135m').layers;
    const count = (re: RegExp) => Object.entries(r.gemm_variants).filter(([k]) => re.test(k)).reduce((s, [, n]) => s + n, 0);
    const gemms = r.families.matmul.dispatches + r.families.lm_head.dispatches + r.families.lora.dispatches;
    expect(count(/./), JSON.stringify(r.gemm_variants)).toBe(gemms);
    // q and v read the same normed input, so their adapter products group (lora_group.ts): per layer one
    // split-K dispatch for du and dB (N = r: 32-row tiles), one for dA and dx's rank-r terms (dA's M = r: 8-row).
    expect(count(/^matmul_grouped\.matmul_grouped_splitk\{TM=8\}/), 'dA and dx\'s rank-r terms, one dispatch per layer').toBe(L);
    expect(count(/^matmul_grouped\.matmul_grouped_splitk\{TM=32\}/), 'du and dB, one dispatch per layer').toBe(L);
    expect(count(/^matmul_(fast|grouped)\..*WG=16\}$/), 'some GEMMs fill a wave of 128×128 tiles').toBeGreaterThan(0);
    expect(count(/^matmul\.gemm/), 'version 1 only as a fallback').toBe(0);
    expect(r.pipelines_by_kernel['matmul_grouped.matmul_grouped_splitk']).toBe(2);
  });

  it('--subgroups off builds the plain reductions; the families are the same', async () => {
    const lines: string[] = [];
    for (const flag of ['on', 'off']) await benchCommand(['--dry-run', '--quick', '--subgroups', flag], (l) => lines.push(l));
    const [on, off] = lines.map((l) => JSON.parse(l) as DryRunResult);
    expect([on.subgroups, off.subgroups]).toEqual([true, false]);
    const kernels = (r: DryRunResult) => Object.keys(r.pipelines_by_kernel).filter((k) => /^(rmsnorm|cross_entropy|attention)/.test(k)).sort();
    expect(kernels(on)).toEqual(expect.arrayContaining(['attention_subgroups.attention_forward', 'cross_entropy_subgroups.cross_entropy_forward', 'rmsnorm_subgroups.rmsnorm_forward']));
    expect(kernels(off).every((k) => !k.includes('_subgroups')), kernels(off).join(', ')).toBe(true);
    expect(off.families).toEqual(on.families);
    await expect(benchCommand(['--dry-run', '--quick', '--subgroups', 'maybe'], () => {})).rejects.toThrow(/--subgroups must be on or off \(got maybe\)/);
  });

  it('--base-dtype: TinyLlama over a bf16 base within issue 15\'s 6.5 GiB, its weights in half the bytes, over NF4 in under a fifth', async () => {
    const name = 'tinyllama-1.1b', config = benchModelConfig(name);
    const shapes = [...weightShapes(config).values()];
    const f32Bytes = 4 * shapes.reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
    const bf16 = await dryRunModel(name, config, { batch: 8, seq: 256, gemm: 'fast', baseDtype: 'bf16' });
    const nf4 = await dryRunModel(name, config, { batch: 8, seq: 256, gemm: 'fast', baseDtype: 'nf4' });
    const summary = JSON.stringify({ bf16: bf16.peak_gpu_bytes, nf4: nf4.peak_gpu_bytes, weights: [f32Bytes, bf16.weights_bytes, nf4.weights_bytes] });
    expect(bf16.base_dtype).toBe('bf16');
    expect(bf16.peak_gpu_bytes, summary).toBeLessThanOrEqual(6.5 * 2 ** 30);
    // Norms stay float32 (their 2 more bytes a value); each buffer is rounded up to 16 bytes.
    const normValues = shapes.filter((s) => s.length === 1).reduce((n, s) => n + s[0], 0);
    expect(bf16.weights_bytes, summary).toBeLessThanOrEqual(f32Bytes / 2 + 2 * normValues + 16 * shapes.length);
    expect(nf4.weights_bytes, summary).toBeLessThan(f32Bytes / 5);
    expect(nf4.peak_gpu_bytes, summary).toBeLessThan(bf16.peak_gpu_bytes - (bf16.weights_bytes - nf4.weights_bytes) / 2);
  });

  it('issue 15\'s memory targets with --recompute: TinyLlama bf16 ≤ 3.0 GiB, nf4 ≤ 2.0 GiB; Qwen2.5-0.5B nf4 ≤ 1.2 GiB', async () => {
    const targets: [string, 'bf16' | 'nf4', number][] = [['tinyllama-1.1b', 'bf16', 3.0], ['tinyllama-1.1b', 'nf4', 2.0], ['qwen2.5-0.5b', 'nf4', 1.2]];
    for (const [name, baseDtype, gib] of targets) {
      const r = await dryRunModel(name, benchModelConfig(name), { batch: 8, seq: 256, gemm: 'fast', baseDtype, recompute: true });
      expect(r.peak_gpu_bytes, `${name} ${baseDtype} --recompute: ${(r.peak_gpu_bytes / 2 ** 30).toFixed(3)} GiB`).toBeLessThanOrEqual(gib * 2 ** 30);
    }
  });

  it('runs through the bench command without asking for a WebGPU device', async () => {
    const lines: string[] = [];
    await benchCommand(['--dry-run', '--quick'], (l) => lines.push(l));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ model: 'quick', mode: 'dry-run' });
    expect(createNodeGpu).not.toHaveBeenCalled();
  });

  it('--quick through the CLI prints one JSON line', async () => {
    const r = await cli(['bench', '--dry-run', '--quick']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const j = JSON.parse(lines[0]);
    expect(j).toMatchObject({ model: 'quick', mode: 'dry-run', batch: 2, seq: 32, command_buffers_per_step: 2, cpu_waits_per_step: 1 });
    for (const k of ['dispatches_per_step', 'uploaded_bytes_per_step', 'peak_gpu_bytes', 'pipelines', 'flops_per_step', 'bytes_per_step']) {
      expect(j[k], k).toBeGreaterThan(0);
    }
    expect(Object.keys(j.families)).toEqual(expect.arrayContaining(['matmul', 'lm_head', 'lora', 'attention', 'rmsnorm', 'add_rmsnorm', 'rope', 'swiglu', 'cross_entropy', 'optimizer', 'elementwise', 'embedding']));
  });

  it('refuses a sequence above the model\'s positions and a batch × seq that cannot be laid out, in one line', async () => {
    await expect(dryRun('tinyllama-1.1b', 1, 4096)).rejects.toThrow(/--seq 4096 is above tinyllama-1.1b's 2048 positions/);
    const big = dryRun('tinyllama-1.1b', 512, 2048);
    await expect(big).rejects.toBeInstanceOf(LoraStudioError);
    await expect(big).rejects.toThrow(/tinyllama-1.1b at --batch 512 × --seq 2048 does not fit: .*exceeds this GPU's largest buffer .* Use a smaller batch or sequence\.$/);
    for (const args of [['--model', 'gpt-5'], ['--model', 'smollm2-135m', '--seq', '9000'], ['--quick', '--batch', '100000', '--seq', '256'], ['--quick', '--steps', '3'],
      ['--quick', '--base-dtype', 'fp8']]) {
      const r = await cli(['bench', '--dry-run', ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(/^error: bench: /);
    }
  });
});
