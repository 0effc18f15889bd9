// Import (the page: the library slice's expectation, io/library.ts importPeft) and Load (the worker:
// adapter_entries.ts adapterMisfit) decide an adapter's base model the same way, by one function
// (io/base_identity.ts): same architecture and shapes is the same base whatever the folder was called; other
// shapes are refused by both, for the same reason. And the studio refuses a model folder without
// tokenizer.json when it loads it, while the CLI (token-id data) still loads one. No GPU here.

import { readFileSync } from 'node:fs';
import { mkdtempSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModelDir } from '../../src/cli/files';
import { LoraStudioError } from '../../src/io/errors';
import { AdapterLibrary } from '../../src/io/library';
import { memoryStore } from './memory_store';
import { loraKey, writeAdapter, type AdapterConfig } from '../../src/io/peft';
import { parseModelConfig } from '../../src/model/config';
import { importExpectation } from '../../src/ui/state/library_slice';
import { adapterMisfit } from '../../src/worker/adapter_entries';
import { DEFAULT_MODEL } from '../../src/worker/identity';
import { modelFacts, readModel } from '../../src/worker/model_files';

const modelDir = join(__dirname, '../../public', DEFAULT_MODEL.dir);
const config = parseModelConfig(readFileSync(join(modelDir, 'config.json'), 'utf8'));
const facts = modelFacts(DEFAULT_MODEL.name, config, 'F32', true, 'f32');

/** A q/v adapter at r = 4 named for `baseModel`, shaped for moby-llama unless `vOut` says otherwise. */
function adapter(baseModel: string, vOut = config.kvHeads * config.headDim) {
  const cfg: AdapterConfig = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false, baseModel };
  const out = { q_proj: config.heads * config.headDim, v_proj: vOut };
  const weights = new Map<string, Float32Array>();
  for (let l = 0; l < config.layers; l++) {
    for (const t of ['q_proj', 'v_proj'] as const) {
      weights.set(loraKey(l, t, 'A'), new Float32Array(4 * config.hidden).fill(0.01));
      weights.set(loraKey(l, t, 'B'), new Float32Array(out[t] * 4).fill(0.02));
    }
  }
  const { configJson, weights: bytes } = writeAdapter(cfg, weights);
  return { cfg, bytes, files: new Map([['adapter_config.json', new TextEncoder().encode(configJson)], ['adapter_model.safetensors', bytes]]) };
}

/** What Import says (null: accepted) and what Load says (null: it fits). */
async function bothSay(a: ReturnType<typeof adapter>): Promise<{ imported: string | null; loaded: string | null }> {
  const library = new AdapterLibrary({ store: memoryStore(), estimate: async () => undefined });
  let imported: string | null = null;
  try {
    await library.importPeft(a.files, importExpectation(facts));
  } catch (e) {
    expect(e).toBeInstanceOf(LoraStudioError);
    imported = (e as Error).message;
  }
  return { imported, loaded: adapterMisfit('x', a.cfg, a.bytes, config, facts.name) };
}

describe('Import and Load agree on the base model', () => {
  it('build the same identity of the loaded model', () => {
    const page = importExpectation(facts);
    expect(page).toMatchObject({ baseModel: 'moby-llama', architecture: config.architecture, numLayers: config.layers });
  });

  it('accept an adapter from a differently named folder whose architecture and shapes are the same', async () => {
    const said = await bothSay(adapter('/home/me/checkpoints/whaler-final'));
    expect(said).toEqual({ imported: null, loaded: null });
  });

  it('refuse an adapter of other shapes, both for the same reason, even when it names the loaded model', async () => {
    const said = await bothSay(adapter('moby-llama', 96));
    expect(said.imported).toMatch(/^adapter_model\.safetensors: lora_B of v_proj has out_features 96 \(shape \[96, 4\]\), but “moby-llama”'s v_proj has out_features \d+: the adapter was trained for another model\.$/);
    expect(said.loaded).toContain(`does not fit the loaded model: ${said.imported}`);
  });
});

describe('a model folder without tokenizer.json', () => {
  const files = (skip: string[]) => DEFAULT_MODEL.files.filter((f) => !skip.includes(f))
    .map((path) => ({ path, blob: new Blob([new Uint8Array(readFileSync(join(modelDir, path)))]) }));

  it('is refused where the studio loads it, saying why', async () => {
    const spec = { kind: 'files' as const, label: 'whaler', files: files(['tokenizer.json']) };
    // The weights go nowhere here: counted, then dropped.
    const opened: string[] = [];
    const open = async (_config: unknown, _stored: unknown, label?: string) => (opened.push(label!), () => {});
    await expect(readModel(spec, () => {}, open)).rejects.toThrow(
      /^whaler\/tokenizer\.json: missing\. The studio needs the model's tokenizer\.json to turn training text and prompts into tokens/,
    );
    expect(opened, 'refused before any weight is read').toEqual([]);
    const ok = await readModel({ ...spec, files: files([]) }, () => {}, open);
    expect(ok.tokenizer).toBeDefined();
    expect(opened).toEqual(['whaler']);
  });

  it('still loads in the CLI, which trains on token ids', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'no-tokenizer-'));
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(modelDir, f), join(dir, f));
    writeFileSync(join(dir, 'generation_config.json'), '{}');
    const loaded = await loadModelDir(dir);
    expect(loaded.tokenizer).toBeUndefined();
    expect(loaded.config.layers).toBe(config.layers);
  });
});
