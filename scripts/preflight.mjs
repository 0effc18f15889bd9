// `npm test`'s preflight: before the type-check, make sure this machine has what the tests need, so a
// missing system package gives one message (or one install) instead of a wall of "No WebGPU adapter" failures.
//
// What the tests need:
//  - WebGPU in Node (Dawn, from the `webgpu` npm package): on Linux the Vulkan loader libvulkan.so.1 and a
//    Vulkan driver Dawn accepts: a real GPU's, or SwiftShader, the CPU driver Debian's chromium package ships
//    (/usr/lib/chromium/vk_swiftshader_icd.json; Mesa's lavapipe is rejected by Dawn, see GPU.md). macOS and
//    Windows use Metal and D3D12, no Vulkan needed.
//  - Chromium with WebGPU for the browser tests: tests/browser/harness.ts drives /usr/bin/chromium.
//
// Why apt and not npm: `@sparticuz/chromium` (a 70 MB npm tarball of brotli archives built for AWS Lambda)
// brings a Vulkan loader and SwiftShader that Dawn accepts, but its headless shell gives no WebGPU adapter,
// so the browser tests need Debian's chromium anyway, and that package already carries SwiftShader: with it,
// the npm package would only replace libvulkan1 (a 150 kB .deb) at the cost of 70 MB for every install.
//
// decide() and probeVerdict() are pure (tests/scripts/preflight.test.ts); gatherFacts(), probeAdapter() and
// preflight() look at and change the machine. This file does not run tests.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const CHROMIUM = '/usr/bin/chromium';
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

// Ubuntu ships Chromium as a snap (its chromium-browser .deb installs the snap), which gives no
// /usr/bin/chromium in a container.
const UBUNTU =
  'Ubuntu packages Chromium as a snap, which does not run in a container; run the tests in a Debian image:\n' +
  '  docker run --rm -v "$PWD":/app -w /app node:20-bookworm bash .ci/run';

const WHY = {
  chromium: 'the browser tests drive it, and its SwiftShader is the CPU WebGPU driver for the kernel tests in Node',
  libvulkan1: 'the Vulkan loader that Dawn (WebGPU in Node) opens',
};

/**
 * @param {import('./preflight.mjs').Facts} facts
 * @returns {import('./preflight.mjs').Plan}
 */
export function decide(facts) {
  if (facts.platform !== 'linux') {
    if (facts.hasChromium) return { action: 'none', packages: [] };
    return {
      action: 'stop',
      packages: [],
      message:
        `npm test runs the browser tests in Debian's Chromium (${CHROMIUM}, WebGPU on SwiftShader), which ${facts.platform} does not have. ` +
        'Run the whole suite in a Debian container:\n' +
        '  docker run --rm -v "$PWD":/app -w /app node:20-bookworm bash .ci/run\n' +
        "or every suite but the browser's here (Dawn uses Metal or D3D12): npx vitest run --exclude 'tests/browser/**'",
    };
  }
  const packages = [];
  if (!facts.hasChromium || (!facts.hasSwiftShader && !facts.hasGpuDriver)) packages.push('chromium');
  if (!facts.hasVulkanLoader) packages.push('libvulkan1');
  if (packages.length === 0) return { action: 'none', packages };
  const why = packages.map((p) => `${p} (${WHY[p]})`).join(' and ');
  const install = ['apt-get', 'install', '-y', '--no-install-recommends', ...packages];
  if (facts.isRoot && facts.hasApt) {
    return {
      action: 'install',
      packages,
      commands: [['apt-get', 'update', '-qq'], install],
      message: `installing ${why}: apt-get update && ${install.join(' ')}`,
    };
  }
  const command = `sudo apt-get update && sudo ${install.join(' ')}`;
  const message = facts.hasApt
    ? `npm test needs ${why}. Install them as root, then run npm test again:\n  ${command}`
    : `npm test needs ${why}, and this machine has no apt-get. On Debian or Ubuntu the command is:\n  ${command}\n` +
      `elsewhere install the Vulkan loader libvulkan.so.1 and a Chromium with WebGPU at ${CHROMIUM} (with ${SWIFTSHADER_ICD}, or a GPU's Vulkan driver).`;
  return { action: 'stop', packages, message };
}

/**
 * What the adapter check (one tiny kernel through the CLI, on the engine's own createNodeGpu) means.
 * Only a missing adapter stops the run: any other failure is a bug the tests themselves will report.
 * @param {{ status: number | null, stderr: string }} run
 * @returns {import('./preflight.mjs').Verdict}
 */
