// End-to-end for the studio's main flow: the app built into its own folder (.cache/dist-studio-test), served by
// Vite's preview server and driven in headless Chromium on SwiftShader. The default model loads and shows its
// facts, the demo data shows its preview, a tiny run (batch 1, 32 tokens) moves the step counter and the
// chart, stops on request, Try it continues a prompt with and without the adapter, the adapter is saved and
// listed in the library, it is still there after a reload, and its download reads as PEFT's two files. Screenshots of each panel (light and dark)
// go to test-results/screenshots/studio-*.png.
//
// SwiftShader runs every dispatch on the CPU, so the run is tiny and the waits are long.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { loraKey } from '../../src/io/peft';
import { parseSafetensors } from '../../src/io/safetensors';
import { readZip } from '../../src/io/zip';
import { SWIFTSHADER_NOTE } from '../../src/ui/gpu_note';
import { parseModelConfig, weightShapes } from '../../src/model/config';
import { download, ROOT, shoot, studioInBrowser } from './harness';

const STEP_MS = 180_000;

const studio = studioInBrowser({ outDir: '.cache/dist-studio-test' });

async function openStudio(): Promise<Page> {
  const page = await studio.launch({ timeout: STEP_MS, acceptDownloads: true });
  await page.goto(studio.url);
  return page;
}

/** One panel's screenshot: test-results/screenshots/studio-<name>.png. */
const shootPanel = (page: Page, testId: string, name: string) => shoot(page.getByTestId(testId), `studio-${name}`);

const points = (page: Page) => page.getByTestId('loss-chart').getAttribute('data-train-points').then(Number);
const step = (page: Page) => page.getByTestId('train-step').textContent().then((t) => Number(t?.split('/')[0].trim()));

