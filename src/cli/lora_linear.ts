// `lora-linear FILE.json`: the teaching calculator. Reads W, A, B, x and α, runs the fused LoRA kernel on
// the GPU and prints {"y", "deltaW", "scale", "params"} as JSON.

import { readFile } from 'node:fs/promises';
import { LoraStudioError } from '../io/errors';
import { parseLoraLinearInput } from '../io/lora_linear_input';
import { runLoraLinear } from '../autograd/lora_linear';
import { createNodeGpu } from '../gpu/node';

const rows = (a: Float32Array, n: number, m: number) => Array.from({ length: n }, (_, i) => Array.from(a.subarray(i * m, (i + 1) * m)));

export async function loraLinearCommand(args: string[]): Promise<string> {
  const file = args[0];
  if (!file || args.length > 1 || file.startsWith('--')) throw new LoraStudioError('bad-input', 'usage: lora-linear FILE.json (one JSON file with W, A, B, x and alpha)');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new LoraStudioError('bad-input', `${file}: cannot read it (${(e as Error).message}).`, { file });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LoraStudioError('bad-input', `${file}: not valid JSON (${(e as Error).message}).`, { file });
  }
  const input = parseLoraLinearInput(json, file);
  const scale = input.alpha / input.r;
  const gpu = await createNodeGpu();
  const { y, deltaW } = await runLoraLinear(gpu, { n: input.n, inF: input.inF, outF: input.outF, r: input.r, scale }, input);
  gpu.destroy();
  const yOut = input.xIsVector ? Array.from(y) : rows(y, input.n, input.outF);
  return JSON.stringify({
    y: yOut,
    deltaW: rows(deltaW, input.outF, input.inF),
    scale,
    params: { lora: input.r * (input.inF + input.outF), full: input.inF * input.outF },
  });
}
