// The CLI as a user runs it: `node scripts/cli.mjs ARGS` in the repository root, in its own process, with
// its exit code, stdout and stderr. For the tests that check what a command prints and writes end to end.

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI with `args`; killed after `timeoutMs` (sized for SwiftShader on a busy 2-core machine). */
export function cli(args: string[], timeoutMs = 300_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile('node', ['scripts/cli.mjs', ...args], { cwd: root, timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}
