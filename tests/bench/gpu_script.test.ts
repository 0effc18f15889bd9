// The GPU machine's one command (bench/run.sh, copied into dist-gpu/ by scripts/bundle-gpu.mjs) and its report
// combiner (bench/gpu_report.py), tested where no GPU is: the script parses; each missing prerequisite stops it
// before anything is unpacked, with one line that names what to install; and the combiner computes the ratios
// engine/PyTorch from sample benches' lines. The full run needs the GPU machine (bench/README.md).

import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const RUN = join(root, 'bench', 'run.sh');

/** The real path of a command on this machine (pyenv's python3 is a shim script; take what it runs). */
function real(cmd: string): string {
  if (cmd === 'python3') return execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
  return execFileSync('bash', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim();
}

/** What run.sh calls before its checks pass, and the coreutils it may reach after. */
const BASE_TOOLS = ['bash', 'uname', 'getconf', 'sed', 'sort', 'head', 'grep', 'cat', 'cut', 'cksum', 'mkdir', 'chmod', 'cp', 'mv', 'ls', 'env', 'date', 'timeout', 'dirname', 'rm'];

/** A bundle folder of empty stand-ins (the checks read only requirements.env) and a bin folder holding `tools` only. */
function fakeBundle(tools: string[], needGlibc = '2.17') {
  const dir = mkdtempSync(join(tmpdir(), 'lora-runsh-'));
  const bundle = join(dir, 'dist-gpu'), bin = join(dir, 'bin');
  mkdirSync(join(bundle, 'node_modules', 'webgpu', 'dist', 'linux-x64'), { recursive: true });
  mkdirSync(bin);
  copyFileSync(RUN, join(bundle, 'run.sh'));
  for (const f of ['node.xz', 'node_modules/webgpu/dist/linux-x64/dawn.node.xz', 'node_modules/webgpu/index.js', 'node_modules/webgpu/package.json',
    'cli.mjs', 'gpu_report.py', 'torch_peft.py', 'models.json']) writeFileSync(join(bundle, f), '');
  writeFileSync(join(bundle, 'requirements.env'), `ARCH=x86_64\nNEED_GLIBC=${needGlibc}\n`);
  for (const t of tools) symlinkSync(real(t), join(bin, t));
  return { bundle, bin, work: join(dir, 'work') };
}

function run(b: { bundle: string; bin: string; work: string }, args: string[] = []) {
  const r = spawnSync(join(b.bin, 'bash'), [join(b.bundle, 'run.sh'), ...args], {
    encoding: 'utf8', env: { PATH: b.bin, HOME: b.bundle, LORA_BENCH_WORK: b.work, LORA_BENCH_OUT: join(b.bundle, 'results') }, timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectRefusal(r: { code: number | null; stdout: string; stderr: string }, message: RegExp, b: { work: string }) {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr.trim()).toMatch(message);
  expect(existsSync(b.work), 'nothing unpacked').toBe(false);
}

describe('bench/run.sh', () => {
  it('parses (bash -n)', () => {
    expect(spawnSync('bash', ['-n', RUN]).status).toBe(0);
  });

  it('its phases\' time limits leave room for the checks and unpacking inside 4 minutes', () => {
    const limits = [...readFileSync(RUN, 'utf8').matchAll(/^phase (\w+) (\d+) /gm)].map((m) => [m[1], Number(m[2])] as const);
    expect(limits.map(([name]) => name)).toEqual(['engine', 'engine_plain', 'dry_run', 'torch']);
    expect(limits.reduce((s, [, t]) => s + t, 0), 'seconds of phases, of 240').toBeLessThanOrEqual(220);
  });

  it('refuses a folder that is not a bundle, and an unknown argument', () => {
    const r = spawnSync('bash', [RUN, '--check'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^run\.sh: node\.xz is missing: this folder is not a complete bundle; make one with 'node scripts\/bundle-gpu\.mjs'/);
    const b = fakeBundle([...BASE_TOOLS, 'xz']);
    expectRefusal(run(b, ['--model', 'all']), /^run\.sh: unknown argument '--model'; use: bash run\.sh \| bash run\.sh bench/, b);
  });

  it('without python3 the full run stops at once and says why; the engine alone is offered', () => {
    const b = fakeBundle([...BASE_TOOLS, 'xz']);
    expectRefusal(run(b), /^run\.sh: python3 is not installed: the PyTorch bench and the report need it \(or run only the engine: bash run\.sh bench --model all\)$/, b);
    expectRefusal(run(b, ['--check']), /python3 is not installed/, b);
  });

  it('without xz and python3 nothing can be unpacked: it says so before trying', () => {
    const b = fakeBundle(BASE_TOOLS);
    expectRefusal(run(b, ['bench', '--quick']), /^run\.sh: neither xz nor python3 is installed: one is needed to unpack node and Dawn/, b);
  });

  it('refuses a glibc older than the bundled node and Dawn need, naming both versions', () => {
    const b = fakeBundle([...BASE_TOOLS, 'xz'], '99.1');
    expectRefusal(run(b, ['bench', '--quick']), /^run\.sh: glibc 2\.\d+ is older than 99\.1, which the bundled node and Dawn need/, b);
  });

  it('without timeout the full run refuses rather than risk the 4-minute budget', () => {
    const b = fakeBundle([...BASE_TOOLS.filter((t) => t !== 'timeout'), 'xz', 'python3']);
    expectRefusal(run(b), /^run\.sh: timeout \(coreutils\) is not installed/, b);
  });
});

describe('bench/gpu_report.py', () => {
  it('combines the three benches into one report with the ratios engine/PyTorch', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lora-report-'));
    const line = (o: object) => JSON.stringify(o) + '\n';
    const shape = { batch: 8, seq: 256 };
    writeFileSync(join(dir, 'engine.jsonl'),
      line({ model: 'smollm2-135m', device: 'nvidia/hopper', subgroups: true, ...shape, ms_per_step_median: 60, tokens_per_s: 34133, peak_gpu_bytes: 2e9, matmul_fast: { q_proj: 20, mlp_up: 30 }, profile: { clock: 'timestamp-query' } }) +
      'warning: not json\n' +
      line({ model: 'tinyllama-1.1b', device: 'google/swiftshader', ...shape, ms_per_step_median: 250, tokens_per_s: 8192, peak_gpu_bytes: 8e9, matmul_fast: { q_proj: 10 } }));
    writeFileSync(join(dir, 'plain.jsonl'), line({ model: 'smollm2-135m', subgroups: false, ...shape, ms_per_step_median: 75 }));
    writeFileSync(join(dir, 'dry.jsonl'), line({ model: 'smollm2-135m', mode: 'dry-run', dispatches_per_step: 1471 }));
    writeFileSync(join(dir, 'torch.jsonl'),
      line({ model: 'smollm2-135m', ...shape, ms_per_step_median: 150, tokens_per_s: 13653, peak_gpu_bytes: 4e9, matmul: { q_proj: 40, mlp_up: 30 }, attn: 'sdpa' }) +
      line({ model: 'tinyllama-1.1b', batch: 4, seq: 256, ms_per_step_median: 200, tokens_per_s: 5120, peak_gpu_bytes: 1e10, matmul: { q_proj: 0 } }));
    writeFileSync(join(dir, 'meta.json'), JSON.stringify({ gpu: 'NVIDIA H200, 580.0' }));
    execFileSync('python3', [join(root, 'bench', 'gpu_report.py'), '--engine', join(dir, 'engine.jsonl'), '--engine-plain', join(dir, 'plain.jsonl'), '--dry-run', join(dir, 'dry.jsonl'),
      '--torch', join(dir, 'torch.jsonl'), '--meta', join(dir, 'meta.json'), '--out', join(dir, 'report.json')]);
    const r = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
    expect(r.meta).toEqual({ gpu: 'NVIDIA H200, 580.0' });
    const s = r.models['smollm2-135m'];
    expect(s.ratios).toEqual({ ms_per_step: 0.4, peak_gpu_bytes: 0.5, tokens_per_s: 2.5, matmul: { q_proj: 0.5, mlp_up: 1 } });
    expect(s.goals).toEqual({ ms_per_step: { at_most: 0.5, met: true } });
    expect(s.dry_run.dispatches_per_step).toBe(1471);
    expect(s.subgroups_vs_plain, 'step time with subgroup reductions / without').toBe(0.8);
    expect(r.models['tinyllama-1.1b'].subgroups_vs_plain).toBeUndefined();
    const t = r.models['tinyllama-1.1b'];
    expect(t.ratios.ms_per_step).toBe(1.25);
    expect(t.ratios.matmul.q_proj, 'no ratio to a zero').toBeNull();
    expect(t.goals.ms_per_step).toEqual({ at_most: 0.8, met: false });
    expect(r.missing).toEqual(expect.arrayContaining([
      'tinyllama-1.1b: no dry_run result',
      expect.stringMatching(/^tinyllama-1\.1b: the engine ran on SwiftShader/),
      'tinyllama-1.1b: engine and PyTorch ran different shapes, ratios not comparable',
    ]));
    expect(r.unparsed).toEqual(['engine.jsonl:2: warning: not json']);
  });
});
