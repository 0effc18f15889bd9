// The studio's run controls in Chromium on SwiftShader (issue 17, points 6, 7 and 8), at 1280×800: Start is in
// view without scrolling; the keyboard focus follows Start, Stop, Pause, Resume and Generate instead of
// dropping to the page body; Stop before the first step says so, and a run stopped there adds nothing to the
// library; a pause waits after the step in flight, and its checkpoint holds the step the panel shows; Try
// it samples with a seed (the same seed repeats the text, Resample draws another) and is greedy at
// temperature 0; a teach link scrolls to the Teach panel.
// Every wait is for a state, never for time. Screenshots: test-results/screenshots/controls-*.png.

import type { Locator, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { isFocused, pageErrors, shoot, storedAdapters, studioInBrowser, waitForDefaultModel, waitForGpu } from './harness';

const STEP_MS = 180_000; // loading the built-in model, building the run's GPU programs on SwiftShader
const POLL = { timeout: 60_000 };
const VIEWPORT = { width: 1280, height: 800 };

const studio = studioInBrowser({ outDir: '.cache/dist-controls-test' });

/** The focused element, in words, for a failure message. */
const focused = (page: Page) => page.evaluate(() => {
  const el = document.activeElement;
  return el === document.body || !el ? 'body' : `${el.tagName.toLowerCase()} “${el.textContent?.trim().slice(0, 40)}”`;
});

/** The base model's continuation once the generation with `seed` has finished. */
async function baseText(page: Page, seed: number): Promise<string> {
  const out = page.getByTestId('try-base');
  await expect.poll(async () => `${await out.getAttribute('data-seed')} ${await out.getAttribute('data-status')}`, { timeout: STEP_MS }).toBe(`${seed} done`);
  return (await page.getByTestId('try-base-continuation').textContent()) ?? '';
}

async function press(page: Page, button: Locator): Promise<void> {
  await button.focus();
  await page.keyboard.press('Enter');
}

describe('run controls at 1280×800', () => {
  it('keeps Start in view, samples with a seed, and keeps the focus through Generate, Start and Stop', async () => {
    const page = await studio.launch({ timeout: STEP_MS, viewport: VIEWPORT });
    await page.goto(studio.url);
    await waitForGpu(page);
    await waitForDefaultModel(page, STEP_MS);

    // Point 7: Start is visible at 1280×800 with the page not scrolled.
    const start = page.locator('[data-focus="start"]');
    expect(await page.evaluate(() => window.scrollY)).toBe(0);
    const box = (await start.boundingBox())!;
    console.log(`Start at y = ${box.y.toFixed(0)}–${(box.y + box.height).toFixed(0)} of ${VIEWPORT.height}`);
    expect(box.y).toBeGreaterThanOrEqual(0);
    expect(box.y + box.height).toBeLessThanOrEqual(VIEWPORT.height);
    await shoot(page, 'controls-viewport-1280x800');

    // Point 8: sampling with a seed. No adapter yet, so only the base column generates.
    const generate = page.getByTestId('try-panel').locator('button[type="submit"]');
    const seed = page.getByLabel('Sampling seed');
    await page.getByLabel('Prompt').fill('Call me');
    await page.getByLabel('Temperature').fill('1');
    await page.getByLabel('Top-k').fill('0');
    await page.getByLabel('Max tokens').fill('8');
    await seed.fill('7');
    await press(page, generate);
    const first = await baseText(page, 7);
    // The focus stayed on Generate through the generation (it is not disabled while busy).
    expect(await isFocused(generate), await focused(page)).toBe(true);
    await page.getByRole('button', { name: 'Resample' }).click();
    expect(await seed.inputValue()).toBe('8');
    const second = await baseText(page, 8);
    console.log(`seed 7: ${JSON.stringify(first)}; seed 8: ${JSON.stringify(second)}`);
    expect(first).not.toBe('');
    expect(second).not.toBe(first);
    // The same seed again: the same sample.
    await seed.fill('7');
    await press(page, generate);
    expect(await baseText(page, 7)).toBe(first);
    expect(await isFocused(generate), await focused(page)).toBe(true);
    // Temperature 0 is greedy: another seed gives the same text.
    await page.getByLabel('Temperature').fill('0');
    await seed.fill('20');
    await press(page, generate);
    const greedy = await baseText(page, 20);
    await page.getByRole('button', { name: 'Resample' }).click();
    expect(await baseText(page, 21)).toBe(greedy);
    await shoot(page.getByTestId('try-panel'), 'controls-try');

    // Point 7: a run started from the keyboard hands the focus to Stop; Stop before the first step says so,
    // and when the run has ended the focus is back on Start.
    await page.getByLabel('Steps', { exact: true }).fill('3');
    await page.getByLabel('Batch size', { exact: true }).fill('1');
    await page.getByLabel('Warm-up steps', { exact: true }).fill('0');
    await page.getByLabel('Sequence length', { exact: true }).fill('32');
    await expect.poll(() => page.getByTestId('data-stats').textContent(), POLL).toContain('rows of 32');
    await expect.poll(() => start.isEnabled(), POLL).toBe(true);
    await press(page, start);
    const stop = page.getByRole('button', { name: 'Stop', exact: true });
    await expect.poll(async () => (await isFocused(stop)) || (await focused(page)), POLL).toBe(true);
    await page.keyboard.press('Enter');
    const state = page.getByTestId('train-state');
    await expect.poll(() => state.textContent(), POLL).toMatch(/^Stopping before the first step/);
    expect(await focused(page)).not.toBe('body');
    await shoot(page.getByTestId('train-panel'), 'controls-stopping');
    const stopped = page.getByTestId('train-stopped');
    await stopped.waitFor({ timeout: STEP_MS });
    expect(await stopped.textContent()).toMatch(/^Stopped after 0 steps/);
    await expect.poll(async () => (await isFocused(start)) || (await focused(page)), POLL).toBe(true);
    expect(await state.textContent()).toBe('');
    // Point 6: a run that trained no step left no library entry.
    expect(await page.getByTestId('library-empty').isVisible()).toBe(true);
    expect(await storedAdapters(page)).toEqual([]);

    expect(pageErrors(page)).toEqual([]);
  }, 600_000);

  it('pauses after the step in flight with its checkpoint at the step on show, and keeps the focus through Pause and Resume', async () => {
    const page = await studio.launch({ timeout: STEP_MS, viewport: VIEWPORT });
    await page.goto(studio.url);
    await waitForGpu(page);
    await waitForDefaultModel(page, STEP_MS);
    await page.getByLabel('Steps', { exact: true }).fill('40');
    await page.getByLabel('Batch size', { exact: true }).fill('1');
    await page.getByLabel('Warm-up steps', { exact: true }).fill('0');
    await page.getByLabel('Sequence length', { exact: true }).fill('32');
    await expect.poll(() => page.getByTestId('data-stats').textContent(), POLL).toContain('rows of 32');
    const start = page.locator('[data-focus="start"]');
    await expect.poll(() => start.isEnabled(), POLL).toBe(true);
    await press(page, start);
    const step = () => page.getByTestId('train-step').textContent().then((t) => Number(t?.split('/')[0].trim()));
    await expect.poll(step, { timeout: STEP_MS }).toBeGreaterThanOrEqual(1);

    // Pause from the keyboard: the button that held the focus becomes Resume, and keeps it.
    const pause = page.locator('[data-focus="pause"]');
    const resume = page.locator('[data-focus="resume"]');
    await press(page, pause);
    await expect.poll(async () => (await isFocused(resume)) || (await focused(page)), POLL).toBe(true);
    // The run waits after the step that was on the GPU, and says which; everything shows that one step.
    const paused = page.getByTestId('train-paused');
    await expect.poll(() => paused.textContent(), { timeout: STEP_MS }).toMatch(/^paused after step \d+$/);
    const at = Number((await paused.textContent())!.replace('paused after step ', ''));
    expect(at).toBeGreaterThanOrEqual(1);
    await expect.poll(() => page.getByTestId('train-step').textContent(), POLL).toBe(`${at} / 40`);
    expect(await page.getByTestId('checkpoint-status').textContent()).toBe(
      `Paused at step ${at}; its checkpoint is in the library: if this tab closes, resume the run from the Library panel.`,
    );
    await expect.poll(() => page.getByTestId('library-checkpoint').textContent(), POLL).toBe(`training: step ${at} of 40`);
    expect(await page.getByTestId('train-panel').locator('.save-form').textContent()).toContain(`${at} step${at === 1 ? '' : 's'} trained so far (paused)`);
    const [stored, ...others] = await storedAdapters(page);
    expect(others).toEqual([]);
    expect(stored).toMatchObject({ steps: at, checkpointStep: at });
    expect(await isFocused(resume), await focused(page)).toBe(true);
    await shoot(page.getByTestId('train-panel'), 'controls-paused');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shoot(page.getByTestId('train-panel'), 'controls-paused-dark');
    await page.emulateMedia({ colorScheme: 'light' });

    // Resume from the keyboard: the focus stays, on Pause again, and the run goes on past the pause.
    await page.keyboard.press('Enter');
    await expect.poll(async () => (await isFocused(pause)) || (await focused(page)), POLL).toBe(true);
    await expect.poll(step, { timeout: STEP_MS }).toBeGreaterThan(at);
    expect(await paused.count()).toBe(0);
    await page.getByRole('button', { name: 'Stop', exact: true }).click();
    await expect.poll(() => page.getByTestId('train-stopped').getAttribute('data-reason'), { timeout: STEP_MS }).toBe('stopped');
    expect(await storedAdapters(page)).toHaveLength(1); // one run, one entry, however often it wrote
    expect(pageErrors(page)).toEqual([]);
  }, 600_000);

  it('scrolls a teach link to the Teach panel, and keeps it there while the studio loads', async () => {
    const page = await studio.launch({ timeout: STEP_MS, viewport: VIEWPORT });
    await page.goto(`${studio.url}#teach?r=4&alpha=8&seed=1`);
    const teach = page.getByRole('region', { name: 'Teach: the LoRA linear', exact: true });
    const top = () => teach.evaluate((el) => Math.round(el.getBoundingClientRect().top));
    await expect.poll(top, POLL).toBeLessThan(50);
    expect(await top()).toBeGreaterThanOrEqual(-5);
    expect(await page.evaluate(() => window.scrollY)).toBeGreaterThan(0);
    // The panels above grow as the model and data load; the browser keeps the Teach panel in place.
    await waitForGpu(page);
    await waitForDefaultModel(page, STEP_MS);
    const after = await top();
    console.log(`Teach panel top after loading: ${after} px`);
    expect(after).toBeGreaterThanOrEqual(-5);
    expect(after).toBeLessThan(VIEWPORT.height / 2);
    expect(pageErrors(page)).toEqual([]);
  });
});
