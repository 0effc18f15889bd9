// The LoRA Studio command line: the same engine as the studio, on Dawn in Node.
// Run through `npm run cli -- <command> ...` (scripts/cli.mjs bundles this file and runs it).

import { LoraStudioError } from '../io/errors';
import { GpuError } from '../gpu/errors';
import { loraLinearCommand } from './lora_linear';
import { evalCommand, trainCommand } from './train';
import { benchCommand } from './bench';
import { blendCommand } from './blend';
import { exportCommand } from './export';
import { mergeCommand } from './merge';
import { recipeCommand } from './recipe';
import { generateCommand } from './generate';

const USAGE = `usage: npm run cli -- <command> [args]

commands:
  lora-linear FILE.json   y = Wx + (α/r)·B(Ax) on the GPU; FILE holds {"W", "A", "B", "x", "alpha"[, "bias"]}
  eval  --model DIR|HUB_ID|HUB_URL [--adapter DIR [--alpha A]] --data FILE [--batch-size N] [--seq-len N] [--pack] [--limit N]
        prints {"loss": L, "tokens": N}: the mean token cross-entropy over every row (the first N rows with --limit)
        (FILE: JSONL {"input_ids"}, {"text"}, {"prompt","completion"}, {"messages"} rows, or plain text)
  train --model DIR|HUB_ID|HUB_URL --data FILE --out DIR [--adapter DIR] [--targets q_proj,v_proj] [--rank 8]
        [--alpha 16] [--dropout 0] [--rslora] [--dora] [--optimizer adamw|sgd] [--lr X] [--steps N] [--batch-size 8]
        [--weight-decay 0] [--max-grad-norm 0] [--seed S] [--seq-len N] [--pack] [--recompute] [--base-dtype f32|bf16|f16|nf4|int8]
        (--recompute: each layer's activations recomputed in the backward: less memory, about a third more compute,
        the same gradients bit for bit)
        prints {"step": i, "loss": L} per step, writes adapter_model.safetensors + adapter_config.json to --out
        --base-dtype: how the frozen base weights are held on the GPU (default: the checkpoint's own, F32/BF16/F16;
        a smaller one than the checkpoint's, e.g. bf16 from F32, rounds at load; nf4 is QLoRA's 4-bit, int8 per
        channel); the adapter, its gradients and optimizer state stay float32, and the saved adapter is the same
  bench [--model smollm2-135m|qwen2.5-0.5b|tinyllama-1.1b|qwen3-0.6b|all] [--batch 8] [--seq 256] [--steps 10] [--warmup 2]
        [--matmul-size 4096] [--gemm fast|v1] [--base-dtype f32|bf16|f16|nf4|int8] [--quick]
        training speed on random weights, one JSON line per model (bench/README.md)
  bench --dry-run [--model NAME|all] [--batch 8] [--seq 256] [--gemm fast|v1] [--base-dtype D] [--recompute] [--quick]
        no GPU: dispatches, command buffers, CPU waits, uploads, peak memory, FLOPs and bytes of one step
  generate --model DIR|HUB_ID|HUB_URL [--adapter DIR[:WEIGHT]]... --prompt TEXT [--max-tokens 32] [--temperature 0]
        [--top-k 0] [--seed 0] [--base-dtype D]   continue TEXT (greedy at temperature 0; the same seed, the same text); several
        adapters blend live, ΔW = Σ wᵢ·sᵢ·Bᵢ·Aᵢ (WEIGHT default 1, may be negative); prints {"text", "tokens", "ids", "adapters"}
  blend --model DIR --adapter DIR:WEIGHT [--adapter DIR:WEIGHT]... [--combination svd|cat] [--rank K] --out DIR
        PEFT's add_weighted_adapter (weights may be negative), written as a PEFT adapter folder
  export --model DIR --adapter DIR --format peft|gguf|mlx|merged --out PATH
        the adapter for llama.cpp (GGUF LoRA), MLX-LM (adapter folder) or PEFT, or merged into the model (as merge);
        prints {"format", "files", "notes"}
  merge --model DIR --adapter DIR --out DIR
        W' = W + s·B·A into every targeted weight (PEFT's merge_and_unload), written as a Hugging Face model folder
        (config.json, model.safetensors in the base's F32/F16/BF16, tokenizer and generation files); --out: a new or empty folder
  recipe --model ID --data FILE [train's settings flags] --out FILE.py
        the run train would make with these flags, as a PEFT + TRL Python script for GPUs (python FILE.py / accelerate launch)`;

const print = (line: string) => process.stdout.write(line + '\n');

const COMMANDS: Record<string, (args: string[]) => Promise<string>> = {
  'lora-linear': loraLinearCommand,
  eval: evalCommand,
  train: (args) => trainCommand(args, print),
  bench: (args) => benchCommand(args, print),
  generate: (args) => generateCommand(args),
  blend: blendCommand,
  export: exportCommand,
  merge: mergeCommand,
  recipe: recipeCommand,
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
    const out = await run(args);
    if (out) print(out);
    return 0;
  } catch (e) {
    if (e instanceof LoraStudioError || e instanceof GpuError) {
      process.stderr.write(`error: ${e.message}\n`);
      return 1;
    }
    // A file-system error no command named itself ("EACCES: permission denied, open 'x'"): still a path for
    // the user to fix, so one line. Anything else is a bug, and its stack trace is for us.
    const io = e as NodeJS.ErrnoException;
    if (typeof io?.code === 'string' && typeof io.syscall === 'string') {
      process.stderr.write(`error: ${io.message}\n`);
      return 1;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