export function probeVerdict(run) {
  if (run.status === 0) return { ok: true };
  const line = run.stderr.split('\n').find((l) => /No WebGPU adapter|no-adapter/.test(l));
  if (line) {
    return {
      ok: false,
      stop: true,
      message: `Dawn found no WebGPU adapter in Node, so every GPU test would fail:\n  ${line.replace(/^error:\s*/, '')}`,
    };
  }
  const last = run.stderr.trim().split('\n').slice(-1)[0] ?? '';
  return { ok: false, stop: false, message: `the adapter check failed for another reason (the tests will say more): ${last}` };
}

// ---- the machine --------------------------------------------------------------------------------------

function hasVulkanLoader() {
  for (const ldconfig of ['/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    if (!existsSync(ldconfig)) continue;
    const r = spawnSync(ldconfig, ['-p'], { encoding: 'utf8' });
    if (r.status === 0 && /\blibvulkan\.so\.1\b/.test(r.stdout)) return true;
  }
  // A loader unpacked into a private folder (GPU.md) is found through LD_LIBRARY_PATH, as Dawn finds it.
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib'];
  return dirs.some((d) => existsSync(join(d, 'libvulkan.so.1')));
}

function hasGpuDriver() {
  if (process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return true;
  if (!existsSync('/dev/dri') && !existsSync('/dev/nvidia0')) return false;
  return ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'].some((d) => {
    try {
      return readdirSync(d).some((f) => f.endsWith('.json') && !f.startsWith('lvp'));
    } catch {
      return false;
    }
  });
}

/** @returns {import('./preflight.mjs').Facts} */
export function gatherFacts() {
  return {
    platform: process.platform,
    isRoot: process.getuid?.() === 0,
    hasApt: existsSync('/usr/bin/apt-get'),
    hasVulkanLoader: process.platform !== 'linux' || hasVulkanLoader(),
    hasChromium: existsSync(CHROMIUM),
    hasSwiftShader: existsSync(SWIFTSHADER_ICD),
    hasGpuDriver: hasGpuDriver(),
  };
}

/** Runs the CLI's smallest GPU command (the LoRA calculator on a 4×4 example): Dawn, a device, one kernel. */
export function probeAdapter(root, env) {
  const r = spawnSync(process.execPath, ['scripts/cli.mjs', 'lora-linear', 'examples/lora-linear-identity.json'], {
    cwd: root,
    env,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return probeVerdict({ status: r.status, stderr: r.stderr ?? String(r.error ?? '') });
}

function exec(cmd, args, env) {
  const r = spawnSync(cmd, args, { env: { ...env, DEBIAN_FRONTEND: 'noninteractive' }, encoding: 'utf8' });
  return { status: r.status, output: r.stderr || r.stdout || String(r.error ?? '') };
}

/**
 * Check, install what is missing where we may (root with apt), check again, then run one kernel in Node.
 * Returns false to stop `npm test`. `machine` replaces the parts that look at or change the machine (tests).
 * @param {string} root
 * @param {NodeJS.ProcessEnv} env
 * @param {(line: string) => void} [log]
 * @param {Partial<import('./preflight.mjs').Machine>} [machine]
 */
export function preflight(root, env, log = console.log, machine = {}) {
  const m = { facts: gatherFacts, exec: (cmd, args) => exec(cmd, args, env), probe: () => probeAdapter(root, env), ...machine };
  let plan = decide(m.facts());
  if (plan.action === 'install') {
    log(`  ${plan.message}`);
    for (const [cmd, ...args] of plan.commands) {
      const r = m.exec(cmd, args);
      if (r.status !== 0) {
        log(`\npreflight: \`${[cmd, ...args].join(' ')}\` failed (exit ${r.status}):\n${r.output.trim().split('\n').slice(-8).join('\n')}`);
        if (args[0] === 'install' && /Unable to locate package chromium|snap/.test(r.output)) log(UBUNTU);
        return false;
      }
    }
    plan = decide(m.facts());
  }
  if (plan.action !== 'none') {
    log(`\npreflight: ${plan.action === 'stop' ? plan.message : `still missing after the install: ${plan.packages.join(', ')}`}`);
    return false;
  }
  const verdict = m.probe();
  if (verdict.ok) {
    log('  ok: WebGPU adapter in Node, Chromium for the browser tests');
    return true;
  }
  log(`\npreflight: ${verdict.message}`);
  return !verdict.stop;
}
