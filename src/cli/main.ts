// The LoRA Studio command line: the same engine as the studio, on Dawn in Node.
// Run through `npm run cli -- <command> ...` (scripts/cli.mjs bundles this file and runs it).

import { LoraStudioError } from '../io/errors';
import { GpuError } from '../gpu/errors';
import { loraLinearCommand } from './lora_linear';

const USAGE = `usage: npm run cli -- <command> [args]

commands:
  lora-linear FILE.json   y = Wx + (α/r)·B(Ax) on the GPU; FILE holds {"W", "A", "B", "x", "alpha"[, "bias"]}`;

const COMMANDS: Record<string, (args: string[]) => Promise<string>> = {
  'lora-linear': loraLinearCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h') {
    process.stdout.write(USAGE + '\n');
    return cmd ? 0 : 2;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    process.stderr.write(`unknown command "${cmd}"\n${USAGE}\n`);
    return 2;
  }
  try {
    process.stdout.write((await run(args)) + '\n');
    return 0;
  } catch (e) {
    if (e instanceof LoraStudioError || e instanceof GpuError) {
      process.stderr.write(`error: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
