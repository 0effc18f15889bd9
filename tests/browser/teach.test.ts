// End-to-end for the Teach playground: the studio built into its own folder (.cache/dist-teach-test, so a
// concurrent `vite build` of dist/ cannot pull files from under it), served by Vite's preview server and
// driven in headless Chromium with WebGPU on SwiftShader (./harness.ts). Opens a teach link,
// checks the controls took its settings, checks the GPU's y against Wx + (α/r)·B(Ax) computed here in
// float64 from the same seeded matrices, moves the rank with the keyboard and sees y, the parameter count
// and the URL follow (with no new history entries), reads one ΔW entry through the heatmap's keyboard
// cursor, shows what DoRA adds under the picture, and opens an example link; without WebGPU, the playground still draws A and B and keeps the URL.
// Screenshots: test-results/screenshots/teach-playground*.png, teach-dora.png.

import type { Page } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { playgroundLayer, type PlaygroundSettings } from '../../src/ui/teach/playground';
import { hideWebGPU, shoot, studioInBrowser, waitForGpu } from './harness';

const STEP_MS = 60_000; // SwiftShader compiles pipelines slowly; a cold start can take seconds
/** The GPU works in float32 on inputs with two decimals; y's entries are O(1), so 1e-4 is ~1000 ulps of slack. */
const TOL = 1e-4;

/** y = W·x + (α/r)·B·(A·x) in float64, the formula the panel states; returns (D). */
function cpuY({ r, alpha, seed }: PlaygroundSettings): number[] {
  const { W, A, B, x } = playgroundLayer(seed, r);
  const xv = x[0];
  const ax = A.map((row) => row.reduce((s, a, j) => s + a * xv[j], 0)); // (r)
  return W.map((row, i) => row.reduce((s, w, j) => s + w * xv[j], 0) + (alpha / r) * B[i].reduce((s, b, l) => s + b * ax[l], 0));
}

/** ΔW[i][j] = (α/r)·Σ_l B[i][l]·A[l][j] in float64. */
function cpuDeltaW({ r, alpha, seed }: PlaygroundSettings, i: number, j: number): number {
  const { A, B } = playgroundLayer(seed, r);
  return (alpha / r) * B[i].reduce((s, b, l) => s + b * A[l][j], 0);
}

const maxDiff = (a: number[], b: number[]) => (a.length !== b.length ? Infinity : Math.max(...a.map((v, i) => Math.abs(v - b[i]))));

const studio = studioInBrowser({ outDir: '.cache/dist-teach-test' });
let page: Page; // one browser for the WebGPU tests, as a returning visitor would have

beforeAll(async () => {
  page = await studio.launch({ timeout: STEP_MS });
});

/** Polls until the GPU's y is the one for `s`, then checks it against the CPU; returns the max difference. */
async function expectY(s: PlaygroundSettings): Promise<number> {
  const y = page.getByTestId('teach-playground-y');
  const want = `r=${s.r}&alpha=${s.alpha}&seed=${s.seed}`;
  await expect.poll(() => y.getAttribute('data-settings').catch(() => null), { timeout: STEP_MS }).toBe(want);
  const got = JSON.parse((await y.textContent())!) as number[];
  const diff = maxDiff(got, cpuY(s));
  expect(diff, `y for ${want}: GPU ${JSON.stringify(got)} vs CPU ${JSON.stringify(cpuY(s))}, maxdiff = ${diff}`).toBeLessThan(TOL);
  return diff;
}

