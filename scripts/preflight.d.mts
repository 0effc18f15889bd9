// Types of scripts/preflight.mjs (plain JS, so that `npm test` runs it with Node before anything is built).

/** What the machine has, as gatherFacts() finds it. */
export interface Facts {
  platform: string;
  isRoot: boolean;
  /** /usr/bin/apt-get exists. */
  hasApt: boolean;
  /** libvulkan.so.1, through ldconfig or LD_LIBRARY_PATH (always true off Linux: Dawn uses Metal or D3D12). */
  hasVulkanLoader: boolean;
  /** /usr/bin/chromium, which tests/browser/harness.ts drives. */
  hasChromium: boolean;
  /** Debian chromium's SwiftShader Vulkan driver, the CPU WebGPU adapter src/gpu/node.ts falls back to. */
  hasSwiftShader: boolean;
  /** A GPU device node and a Vulkan driver for it (or VK_ICD_FILENAMES / VK_DRIVER_FILES set). */
  hasGpuDriver: boolean;
}

export type Plan =
  | { action: 'none'; packages: string[] }
  | { action: 'install'; packages: string[]; commands: string[][]; message: string }
  | { action: 'stop'; packages: string[]; message: string };

export type Verdict = { ok: true } | { ok: false; stop: boolean; message: string };

/** The parts of preflight() that look at or change the machine. */
export interface Machine {
  facts(): Facts;
  exec(cmd: string, args: string[]): { status: number | null; output: string };
  probe(): Verdict;
}

export const CHROMIUM: string;
export const SWIFTSHADER_ICD: string;
export function decide(facts: Facts): Plan;
export function probeVerdict(run: { status: number | null; stderr: string }): Verdict;
export function gatherFacts(): Facts;
export function probeAdapter(root: string, env: NodeJS.ProcessEnv): Verdict;
export function preflight(root: string, env: NodeJS.ProcessEnv, log?: (line: string) => void, machine?: Partial<Machine>): boolean;
