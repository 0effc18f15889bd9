// End-to-end for saved adapters in the studio, in headless Chromium on SwiftShader (tests/browser/harness.ts):
// a 2-step run on the default model is saved, the page reloads (the engine starts empty), the adapter is
// loaded back from the library into the model, Try it continues a prompt with the base model and with it,
// and the α slider at 0 regenerates the adapted column into the base model's text. Then the loaded adapter
// trains further and is stopped after a step, so the library holds an unfinished run; after another reload
// Resume loads its settings, data and loss history and finishes it. On the way, the Hub access token field:
// a password field, never in the URL, gone after a reload.
//
// SwiftShader runs every dispatch on the CPU (about 100 ms each), so the runs are tiny (batch 1, 32 tokens,
// 2 + 3 steps) and the generations are 3 greedy tokens.

import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { pageErrors, shoot, studioInBrowser, waitForDefaultModel, waitForGpu } from './harness';

const STEP_MS = 180_000;
const studio = studioInBrowser({ outDir: '.cache/dist-adapters-test' });

const continuation = (page: Page, which: 'try-base' | 'try-adapted') => page.getByTestId(`${which}-continuation`).textContent();
const step = (page: Page) => page.getByTestId('train-step').textContent().then((t) => Number(t?.split('/')[0].trim()));

/** A tiny run: one 32-token row per step, no warm-up. */
async function tinySettings(page: Page, steps: number): Promise<void> {
  await page.getByLabel('Steps', { exact: true }).fill(String(steps));
  await page.getByLabel('Batch size', { exact: true }).fill('1');
  await page.getByLabel('Warm-up steps', { exact: true }).fill('0');
  await page.getByLabel('Sequence length', { exact: true }).fill('32');
  await expect.poll(() => page.getByTestId('data-stats').textContent(), { timeout: 60_000 }).toContain('rows of 32');
  await expect.poll(() => page.getByTestId('memory-estimate').getAttribute('data-fits'), { timeout: 60_000 }).toBe('true');
}