describe('Teach playground in Chromium with WebGPU', () => {
  it('opens a teach link, computes y on the GPU and follows the keyboard', async () => {
    await page.goto(`${studio.url}#teach?r=3&alpha=6&seed=2`);
    await waitForGpu(page);

    const rank = page.getByRole('slider', { name: 'rank r', exact: true });
    const alpha = page.getByRole('slider', { name: 'α (alpha)', exact: true });
    await expect(rank.inputValue()).resolves.toBe('3');
    await expect(alpha.inputValue()).resolves.toBe('6');
    await expect(page.getByRole('spinbutton', { name: 'rank r, exact value' }).inputValue()).resolves.toBe('3');
    await expect(page.getByRole('spinbutton', { name: 'seed', exact: true }).inputValue()).resolves.toBe('2');
    await expect(page.getByRole('button', { name: 'Playground' }).getAttribute('aria-pressed')).resolves.toBe('true');

    console.log(`y (r=3, α=6, seed 2) OK, maxdiff = ${(await expectY({ r: 3, alpha: 6, seed: 2 })).toExponential(2)}`);
    expect(await page.getByTestId('teach-params').textContent()).toMatch(/r·\(d\+k\) = 3·\(16\+16\) = 96 vs full d·k = 16·16 = 256: 37\.5%/);
    expect(await page.getByTestId('teach-scale').textContent()).toBe('α/r = 6/3 = 2');
    // What DoRA adds, under the picture: the row lengths ‖W‖ (m at the start) and ‖W + ΔW‖ as bars, and W′.
    const dora = page.getByTestId('teach-dora');
    await expect(dora.getByRole('heading', { name: 'What DoRA adds' }).isVisible()).resolves.toBe(true);
    await expect(dora.getByRole('group', { name: /^‖W‖ = m at start, 16 by 1, / }).count()).resolves.toBe(1);
    await expect(dora.getByRole('group', { name: /^W′, 16 by 16, / }).count()).resolves.toBe(1);
    await shoot(dora, 'teach-dora');
    await shoot(page, 'teach-playground');

    // The rank slider by keyboard: one step right is r = 4; y, the count and the URL follow, history does not grow.
    const historyBefore = await page.evaluate(() => history.length);
    await rank.focus();
    await page.keyboard.press('ArrowRight');
    await expect(rank.inputValue()).resolves.toBe('4');
    console.log(`y (r=4) OK, maxdiff = ${(await expectY({ r: 4, alpha: 6, seed: 2 })).toExponential(2)}`);
    expect(await page.getByTestId('teach-params').textContent()).toMatch(/= 4·\(16\+16\) = 128 vs full d·k = 16·16 = 256: 50\.0%/);
    await expect.poll(() => page.evaluate(() => location.hash)).toBe('#teach?r=4&alpha=6&seed=2');

    // A burst of steps (as a dragged slider gives) ends on the last state, not a queue of stale ones.
    for (let i = 0; i < 6; i++) await page.keyboard.press('ArrowRight');
    await expect(rank.inputValue()).resolves.toBe('10');
    await expectY({ r: 10, alpha: 6, seed: 2 });
    await expect.poll(() => page.evaluate(() => location.hash)).toBe('#teach?r=10&alpha=6&seed=2');
    expect(await page.evaluate(() => history.length)).toBe(historyBefore);

    // α and seed through their number boxes.
    await page.getByRole('spinbutton', { name: 'α (alpha), exact value' }).fill('20');
    await page.getByRole('spinbutton', { name: 'seed', exact: true }).fill('7');
    await page.keyboard.press('Enter');
    await expectY({ r: 10, alpha: 20, seed: 7 });
    await expect(alpha.inputValue()).resolves.toBe('20');
    await expect.poll(() => page.evaluate(() => location.hash)).toBe('#teach?r=10&alpha=20&seed=7');

    // The ΔW heatmap's keyboard cursor reads entries: first arrow lands on [1, 1], the next moves right.
    const dW = page.getByRole('group', { name: /^ΔW, 16 by 16/ });
    await dW.focus();
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    const readout = (await page.locator('.heat-readout', { hasText: 'ΔW[' }).textContent())!;
    const m = /^ΔW\[1, 2\] = (−?[\d.]+)$/.exec(readout.trim());
    expect(m, readout).not.toBeNull();
    const shown = Number(m![1].replace('−', '-'));
    const want = cpuDeltaW({ r: 10, alpha: 20, seed: 7 }, 0, 1);
    expect(Math.abs(shown - want), `ΔW[1, 2] shown ${shown}, CPU ${want}`).toBeLessThanOrEqual(Math.abs(want) * 5e-3 + 1e-9);
    await shoot(page, 'teach-playground-cursor');

    await page.emulateMedia({ colorScheme: 'dark' });
    await shoot(page, 'teach-playground-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  it('opens an example link, keeps the playground settings, and follows a changed hash', async () => {
    await page.goto('about:blank'); // a fresh load, not a same-document hash change
    await page.goto(`${studio.url}#teach?mode=example1&r=5&alpha=10&seed=3`);
    await waitForGpu(page);
    await expect.poll(() => page.getByTestId('teach-y').textContent(), { timeout: STEP_MS }).toBe('[9,14,11,16]');
    await expect(page.getByRole('button', { name: 'Load example 1' }).getAttribute('aria-pressed')).resolves.toBe('true');

    await page.getByRole('button', { name: 'Load example 2' }).click();
    await expect.poll(() => page.evaluate(() => location.hash)).toBe('#teach?mode=example2&r=5&alpha=10&seed=3');

    await page.getByRole('button', { name: 'Playground' }).click();
    await expect(page.getByRole('slider', { name: 'rank r', exact: true }).inputValue()).resolves.toBe('5');
    await expectY({ r: 5, alpha: 10, seed: 3 });
    await expect.poll(() => page.evaluate(() => location.hash)).toBe('#teach?r=5&alpha=10&seed=3');

    // A lesson's link to another state on the same page (a hashchange, not a load).
    await page.evaluate(() => { location.hash = '#teach?r=2&alpha=4&seed=9'; });
    await expect.poll(() => page.getByRole('slider', { name: 'rank r', exact: true }).inputValue()).toBe('2');
    await expectY({ r: 2, alpha: 4, seed: 9 });
  });
});

describe('Teach playground without WebGPU', () => {
  it('still draws A and B from the link and keeps the URL, and says why ΔW and y are missing', async () => {
    const bare = await studio.launch({ timeout: STEP_MS });
    await hideWebGPU(bare);
    await bare.goto(`${studio.url}#teach?r=5&alpha=12&seed=4`);
    await bare.getByTestId('webgpu-error').waitFor();
    await bare.getByRole('group', { name: /^B, 16 by 5, values from/ }).waitFor();
    await bare.getByRole('group', { name: /^A, 5 by 16, values from/ }).waitFor();
    await expect(bare.getByRole('status').filter({ hasText: 'WebGPU is not available' }).count()).resolves.toBe(1);

    const alpha = bare.getByRole('slider', { name: 'α (alpha)', exact: true });
    await alpha.focus();
    await bare.keyboard.press('ArrowLeft');
    await expect(alpha.inputValue()).resolves.toBe('11');
    await expect.poll(() => bare.evaluate(() => location.hash)).toBe('#teach?r=5&alpha=11&seed=4');
    expect(await bare.getByTestId('teach-scale').textContent()).toBe('α/r = 11/5 = 2.2');
    await shoot(bare, 'teach-playground-no-webgpu');
      });
});
