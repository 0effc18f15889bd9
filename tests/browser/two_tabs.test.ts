// Two tabs on the studio at once, in one Chromium profile (issue 17, point 6): tab A trains on SwiftShader,
// tab B (WebGPU hidden, so it loads no model) renames and deletes in the Library panel. Each tab shows the
// other's changes without a reload; the training tab's checkpoints keep B's rename; a deleted entry takes
// A's "Resume the run" with it, and a run whose entry B deletes goes on, says so, and does not put it back;
// the adapter it trained can still be saved. Then an adapter A loaded from the library follows B's rename
// and delete in the Train panel. Every wait is for a state. Screenshots (light and dark):
// test-results/screenshots/two-tabs-*.png.

import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { hideWebGPU, pageErrors, shoot, storedAdapters, studioInBrowser, waitForDefaultModel, waitForGpu, watch } from './harness';

const STEP_MS = 180_000;
const POLL = { timeout: 60_000 };
const studio = studioInBrowser({ outDir: '.cache/dist-two-tabs-test' });

const names = (page: Page) => page.getByTestId('library-name').allTextContents();
const step = (page: Page) => page.getByTestId('train-step').textContent().then((t) => Number(t?.split('/')[0].trim()));
const tag = (page: Page, name: string) => page.getByTestId('library-row').filter({ hasText: name }).getByTestId('library-checkpoint').textContent();

/** Waits until the run pauses after a step; returns that step. */
async function pauseRun(page: Page): Promise<number> {
  await page.locator('[data-focus="pause"]').click();
  const paused = page.getByTestId('train-paused');
  await expect.poll(() => paused.textContent(), { timeout: STEP_MS }).toMatch(/^paused after step \d+$/);
  return Number((await paused.textContent())!.replace('paused after step ', ''));
}

/** The Train panel in light and dark: test-results/screenshots/<name>.png and <name>-dark.png. */
async function shootTrain(page: Page, name: string): Promise<void> {
  await shoot(page.getByTestId('train-panel'), name);
  await page.emulateMedia({ colorScheme: 'dark' });
  await shoot(page.getByTestId('train-panel'), `${name}-dark`);
  await page.emulateMedia({ colorScheme: 'light' });
}

async function rename(page: Page, from: string, to: string): Promise<void> {
  await page.getByRole('button', { name: `Rename ${from}`, exact: true }).click();
  await page.getByRole('textbox', { name: `New name for ${from}` }).fill(to);
  await page.getByRole('textbox', { name: `New name for ${from}` }).press('Enter');
  await expect.poll(() => names(page), POLL).toContain(to);
}

async function remove(page: Page, name: string): Promise<void> {
  await page.getByRole('button', { name: `Delete ${name}`, exact: true }).click();
  await page.getByRole('button', { name: `Yes, delete ${name}` }).click();
  await expect.poll(() => names(page), POLL).not.toContain(name);
}

