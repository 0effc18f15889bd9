// The studio's exports beyond PEFT files (worker/exports.ts through Session.exportAdapter), on Dawn with the
// embedded moby-llama (F16, tied embeddings): a one-step run's library entry comes out as a GGUF adapter, an
// MLX-LM folder zip, a merged model zip (its untargeted tensors the base's bytes, F16 kept, no lm_head, the
// tokenizer and generation files along) and the run's training recipe (every setting of the run in the
// script). An imported entry has no run to write, and without a model nothing that needs one is made: each
// is refused with the reason.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createNodeGpu } from '../../src/gpu/node';
import { AdapterLibrary } from '../../src/io/library';
import { memoryStore } from './memory_store';
import { writeAdapter } from '../../src/io/peft';
import { parseSafetensors } from '../../src/io/safetensors';
import { readZip } from '../../src/io/zip';
import type { LoraSettings, OptimSettings } from '../../src/worker/protocol';
import { DEFAULT_MODEL, Session } from '../../src/worker/session';

const root = fileURLToPath(new URL('../..', import.meta.url));
const modelDir = join(root, 'public', DEFAULT_MODEL.dir);
const sotu = readFileSync(join(root, 'public/data/sotu/train.jsonl'), 'utf8').split('\n').slice(0, 20).join('\n');

const LORA: LoraSettings = { targets: ['q_proj', 'v_proj', 'down_proj'], r: 4, alpha: 8, dropout: 0.05, rslora: true };
const OPTIM: OptimSettings = { lr: 5e-3, schedule: 'cosine', warmupSteps: 0, steps: 1, batchSize: 1, gradAccum: 1, maxGradNorm: 1, seed: 3 };
const files = () => DEFAULT_MODEL.files.map((path) => ({ path, blob: new Blob([new Uint8Array(readFileSync(join(modelDir, path)))]) }));

describe('library exports in the worker', () => {
  it('exports a trained entry as GGUF, MLX, a merged model and its recipe; refuses what cannot be made, with the reason', async () => {
    const library = new AdapterLibrary({ store: memoryStore(), estimate: async () => undefined });
    const session = new Session(() => createNodeGpu(), () => library);
    const exportAs = (adapterId: string, format: 'gguf' | 'mlx' | 'merged' | 'recipe') => session.exportAdapter({ id: 9, type: 'exportAdapter', adapterId, format });

    // Nothing that needs the model is made before one is loaded.
    const imported = await library.importPeft(new Map([
      ['adapter_config.json', new TextEncoder().encode(JSON.stringify({ peft_type: 'LORA', r: 1, target_modules: ['q_proj'], base_model_name_or_path: 'moby-llama' }))],
      ['adapter_model.safetensors', importedWeights()],
    ]));
    expect(imported.notes.join(' ')).toMatch(/has no lora_alpha, so PEFT's default 8 applies/);
    await expect(exportAs(imported.id, 'merged')).rejects.toThrow(/A merged model is the base model’s weights with the adapter added: load moby-llama first/);
    await expect(exportAs(imported.id, 'recipe')).rejects.toThrow(/has no training settings stored \(it was imported/);

    await session.loadModel({ id: 1, type: 'loadModel', source: { kind: 'files', label: 'moby-llama', files: files() } }, () => {});
    await session.loadDataset({ id: 2, type: 'loadDataset', text: sotu, fileName: 'sotu/train.jsonl', seqLen: 16, validationShare: 0, pack: true });
    const run = await session.train({ id: 3, type: 'train', lora: LORA, optim: OPTIM }, () => {});
    expect(run.reason, run.message).toBe('done');
    const id = run.adapterId!;
    const name = (await library.get(id)).name.replace(/[:]/g, '_');

    const gguf = await exportAs(id, 'gguf');
    expect(gguf.fileName).toBe(`${name}.gguf`);
    expect(new TextDecoder().decode(new Uint8Array(await gguf.blob.arrayBuffer()).subarray(0, 4))).toBe('GGUF');
    expect(gguf.notes.join(' ')).toMatch(/rsLoRA/); // α/√r written as llama.cpp's alpha

    const mlx = await exportAs(id, 'mlx');
    expect(mlx.fileName).toBe(`${name}-mlx.zip`);
    expect([...readZip(new Uint8Array(await mlx.blob.arrayBuffer()), mlx.fileName).keys()].sort()).toEqual(['adapter_config.json', 'adapters.safetensors']);

    const merged = await exportAs(id, 'merged');
    expect(merged.fileName).toBe(`${name}-merged.zip`);
    expect(merged.notes[0]).toMatch(/into q_proj, v_proj, down_proj of 4 layers, .*rounded once to F16/);
    const folder = readZip(new Uint8Array(await merged.blob.arrayBuffer()), merged.fileName);
    expect([...folder.keys()].sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const base = parseSafetensors(new Uint8Array(readFileSync(join(modelDir, 'model.safetensors'))));
    const out = parseSafetensors(folder.get('model.safetensors')!);
    expect([...out.tensors.keys()].sort()).toEqual([...base.tensors.keys()].sort());
    expect(out.tensors.has('lm_head.weight')).toBe(false);
    for (const [t, info] of base.tensors) {
      expect(out.tensors.get(t)!.dtype).toBe(info.dtype);
      const targeted = /\.(q_proj|v_proj|down_proj)\.weight$/.test(t);
      expect(Buffer.compare(out.bytes(t), base.bytes(t)) === 0, t).toBe(!targeted);
    }

    const recipe = await exportAs(id, 'recipe');
    expect(recipe.fileName).toBe(`${name}.train_lora.py`);
    const script = (await recipe.blob.text()).split('\n');
    for (const line of ['BASE_MODEL = "moby-llama"', 'DATA_FILE = "sotu/train.jsonl"', 'SEED = 3', '    r=4,', '    lora_alpha=8,', '    lora_dropout=0.05,',
      '    target_modules=["q_proj", "v_proj", "down_proj"],', '    use_rslora=True,', '    max_steps=1,', '    per_device_train_batch_size=1,',
      '    gradient_accumulation_steps=1,', '    learning_rate=0.005,', '    lr_scheduler_type="cosine",', '    warmup_steps=0,', '    max_grad_norm=1,',
      '    max_length=16,', '    packing=True,', '    completion_only_loss=False,  # {"text"} rows: loss on every token']) {
      expect(script, line).toContain(line);
    }
    expect(recipe.notes.join(' ')).toMatch(/set BASE_MODEL to its Hub id/);

    // An entry of another model is refused as Load refuses it.
    await expect(exportAs(imported.id, 'gguf')).rejects.toThrow(/does not fit the loaded model/);
  }, 600_000);
});

/** A r = 1 q_proj adapter of the wrong width (moby-llama's hidden size is 128): importable on its own, not loadable. */
function importedWeights(): Uint8Array {
  const weights = new Map<string, Float32Array>();
  for (let l = 0; l < 4; l++) {
    weights.set(`base_model.model.model.layers.${l}.self_attn.q_proj.lora_A.weight`, new Float32Array(96).fill(0.01));
    weights.set(`base_model.model.model.layers.${l}.self_attn.q_proj.lora_B.weight`, new Float32Array(96).fill(0.01));
  }
  return writeAdapter({ r: 1, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj'], useRslora: false, baseModel: 'moby-llama' }, weights).weights;
}
