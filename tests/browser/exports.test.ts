// End-to-end for the Library panel's exports beyond PEFT files, in headless Chromium with WebGPU and the
// built-in moby-llama loaded: an imported adapter (whose config has no lora_alpha, so the import's note says
// PEFT's default 8 applies) downloads as a GGUF adapter, an MLX-LM folder zip and a merged model zip (a whole
// model folder: config, F16 weights, tokenizer), each a download event whose bytes are read back here; its
// training recipe cannot be made (an import has no run) and the reason shows beside the entry, with no
// download. The screenshot is test-results/screenshots/library-exports.png.

import { describe, expect, it } from 'vitest';
import { loraKey, writeAdapter } from '../../src/io/peft';
import { parseSafetensors } from '../../src/io/safetensors';
import { readZip } from '../../src/io/zip';
import { download, pageErrors, shoot, studioInBrowser, waitForDefaultModel, waitForGpu } from './harness';

const STEP_MS = 120_000;

const studio = studioInBrowser({ outDir: '.cache/dist-exports-test' });

/** A q/v adapter for moby-llama (4 layers, hidden 128, v_proj out 64), its config without lora_alpha. */
function mobyAdapter(): { configJson: string; weights: Uint8Array } {
  const out = { q_proj: 128, v_proj: 64 } as const;
  const weights = new Map<string, Float32Array>();
  for (let layer = 0; layer < 4; layer++) {
    for (const t of ['q_proj', 'v_proj'] as const) {
      weights.set(loraKey(layer, t, 'A'), Float32Array.from({ length: 4 * 128 }, (_, i) => Math.sin(layer + i) / 10));
      weights.set(loraKey(layer, t, 'B'), Float32Array.from({ length: out[t] * 4 }, (_, i) => Math.cos(layer + i) / 10));
    }
  }
  const written = writeAdapter({ r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false, baseModel: 'moby-llama' }, weights);
  const { lora_alpha: _dropped, ...config } = JSON.parse(written.configJson) as Record<string, unknown>;
  return { configJson: JSON.stringify(config), weights: written.weights };
}

describe('library exports in Chromium', () => {
  it('shows the import note, downloads GGUF, MLX and merged exports, and says why a recipe cannot be made', async () => {
    const page = await studio.launch({ acceptDownloads: true, timeout: STEP_MS });
    await page.goto(studio.url);
    await waitForGpu(page);
    await waitForDefaultModel(page, STEP_MS);

    const adapter = mobyAdapter();
    await page.getByLabel('Import a PEFT adapter').setInputFiles([
      { name: 'adapter_config.json', mimeType: 'application/json', buffer: Buffer.from(adapter.configJson) },
      { name: 'adapter_model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from(adapter.weights) },
    ]);
    await page.getByTestId('library-row').waitFor();
    await expect.poll(() => page.getByTestId('library-notice').textContent(), { timeout: STEP_MS })
      .toMatch(/^Imported “Imported adapter for moby-llama”\. adapter_config\.json: has no lora_alpha, so PEFT's default 8 applies \(scale 2 at r = 4\)/);

    const name = 'Imported adapter for moby-llama';
    const menu = async () => {
      await page.getByRole('button', { name: `Separate files of ${name}` }).click();
      await page.getByRole('group', { name: `Files of ${name}` }).waitFor();
    };
    const message = page.getByTestId('library-export-message');

    await menu();
    await shoot(page, 'library-exports');
    const gguf = await download(page, `Export ${name} as a GGUF adapter`);
    expect(gguf.name).toBe(`${name}.gguf`);
    expect(gguf.bytes.subarray(0, 4).toString('latin1')).toBe('GGUF');
    await expect.poll(() => message.textContent(), { timeout: STEP_MS }).toBe(`Downloaded ${name}.gguf.`);

    await menu();
    const mlx = await download(page, `Export ${name} as an MLX-LM adapter folder`);
    expect(mlx.name).toBe(`${name}-mlx.zip`);
    expect([...readZip(new Uint8Array(mlx.bytes), mlx.name).keys()].sort()).toEqual(['adapter_config.json', 'adapters.safetensors']);

    await menu();
    const merged = await download(page, `Export ${name} as a merged model`);
    expect(merged.name).toBe(`${name}-merged.zip`);
    const folder = readZip(new Uint8Array(merged.bytes), merged.name);
    expect([...folder.keys()].sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const weights = parseSafetensors(folder.get('model.safetensors')!);
    expect(weights.tensors.get('model.layers.0.self_attn.q_proj.weight')?.dtype).toBe('F16');
    expect(weights.tensors.has('lm_head.weight')).toBe(false); // moby-llama ties its embeddings
    await expect.poll(() => message.textContent(), { timeout: STEP_MS }).toMatch(/^Downloaded .*-merged\.zip\. Merged W \+ s·B·A with s = 2 into q_proj, v_proj of 4 layers/);

    // No run, no recipe: the reason, and no download.
    let downloads = 0;
    page.on('download', () => downloads++);
    await menu();
    await page.getByRole('button', { name: `Export ${name} as a PEFT + TRL training recipe` }).click();
    await expect.poll(() => message.textContent(), { timeout: STEP_MS }).toMatch(/has no training settings stored \(it was imported/);
    expect(downloads).toBe(0);
    expect(pageErrors(page)).toEqual([]);
  });
});