describe('two tabs on one library', () => {
  it('shows each tab the other’s renames and deletes, keeps a rename through checkpoints, and never puts a deleted entry back', async () => {
    const a = await studio.launch({ timeout: STEP_MS, viewport: { width: 1280, height: 900 } });
    const b = watch(await a.context().newPage());
    await hideWebGPU(b);
    await a.goto(studio.url);
    await b.goto(studio.url);
    await b.getByTestId('library-empty').waitFor();
    await waitForGpu(a);
    await waitForDefaultModel(a, STEP_MS);

    // A trains and pauses: the pause checkpoint makes the run's entry, which B lists at once.
    await a.getByLabel('Steps', { exact: true }).fill('40');
    await a.getByLabel('Batch size', { exact: true }).fill('1');
    await a.getByLabel('Warm-up steps', { exact: true }).fill('0');
    await a.getByLabel('Sequence length', { exact: true }).fill('32');
    await expect.poll(() => a.getByTestId('data-stats').textContent(), POLL).toContain('rows of 32');
    const start = a.locator('[data-focus="start"]');
    await expect.poll(() => start.isEnabled(), POLL).toBe(true);
    await start.click();
    await expect.poll(() => step(a), { timeout: STEP_MS }).toBeGreaterThanOrEqual(1);
    const first = await pauseRun(a);
    await expect.poll(() => b.getByTestId('library-row').count(), POLL).toBe(1);
    const [runName] = await names(b);
    expect(runName).toMatch(/^moby-llama run \d{4}-\d\d-\d\d \d\d:\d\d$/);
    await expect.poll(() => tag(b, runName), POLL).toBe(`unfinished: step ${first} of 40`);

    // B renames it; A shows the new name, and A's next checkpoint keeps it.
    await rename(b, runName, 'renamed in B');
    await expect.poll(() => names(a), POLL).toEqual(['renamed in B']);
    await a.locator('[data-focus="resume"]').click();
    await expect.poll(() => step(a), { timeout: STEP_MS }).toBeGreaterThan(first);
    const second = await pauseRun(a);
    await expect.poll(() => tag(b, 'renamed in B'), POLL).toBe(`unfinished: step ${second} of 40`);
    expect(await names(b)).toEqual(['renamed in B']);
    expect(await storedAdapters(b)).toMatchObject([{ name: 'renamed in B', steps: second, checkpointStep: second }]);

    // A stops: the run can resume from its entry. B deletes the entry: A's Resume goes with it.
    await a.getByRole('button', { name: 'Stop', exact: true }).click();
    await expect.poll(() => a.getByTestId('train-stopped').getAttribute('data-reason'), { timeout: STEP_MS }).toBe('stopped');
    const resumeRun = a.getByRole('button', { name: 'Resume the run' });
    await resumeRun.waitFor();
    await remove(b, 'renamed in B');
    await expect.poll(() => resumeRun.count(), POLL).toBe(0);
    await expect.poll(() => names(a), POLL).toEqual([]);
    const status = a.getByTestId('checkpoint-status');
    expect(await status.textContent()).toBe('“renamed in B” was deleted from the library. Save the adapter to the library below to keep it.');
    expect(await a.getByTestId('train-panel').textContent()).toContain('Start again trains a fresh adapter; save this one first to keep it.');

    // A trains the adapter further and pauses (a new entry); B deletes that one while A's run waits.
    await a.getByRole('button', { name: 'Continue training' }).click();
    await expect.poll(() => step(a), { timeout: STEP_MS }).toBeGreaterThan(second);
    const third = await pauseRun(a);
    // Named after the adapter it continues, by its last name in the library.
    await expect.poll(() => names(b), POLL).toEqual(['renamed in B (continued)']);
    await remove(b, 'renamed in B (continued)');
    await expect.poll(() => status.getAttribute('data-deleted'), POLL).toBe('true');
    expect(await status.textContent()).toBe(
      '“renamed in B (continued)” was deleted from the library: the run goes on, but no longer saves checkpoints (a closed tab cannot resume it). ' +
        'Save the adapter to the library when you pause or stop it to keep it.',
    );
    await shootTrain(a, 'two-tabs-deleted-while-training');
    // The run goes on and stops; its last write is refused rather than putting the entry back.
    await a.locator('[data-focus="resume"]').click();
    await expect.poll(() => step(a), { timeout: STEP_MS }).toBeGreaterThan(third);
    await a.getByRole('button', { name: 'Stop', exact: true }).click();
    const stopped = a.getByTestId('train-stopped');
    await expect.poll(() => stopped.getAttribute('data-reason'), { timeout: STEP_MS }).toBe('stopped');
    expect(await stopped.textContent()).toContain('“renamed in B (continued)” was deleted from the library while this adapter trained, so the run no longer writes to it and nothing was put back; save the adapter to the library to keep it.');
    expect(await resumeRun.count()).toBe(0);
    expect(await storedAdapters(a)).toEqual([]);
    expect(await names(b)).toEqual([]);

    // Nothing is lost: the adapter is saved from A, and B lists it.
    await a.getByLabel('Adapter name').fill('kept');
    await a.getByRole('button', { name: 'Save to library' }).click();
    await expect.poll(() => a.getByTestId('save-notice').textContent(), POLL).toBe('Saved “kept” to the library.');
    await expect.poll(() => names(b), POLL).toEqual(['kept']);
    await rename(b, 'kept', 'kept for good');
    await expect.poll(() => a.getByTestId('save-notice').textContent(), POLL).toBe('Saved “kept for good” to the library.');

    // An adapter A loads from the library follows B's rename and delete in the Train panel.
    await a.getByRole('button', { name: 'Load kept for good into the model' }).click();
    const held = a.getByTestId('held-adapter');
    await expect.poll(() => held.textContent(), POLL).toContain('The model holds “kept for good” from the library (');
    await rename(b, 'kept for good', 'speeches');
    await expect.poll(() => held.textContent(), POLL).toContain('The model holds “speeches” from the library (');
    await remove(b, 'speeches');
    await expect.poll(() => held.textContent(), POLL).toContain('The model holds “speeches”, since deleted from the library (');
    expect(await a.getByTestId('train-panel').textContent()).toContain('save this one first to keep it.');
    await expect.poll(() => names(a), POLL).toEqual([]);
    await shootTrain(a, 'two-tabs-loaded-deleted');
    expect(pageErrors(a)).toEqual([]);
  }, 900_000);
});