describe('studio main flow in Chromium', () => {
  it('loads the default model and demo data, trains, tries, saves and finds the adapter after a reload', async () => {
    const page = await openStudio();

    // The embedded model loads by itself once the GPU is up.
    await expect.poll(() => page.getByTestId('model-name').textContent(), { timeout: STEP_MS }).toBe('moby-llama');
    expect(await page.getByTestId('model-facts').textContent()).toContain('LlamaForCausalLM');
    // The default model is retrained from time to time: the expected numbers come from its config.json.
    const config = parseModelConfig(readFileSync(join(ROOT, 'public/models/moby-llama/config.json'), 'utf8'));
    const params = [...weightShapes(config).values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
    const trainable = config.layers * 8 * (2 * config.hidden + (config.heads + config.kvHeads) * config.headDim); // q and v at r = 8
    expect(await page.getByTestId('model-params').textContent()).toBe(`${(params / 1e6).toFixed(2)} M`);
    expect(await page.getByTestId('trainable').textContent()).toBe(
      `LoRA trains${trainable.toLocaleString('en-US')} parameters (${((100 * trainable) / params).toFixed(2)}% of the model)`,
    );

    // The demo data, tokenized: a preview with token counts.
    await page.getByTestId('data-preview').waitFor();
    expect(await page.getByTestId('data-preview').locator('tbody tr').first().textContent()).toMatch(/^1Mr\. Speaker.*\d+$/);

    // A tiny run of one 32-token row, no warm-up: 12 steps planned (so the validation loss is measured every
    // 2nd step), stopped after 4 or more.
    await page.getByLabel('Steps', { exact: true }).fill('12');
    await page.getByLabel('Batch size', { exact: true }).fill('1');
    await page.getByLabel('Warm-up steps', { exact: true }).fill('0');
    await page.getByLabel('Sequence length', { exact: true }).fill('32');
    await expect.poll(() => page.getByTestId('data-stats').textContent(), { timeout: 60_000 }).toContain('rows of 32');
    await expect.poll(() => page.getByTestId('memory-estimate').getAttribute('data-fits'), { timeout: 60_000 }).toBe('true');
    expect(await page.getByTestId('memory-estimate').textContent()).toMatch(/^Needs about [\d.]+ [kMG]B of GPU memory; this GPU allows [\d.]+ [MG]B \((estimated|measured)\)Weights /);
    for (const part of ['weights', 'adapter', 'optimizer', 'activations']) {
      expect(await page.getByTestId('memory-breakdown').locator(`[data-part="${part}"] dd`).textContent(), part).toMatch(/^[\d.]+ [kMG]B$/);
    }
    await page.emulateMedia({ colorScheme: 'light' });
    for (const [id, name] of [['model-panel', 'model'], ['data-panel', 'data'], ['lora-panel', 'lora']] as const) await shootPanel(page, id, name);

    // Every value the validation figure shows during the run, sampled more often than the readout renders.
    await page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { valSeen: string[] }).valSeen = seen;
      setInterval(() => {
        const text = document.querySelector('[data-testid="train-val"]')?.textContent ?? 'absent';
        if (seen.at(-1) !== text) seen.push(text);
      }, 20);
    });
    const start = page.getByRole('button', { name: 'Start', exact: true });
    await expect.poll(() => start.isEnabled()).toBe(true);
    await start.click();
    await expect.poll(() => step(page), { timeout: STEP_MS }).toBeGreaterThanOrEqual(1);
    const firstPoints = await points(page);
    expect(firstPoints).toBeGreaterThanOrEqual(1);
    await expect.poll(() => step(page), { timeout: STEP_MS }).toBeGreaterThanOrEqual(2);
    expect(await points(page)).toBeGreaterThan(firstPoints);
    expect(Number(await page.getByTestId('train-loss').textContent())).toBeGreaterThan(0);
    // On SwiftShader the speed says so, and what a real GPU would change; on a GPU it says nothing.
    const swiftShader = /swiftshader/i.test((await page.getByTestId('gpu-name').textContent()) ?? '');
    console.log(`GPU: ${await page.getByTestId('gpu-name').textContent()}`);
    if (swiftShader) expect(await page.getByTestId('gpu-speed-note').textContent()).toBe(SWIFTSHADER_NOTE);
    else expect(await page.getByTestId('gpu-speed-note').count()).toBe(0);
    // Steps 3 and 4 pass a step without a validation loss (step 3) and one with (step 4).
    await expect.poll(() => step(page), { timeout: STEP_MS }).toBeGreaterThanOrEqual(4);
    await shootPanel(page, 'train-panel', 'train-running');
    await page.getByRole('button', { name: 'Stop' }).click();
    const stopped = page.getByTestId('train-stopped');
    await stopped.waitFor({ timeout: STEP_MS });
    expect(['stopped', 'done']).toContain(await stopped.getAttribute('data-reason'));
    const trained = await step(page);
    expect(trained).toBeGreaterThanOrEqual(4);
    // Once set, the validation figure holds the last loss measured until the next: it never blanks.
    const valSeen = await page.evaluate(() => (window as unknown as { valSeen: string[] }).valSeen);
    console.log(`validation figure: ${valSeen.join(' → ')}`);
    const firstSet = valSeen.findIndex((t) => /^\d+\.\d{4}$/.test(t));
    expect(firstSet).toBeGreaterThanOrEqual(0);
    expect(valSeen.slice(firstSet).every((t) => /^\d+\.\d{4}$/.test(t))).toBe(true);
    expect(await points(page)).toBe(trained);
    // The chart redraws on a log scale with the same points.
    const chart = page.getByTestId('loss-chart');
    expect(await chart.getAttribute('data-scale')).toBe('linear');
    await page.getByLabel('Log scale').check();
    await expect.poll(() => chart.getAttribute('data-scale')).toBe('log');
    expect(await points(page)).toBe(trained);
    expect(await chart.locator('canvas').count()).toBeGreaterThan(0);
    await shootPanel(page, 'train-panel', 'train-log');
    await page.getByLabel('Log scale').uncheck();

    // Try it: three tokens from the base model and from the adapted one.
    await page.getByLabel('Max tokens').fill('3');
    await page.getByLabel('Prompt').fill('My fellow Americans,');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.getByTestId('try-adapted').getAttribute('data-status'), { timeout: STEP_MS }).toBe('done');
    expect(await page.getByTestId('try-base').getAttribute('data-status')).toBe('done');
    for (const which of ['try-base', 'try-adapted']) {
      expect(await page.getByTestId(`${which}-text`).textContent()).toMatch(/^My fellow Americans,./);
    }
    await shootPanel(page, 'try-panel', 'try');

    // Save to the library; the Library panel lists it.
    await page.getByLabel('Adapter name').fill('Presidential whaler');
    await page.getByRole('button', { name: 'Save to library' }).click();
    await expect.poll(() => page.getByTestId('save-notice').textContent()).toBe('Saved “Presidential whaler” to the library.');
    const row = page.getByTestId('library-row').filter({ hasText: 'Presidential whaler' });
    await row.waitFor();
    expect(await row.getByRole('cell').allTextContents()).toEqual(expect.arrayContaining(['moby-llama', String(trained)]));
    await shootPanel(page, 'train-panel', 'train-saved');
    await shoot(page, 'studio', { fullPage: true });
    await page.emulateMedia({ colorScheme: 'dark' });
    await shoot(page, 'studio-dark', { fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });

    // IndexedDB keeps it across a reload.
    await page.reload();
    await page.getByTestId('library-row').filter({ hasText: 'Presidential whaler' }).waitFor();
    await expect.poll(() => page.getByTestId('model-name').textContent(), { timeout: STEP_MS }).toBe('moby-llama');
    await shoot(page, 'studio-viewport');

    // Download it and read the zip as PEFT would: its key names, shapes, and a config with r and lora_alpha.
    const zip = await download(page, 'Download Presidential whaler as .zip');
    expect(zip.name).toBe('Presidential whaler.zip');
    const files = readZip(zip.bytes, zip.name);
    expect([...files.keys()].sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const peft = JSON.parse(new TextDecoder().decode(files.get('adapter_config.json')));
    expect(peft).toMatchObject({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'], base_model_name_or_path: 'moby-llama',
    });
    const tensors = parseSafetensors(files.get('adapter_model.safetensors')!, 'adapter_model.safetensors').tensors;
    const want: Record<string, number[]> = {};
    for (let l = 0; l < config.layers; l++) {
      want[loraKey(l, 'q_proj', 'A')] = [8, config.hidden];
      want[loraKey(l, 'q_proj', 'B')] = [config.heads * config.headDim, 8];
      want[loraKey(l, 'v_proj', 'A')] = [8, config.hidden];
      want[loraKey(l, 'v_proj', 'B')] = [config.kvHeads * config.headDim, 8];
    }
    expect(Object.fromEntries([...tensors].map(([k, t]) => [k, t.shape]))).toEqual(want);
    expect([...tensors.values()].every((t) => t.dtype === 'F32')).toBe(true);
  }, 900_000);
});
