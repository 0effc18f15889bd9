// The embedded default model (public/models/moby-llama): it loads as an ordinary Hugging Face folder, and the
// engine's greedy generations are the ones its model card lists (made by PyTorch in the pretraining script).

import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testGpu } from '../gpu/test-gpu';
import { loadModelDir } from '../../src/cli/files';
import { parseSafetensors } from '../../src/io/safetensors';
import { weightShapes } from '../../src/model/config';
import { createModel } from '../../src/model/factory';
import { Generator } from '../../src/train/generate';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = join(root, 'public/models/moby-llama');
const card = readFileSync(join(dir, 'README.md'), 'utf8');

describe('the embedded default model', () => {
  it('is a Hugging Face LlamaForCausalLM folder the loader reads: config, F16 safetensors, tokenizer', async () => {
    const loaded = await loadModelDir(dir);
    expect(loaded.config).toMatchObject({ architecture: 'LlamaForCausalLM', tied: true, vocab: 2048 });
    expect(loaded.tokenizer?.vocabSize).toBe(2048);
    const st = parseSafetensors(readFileSync(join(dir, 'model.safetensors')), 'model.safetensors');
    const want = weightShapes(loaded.config);
    expect([...st.tensors.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [name, info] of st.tensors) {
      expect(info.dtype).toBe('F16');
      expect(info.shape).toEqual(want.get(name));
    }
    expect(st.metadata.format).toBe('pt');
    const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(raw).toMatchObject({ model_type: 'llama', architectures: ['LlamaForCausalLM'], torch_dtype: 'float16' });
  });

  it("generates greedily exactly what its model card says PyTorch generated", async () => {
    const gpu = await testGpu();
    const { config, weights, tokenizer } = await loadModelDir(dir);
    const model = createModel(gpu, config, weights);
    const lines = [...card.matchAll(/^- \*\*(.+?)\*\* → (".*")$/gm)];
    expect(lines.length).toBeGreaterThanOrEqual(3);
    // Two of the card's prompts: every token is a full forward pass (no KV cache yet), slow on SwiftShader.
    for (const [, prompt, json] of lines.slice(0, 2)) {
      const ids = tokenizer!.encode(prompt);
      const gen = new Generator(model, Math.min(ids.length + 40, config.maxPositions));
      const out = await gen.generate(ids, { maxNewTokens: 40, temperature: 0, topK: 0, seed: 0, stopIds: [0] });
      expect(tokenizer!.decode([...ids, ...out])).toBe(JSON.parse(json));
    }
  }, 600_000);
});
