// The studio's memory settings in headless Chromium on SwiftShader (tests/browser/harness.ts): the Model
// panel's "Base weights" choice (the checkpoint's own dtype by default, a reload offered when changed after
// the load, the loaded model then holding its base as chosen); the memory estimate's parts (weights, adapter,
// optimizer state, activations) each listed with its size; the "Recompute activations" switch; and a
// refusal that names settings that would fit, one of which, clicked, makes the run fit. Nothing trains.
// Screenshots: test-results/screenshots/memory-*.png.

import { describe, expect, it } from 'vitest';
import { pageErrors, shoot, studioInBrowser, waitForDefaultModel, waitForGpu } from './harness';

const STEP_MS = 420_000; // loading the built-in model and tokenizing the demo data on SwiftShader, on a busy machine
const studio = studioInBrowser({ outDir: '.cache/dist-memory-test' });

describe('memory settings in Chromium', () => {
  it('shows the estimate part by part, refuses with settings that fit, recomputes, and reloads with another base dtype', async () => {
    const page = await studio.launch({ timeout: STEP_MS });
    await page.goto(studio.url);
    await waitForGpu(page);
    await waitForDefaultModel(page, STEP_MS);
    const estimate = page.getByTestId('memory-estimate');
    const fits = () => estimate.getAttribute('data-fits');

    // moby-llama is stored in F16, and held so by default.
    const base = page.getByLabel('Base weights');
    expect(await base.locator('option').first().textContent()).toBe('Default (as stored: F16)');
    expect(await page.getByTestId('model-base-dtype').textContent()).toBe('F16 stored, f16 on the GPU');

    await expect.poll(fits, { timeout: 60_000 }).toBe('true');
    for (const part of ['weights', 'adapter', 'optimizer', 'activations']) {
      expect(await page.getByTestId('memory-breakdown').locator(`[data-part="${part}"] dd`).textContent(), part).toMatch(/^[\d.,]+ (kB|MB|GB)$/);
    }

    // Far too much for the studio's budget: the refusal names what would fit, and one click takes it.
    await page.getByLabel('Sequence length', { exact: true }).fill('256');
    await page.getByLabel('Batch size', { exact: true }).fill('1024');
    await expect.poll(fits, { timeout: 60_000 }).toBe('false');
    expect(await page.getByTestId('memory-refusal').textContent()).toMatch(/^Needs about [\d.,]+ MB of GPU memory; the studio allows itself [\d.,]+ MB here\. (Turn on|Use batch)/);
    const alternatives = page.getByTestId('memory-alternative');
    expect(await alternatives.count()).toBeGreaterThan(0);
    await shoot(page.getByTestId('lora-panel'), 'memory-refused');
    await alternatives.first().click();
    await expect.poll(fits, { timeout: 60_000 }).toBe('true');

    // The switch is a run setting: the estimate is asked again with it, and still fits.
    const recompute = page.getByLabel('Recompute activations');
    await recompute.check();
    expect(await recompute.isChecked()).toBe(true);
    await expect.poll(() => page.getByTestId('memory-breakdown').locator('[data-part="activations"] dt').textContent(), { timeout: 60_000 })
      .toContain('each layer’s input, the rest recomputed');
    await expect.poll(fits, { timeout: 60_000 }).toBe('true');

    // Another base dtype after the load: a reload, after which the model holds its base so.
    await base.selectOption('nf4');
    const reload = page.getByTestId('base-dtype-reload');
    expect(await reload.textContent()).toBe('Reload with nf4');
    await shoot(page.getByTestId('model-panel'), 'memory-base-dtype');
    await reload.click();
    await expect.poll(() => page.getByTestId('model-base-dtype').textContent(), { timeout: STEP_MS }).toBe('F16 stored, nf4 on the GPU');
    expect(await reload.count()).toBe(0);
    await expect.poll(fits, { timeout: 60_000 }).toBe('true');
    await shoot(page.getByTestId('lora-panel'), 'memory-fits');
    expect(pageErrors(page)).toEqual([]);
  }, 900_000);
});
