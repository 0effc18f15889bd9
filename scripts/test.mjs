// `npm test`: check the machine (scripts/preflight.mjs: installs chromium and libvulkan1 as root with apt, else
// says what to run and stops), type-check, build the studio (the browser tests load dist/), then run every
// vitest suite: WGSL kernels on WebGPU (a real GPU, or SwiftShader on a machine without one), the CLI, file
// formats, and the built app in headless Chromium. Ends with one "N passed, N failed" line.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { preflight } from './preflight.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const env = { ...process.env };
// SwiftShader's Vulkan loader complains on every device creation without a runtime dir.
if (!env.XDG_RUNTIME_DIR) {
  env.XDG_RUNTIME_DIR = join(tmpdir(), `lora-studio-xdg-${process.getuid?.() ?? 0}`);
  mkdirSync(env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
}

function step(name, cmd, args) {
  console.log(`\n▶ ${name}: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, env, stdio: 'inherit' });
  return r.status ?? 1;
}

console.log('▶ preflight: what the tests need from this machine');
if (!preflight(root, env)) process.exit(1);
const bin = (name) => join(root, 'node_modules', '.bin', name);
if (step('type-check', bin('tsc'), ['--noEmit']) !== 0) process.exit(1);
if (step('build the studio', bin('vite'), ['build', '--logLevel', 'warn']) !== 0) process.exit(1);

const report = join(root, 'test-results', 'vitest.json');
const extra = process.argv.slice(2);
const code = step('tests', bin('vitest'), ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...extra]);
if (existsSync(report)) {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  console.log(`\ntests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ''));
}
process.exit(code);