describe('saved adapters in Chromium', () => {
  it('trains, saves, reloads, loads the adapter from the library, moves α to the base model, and resumes a stopped run', async () => {
    const page = await studio.launch({ timeout: STEP_MS });
    await page.goto(studio.url);
    await waitForGpu(page);
    await waitForDefaultModel(page, STEP_MS);

    // Two steps, at a learning rate high enough that two steps move greedy text.
    await page.getByLabel('Learning rate', { exact: true }).fill('0.05');
    await tinySettings(page, 2);
    const start = page.getByRole('button', { name: 'Start', exact: true });
    await expect.poll(() => start.isEnabled()).toBe(true);
    await start.click();
    await expect.poll(() => page.getByTestId('train-stopped').getAttribute('data-reason'), { timeout: STEP_MS }).toBe('done');

    // The Hub token: typed into a password field, kept in memory only (checked again after the reload).
    await page.getByRole('radio', { name: 'Hugging Face Hub' }).check();
    const token = page.getByLabel('Access token');
    expect(await token.getAttribute('type')).toBe('password');
    await token.fill('hf_not_a_real_token');
    expect(page.url()).not.toContain('hf_not_a_real_token');
    await page.getByRole('radio', { name: /^moby-llama/ }).check();

    await page.getByLabel('Adapter name').fill('two steps');
    await page.getByRole('button', { name: 'Save to library' }).click();
    await expect.poll(() => page.getByTestId('save-notice').textContent()).toBe('Saved “two steps” to the library.');

    // A new page load: the engine holds no adapter until one is loaded from the library.
    await page.reload();
    await waitForDefaultModel(page, STEP_MS);
    await page.getByRole('radio', { name: 'Hugging Face Hub' }).check();
    expect(await page.getByLabel('Access token').inputValue()).toBe('');
    await page.getByRole('radio', { name: /^moby-llama/ }).check();
    const row = page.getByTestId('library-row').filter({ hasText: 'two steps' });
    await row.waitFor();
    expect(await page.getByTestId('library-row').count()).toBe(1); // the run's own entry, renamed by the save
    await row.getByRole('button', { name: 'Load two steps into the model' }).click();
    await expect.poll(() => page.getByTestId('library-notice').textContent()).toBe('Loaded “two steps” into moby-llama: try it, or continue training it.');
    expect(await page.getByTestId('held-adapter').textContent()).toContain('“two steps” from the library (2 steps, r=8, α=16)');

    // Try it, greedy: the base model and the loaded adapter side by side.
    await page.getByLabel('Temperature').fill('0');
    await page.getByLabel('Max tokens').fill('3');
    await page.getByLabel('Prompt').fill('The whale');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.getByTestId('try-adapted').getAttribute('data-status'), { timeout: STEP_MS }).toBe('done');
    const base = await continuation(page, 'try-base');
    const adapted = await continuation(page, 'try-adapted');
    expect(base).not.toBe('');
    expect(adapted).not.toBe(base);
    expect(await page.getByTestId('try-adapted').locator('figcaption').textContent()).toMatch(/^With “two steps” \(α = 16\)/);
    await shoot(page.getByTestId('try-panel'), 'adapters-try-loaded');

    // α to 0: the adapted column regenerates by itself, and is the base model's text.
    const alpha = page.getByRole('slider', { name: 'Adapter α' });
    await alpha.fill('0');
    expect(await page.getByTestId('try-alpha-value').textContent()).toBe('α = 0: the base model');
    await expect.poll(() => page.getByTestId('try-adapted').locator('figcaption').textContent(), { timeout: STEP_MS }).toMatch(/^With “two steps” \(α = 0\)/);
    await expect.poll(() => page.getByTestId('try-adapted').getAttribute('data-status'), { timeout: STEP_MS }).toBe('done');
    expect(await continuation(page, 'try-adapted')).toBe(base);
    await shoot(page.getByTestId('try-panel'), 'adapters-try-alpha0');

    // Train the loaded adapter further (3 more steps), and stop after its first: an unfinished run in the library.
    await tinySettings(page, 3);
    await page.getByRole('button', { name: 'Continue training' }).click();
    await expect.poll(() => step(page), { timeout: STEP_MS }).toBeGreaterThanOrEqual(3);
    await page.getByRole('button', { name: 'Stop' }).click();
    await expect.poll(() => page.getByTestId('train-stopped').getAttribute('data-reason'), { timeout: STEP_MS }).toBe('stopped');
    const stoppedAt = await step(page);
    const unfinished = page.getByTestId('library-row').filter({ hasText: 'two steps (continued)' });
    await expect.poll(() => unfinished.getByTestId('library-checkpoint').textContent()).toBe(`unfinished: step ${stoppedAt} of 5`);
    expect(await page.getByTestId('checkpoint-status').textContent()).toContain('The run is in the library as an unfinished run');
    expect(await page.getByRole('button', { name: 'Resume the run' }).isEnabled()).toBe(true);
    await shoot(page.getByTestId('train-panel'), 'adapters-train-stopped');

    // Another tab: Resume takes the run's settings, data and history from the library and finishes it.
    await page.reload();
    await waitForDefaultModel(page, STEP_MS);
    await shoot(page.locator('.library-panel'), 'adapters-library-unfinished');
    await unfinished.getByRole('button', { name: 'Resume training two steps (continued)' }).click();
    await expect.poll(() => page.getByTestId('train-stopped').getAttribute('data-reason'), { timeout: STEP_MS }).toBe('done');
    expect(await page.getByTestId('train-step').textContent()).toBe('5 / 5');
    expect(await page.getByTestId('loss-chart').getAttribute('data-train-points')).toBe('5');
    await expect.poll(() => unfinished.getByTestId('library-checkpoint').count()).toBe(0);
    expect(await unfinished.getByRole('cell').allTextContents()).toContain('5');
    expect(pageErrors(page)).toEqual([]);
  }, 900_000);
});
