// --base-dtype (issue 15, points 1, 2 and 6) through the CLI's own functions: an adapter trained over an NF4
// base is written exactly as over a float32 one (adapter_config.json byte for byte, the same F32 tensors: PEFT's
// format says nothing of the base's quantization) and loads over a bf16 base, where it lowers the loss as it
// did where it was trained; the default is the checkpoint's stored dtype; an unknown value is refused in one line
// naming the choices, before anything loads.

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadAdapterDir, loadModelDir, loadTokenRows } from '../../src/cli/files';
import { generateCommand } from '../../src/cli/generate';
import { trainCommand } from '../../src/cli/train';
import { parseSafetensors } from '../../src/io/safetensors';
import { createModel } from '../../src/model/factory';
import { weightUploader } from '../../src/model/gpu_weights';
import { loadModel } from '../../src/model/load';
import { loadStreamed } from '../../src/model/streamed_model';
import { nodeFolderSource } from '../../src/cli/files';
import { Evaluator } from '../../src/train/trainer';
import { testGpu } from '../gpu/test-gpu';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'lora-base-dtype-'));

async function train(baseDtype: string, out: string): Promise<number[]> {
  const dir = fixture('llama_nf4');
  const losses: number[] = [];
  await trainCommand(['--model', `${dir}model`, '--data', `${dir}data.jsonl`, '--steps', '6', '--batch-size', '2', '--lr', '0.02',
    '--rank', '4', '--alpha', '8', '--seed', '5', '--base-dtype', baseDtype, '--out', out], (line) => losses.push(JSON.parse(line).loss));
  return losses;
}

describe('--base-dtype', () => {
  it('an adapter trained over an NF4 base is PEFT\'s usual adapter, and loads over a bf16 base', async () => {
    const [nf4, f32] = [join(work, 'nf4'), join(work, 'f32')];
    const lossesNf4 = await train('nf4', nf4);
    await train('f32', f32);
    expect(lossesNf4[5], `losses ${lossesNf4}`).toBeLessThan(lossesNf4[0]);
    const text = (d: string) => readFileSync(join(d, 'adapter_config.json'), 'utf8');
    expect(text(nf4)).toBe(text(f32));
    expect(Object.keys(JSON.parse(text(nf4))).filter((k) => /quant|4bit|8bit|bits|dtype/i.test(k))).toEqual([]);
    const header = (d: string) => [...parseSafetensors(readFileSync(join(d, 'adapter_model.safetensors'))).tensors]
      .map(([name, t]) => `${name} ${t.dtype} [${t.shape}]`);
    expect(header(nf4)).toEqual(header(f32));

    // Over a bf16 base: the same tensors, and a loss the training lowered, as it did over NF4.
    const dir = fixture('llama_nf4');
    const { config, weights } = await loadModelDir(`${dir}model`);
    const rows = await loadTokenRows(`${dir}data.jsonl`, config.vocab);
    const ids = Int32Array.from(rows.flat());
    const adapter = await loadAdapterDir(nf4, config);
    const gpu = await testGpu();
    const model = createModel(gpu, config, weights, { baseDtype: 'bf16' });
    model.setAdapter(adapter.config, null); // zeros: B = 0, the base model alone
    // An Evaluator records the adapter's buffers of the moment: one per adapter.
    const before = (await new Evaluator(model, rows.length, rows[0].length).loss(ids)).loss;
    model.setAdapter(adapter.config, adapter.weights);
    const after = (await new Evaluator(model, rows.length, rows[0].length).loss(ids)).loss;
    console.log(`nf4-trained adapter over a bf16 base: loss ${before} → ${after} (over nf4 while training: ${lossesNf4[0]} → ${lossesNf4[5]})`);
    for (const [key, values] of await model.readAdapter()) expect(values, key).toEqual(adapter.weights.get(key));
    expect(after).toBeLessThan(before);
  });

  it('defaults to the checkpoint\'s stored dtype: F32 → f32, BF16 → bf16, F16 → f16; an uploader told none keeps each tensor as it came', async () => {
    const gpu = await testGpu();
    const formats = async (name: string) => {
      const { model } = await loadStreamed((sink) => loadModel(nodeFolderSource(`${fixture(name)}model`), { sink }), async () => gpu, { discard: () => {} });
      const q = model.weights.get('model.layers.0.self_attn.q_proj.weight')!.format, e = model.weights.get('model.embed_tokens.weight')!.format;
      return [model.options.baseDtype, q, e, model.weights.get('model.norm.weight')!.format];
    };
    expect(await formats('llama_gqa')).toEqual(['f32', 'f32', 'f32', 'f32']);
    expect(await formats('llama_bf16')).toEqual(['bf16', 'bf16', 'bf16', 'f32']);
    expect(await formats('qwen2_f16')).toEqual(['f16', 'f16', 'f16', 'f32']);
    // weightUploader without a base dtype (a caller that decides per tensor): nothing the checkpoint kept in float32 is rounded.
    const { config, weights } = await loadModelDir(`${fixture('llama_gqa')}model`);
    const up = weightUploader(gpu, config);
    for (const [name, w] of weights) up.put(name, w, name.includes('layers.0.') ? 'BF16' : 'F32');
    const mixed = up.done();
    expect(mixed.get('model.layers.0.self_attn.q_proj.weight')!.format).toBe('bf16');
    expect(mixed.get('model.layers.1.self_attn.q_proj.weight')!.format).toBe('f32');
  });

  it('refuses an unknown value in one line naming the choices, before the model loads', async () => {
    const choices = /^--base-dtype must be one of f32, bf16, f16, nf4, int8 \(got fp8\)$/;
    await expect(trainCommand(['--model', join(work, 'absent'), '--data', join(work, 'absent.jsonl'), '--out', join(work, 'never'),
      '--base-dtype', 'fp8'], () => {})).rejects.toThrow(choices);
    await expect(generateCommand(['--model', join(work, 'absent'), '--prompt', 'hi', '--base-dtype', 'fp8'])).rejects.toThrow(choices);
  });
});
