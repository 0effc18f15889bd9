// `npm test`'s preflight decision (scripts/preflight.mjs): from what a machine has to nothing, an apt install
// as root, or one message naming the command to run. Pure: nothing here installs or removes a package.

import { describe, expect, it } from 'vitest';
import { decide, preflight, probeVerdict, type Facts, type Verdict } from '../../scripts/preflight.mjs';

const ALL: Facts = {
  platform: 'linux', isRoot: true, hasApt: true, hasVulkanLoader: true, hasChromium: true, hasSwiftShader: true, hasGpuDriver: false,
};
const BARE: Facts = { ...ALL, hasVulkanLoader: false, hasChromium: false, hasSwiftShader: false };
const COMMAND = 'sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium libvulkan1';

describe('preflight decide', () => {
  it('does nothing when the loader, SwiftShader and Chromium are there', () => {
    expect(decide(ALL)).toEqual({ action: 'none', packages: [] });
    // A real GPU's Vulkan driver stands in for SwiftShader in Node; Chromium is still needed for the browser.
    expect(decide({ ...ALL, hasSwiftShader: false, hasGpuDriver: true })).toEqual({ action: 'none', packages: [] });
  });

  it('plans apt-get update and one install of what is missing, as root with apt (CI)', () => {
    const plan = decide(BARE);
    expect(plan.action).toBe('install');
    if (plan.action !== 'install') return;
    expect(plan.packages).toEqual(['chromium', 'libvulkan1']);
    expect(plan.commands).toEqual([
      ['apt-get', 'update', '-qq'],
      ['apt-get', 'install', '-y', '--no-install-recommends', 'chromium', 'libvulkan1'],
    ]);
    // Said once: what it installs and why.
    expect(plan.message).toMatch(/^installing chromium \(the browser tests drive it.*\) and libvulkan1 \(the Vulkan loader that Dawn/);
  });

  it('installs only the missing package', () => {
    const loader = decide({ ...ALL, hasVulkanLoader: false });
    expect(loader.action === 'install' && loader.commands[1]).toEqual(['apt-get', 'install', '-y', '--no-install-recommends', 'libvulkan1']);
    // A Chromium without SwiftShader (not Debian's) and no GPU driver: Node would have no adapter.
    const noSwiftShader = decide({ ...ALL, hasSwiftShader: false });
    expect(noSwiftShader.packages).toEqual(['chromium']);
  });

  it('stops with the exact command when not root', () => {
    const plan = decide({ ...BARE, isRoot: false });
    expect(plan.action).toBe('stop');
    if (plan.action !== 'stop') return;
    expect(plan.message).toContain(`\n  ${COMMAND}`);
    expect(plan.message).toMatch(/^npm test needs chromium .* and libvulkan1 .*Install them as root, then run npm test again/s);
  });

  it('stops naming the Debian command and what is needed when there is no apt', () => {
    const plan = decide({ ...BARE, hasApt: false, hasChromium: true, hasSwiftShader: true });
    expect(plan.action).toBe('stop');
    if (plan.action !== 'stop') return;
    expect(plan.packages).toEqual(['libvulkan1']);
    expect(plan.message).toContain('this machine has no apt-get');
    expect(plan.message).toContain('sudo apt-get update && sudo apt-get install -y --no-install-recommends libvulkan1');
    expect(plan.message).toContain('libvulkan.so.1');
  });

  it('off Linux: no Vulkan packages; stops with a container command unless /usr/bin/chromium exists', () => {
    for (const platform of ['darwin', 'win32']) {
      const plan = decide({ ...BARE, platform, hasApt: false, isRoot: false });
      expect(plan.action).toBe('stop');
      if (plan.action !== 'stop') continue;
      expect(plan.packages).toEqual([]);
      expect(plan.message).toContain(`which ${platform} does not have`);
      expect(plan.message).toContain('docker run --rm -v "$PWD":/app -w /app node:20-bookworm bash .ci/run');
      expect(plan.message).toContain("npx vitest run --exclude 'tests/browser/**'");
      expect(decide({ ...BARE, platform, hasChromium: true })).toEqual({ action: 'none', packages: [] });
    }
  });
});

describe('preflight adapter check', () => {
  it('passes on exit 0, stops on a missing adapter, lets other failures through to the tests', () => {
    expect(probeVerdict({ status: 0, stderr: '' })).toEqual({ ok: true });
    const none = probeVerdict({ status: 1, stderr: 'error: No WebGPU adapter in Node: install a Vulkan driver\n' });
    expect(none).toEqual({ ok: false, stop: true, message: 'Dawn found no WebGPU adapter in Node, so every GPU test would fail:\n  No WebGPU adapter in Node: install a Vulkan driver' });
    const other = probeVerdict({ status: 1, stderr: 'SyntaxError: Unexpected token\n' });
    expect(other).toMatchObject({ ok: false, stop: false });
    expect(other.ok === false && other.message).toMatch(/SyntaxError: Unexpected token$/);
  });
});

describe('preflight run', () => {
  /** A machine that starts as `before` and, once apt-get install has run, has `after`. */
  function machine(before: Facts, after: Facts, installStatus = 0, probe: Verdict = { ok: true }) {
    let installed = false;
    const ran: string[] = [];
    return {
      ran,
      machine: {
        facts: () => (installed ? after : before),
        exec: (cmd: string, args: string[]) => {
          ran.push([cmd, ...args].join(' '));
          if (args[0] === 'install' && installStatus === 0) installed = true;
          return { status: args[0] === 'install' ? installStatus : 0, output: 'E: Unable to locate package chromium\n' };
        },
        probe: () => {
          ran.push('probe');
          return probe;
        },
      },
    };
  }

  it('as root with apt: says what it installs once, installs, checks again, runs the kernel, goes on', () => {
    const lines: string[] = [];
    const m = machine(BARE, ALL);
    expect(preflight('/repo', {}, (l) => lines.push(l), m.machine)).toBe(true);
    expect(m.ran).toEqual(['apt-get update -qq', 'apt-get install -y --no-install-recommends chromium libvulkan1', 'probe']);
    expect(lines.filter((l) => l.includes('installing'))).toHaveLength(1);
  });

  it('stops with apt-get\'s own words when the install fails, before any test', () => {
    const lines: string[] = [];
    const m = machine(BARE, ALL, 100);
    expect(preflight('/repo', {}, (l) => lines.push(l), m.machine)).toBe(false);
    expect(m.ran).not.toContain('probe');
    expect(lines.at(-2)).toContain('`apt-get install -y --no-install-recommends chromium libvulkan1` failed (exit 100):\nE: Unable to locate package chromium');
    expect(lines.at(-1)).toContain('node:20-bookworm bash .ci/run');
  });

  it('without root: installs nothing and stops with the command', () => {
    const lines: string[] = [];
    const m = machine({ ...BARE, isRoot: false }, ALL);
    expect(preflight('/repo', {}, (l) => lines.push(l), m.machine)).toBe(false);
    expect(m.ran).toEqual([]);
    expect(lines.join('\n')).toContain(COMMAND);
  });

  it('all present but no adapter in Node: stops; another failure of the check lets the tests run', () => {
    const none = machine(ALL, ALL, 0, { ok: false, stop: true, message: 'Dawn found no WebGPU adapter' });
    expect(preflight('/repo', {}, () => {}, none.machine)).toBe(false);
    const other = machine(ALL, ALL, 0, { ok: false, stop: false, message: 'the adapter check failed for another reason' });
    expect(preflight('/repo', {}, () => {}, other.machine)).toBe(true);
  });
});
