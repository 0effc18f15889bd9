// End-to-end: the built studio (dist/) served by Vite's preview server, driven in headless Chromium with
// WebGPU on SwiftShader (./harness.ts). Checks that the engine worker opens a GPU, that both
// Teach examples come back from the GPU with the right numbers, and that a browser without WebGPU gets the
// alert. Builds dist/ once if it is missing; otherwise it tests whatever `vite build` last produced.

import { expect, describe, it } from 'vitest';
import { WEBGPU_MISSING_MESSAGE } from '../../src/gpu/errors';
import { hideWebGPU, shoot, studioInBrowser, waitForGpu } from './harness';

const STEP_MS = 60_000; // one wait on the page: SwiftShader compiles pipelines slowly, a cold start can take seconds

const studio = studioInBrowser({ outDir: 'dist', build: 'if-missing' });

describe('studio in Chromium with WebGPU', () => {
  it('reports the GPU and computes both Teach examples on it', async () => {
    const page = await studio.launch({ timeout: STEP_MS });
    await page.goto(studio.url);
    await expect(page.title()).resolves.toBe('LoRA Studio');

    // Either the GPU comes up or the alert says why; fail fast with the alert's text instead of timing out.
    const gpuName = await waitForGpu(page);
    expect(gpuName.trim()).toMatch(/\S/);
    console.log(`GPU: ${gpuName}`);

    await page.getByRole('button', { name: 'Load example 1' }).click();
    await expect.poll(() => page.getByTestId('teach-y').textContent(), { timeout: STEP_MS }).toBe('[9,14,11,16]');
    // W + ΔW for example 1: I₄ + 2·B·A.
    expect(JSON.parse((await page.getByTestId('teach-merged').textContent())!)).toEqual([[3, 0, 2, 0], [0, 3, 0, 2], [2, 0, 3, 0], [0, 2, 0, 3]]);
    await shoot(page, 'teach', { fullPage: true });

    await page.getByRole('button', { name: 'Load example 2' }).click();
    const merged = [[3, 1, 6], [4, 5, 6], [5, 9, 6], [14, 9, 18]];
    await expect.poll(async () => JSON.parse((await page.getByTestId('teach-merged').textContent()) ?? 'null'), { timeout: STEP_MS }).toEqual(merged);
    // x = I₃, so y = (W + ΔW)ᵀ.
    const transposed = merged[0].map((_, j) => merged.map((row) => row[j]));
    expect(JSON.parse((await page.getByTestId('teach-y').textContent())!)).toEqual(transposed);
    await shoot(page, 'teach-example2', { fullPage: true });

    await page.emulateMedia({ colorScheme: 'dark' });
    await shoot(page, 'teach-dark', { fullPage: true });
  });
});

describe('studio without WebGPU', () => {
  it('shows the WebGPU alert when navigator.gpu is missing', async () => {
    const page = await studio.launch({ timeout: STEP_MS });
    await hideWebGPU(page);
    await page.goto(studio.url);
    const alert = page.getByRole('alert').filter({ has: page.getByText(WEBGPU_MISSING_MESSAGE) });
    await alert.waitFor();
    expect(await alert.getAttribute('data-testid')).toBe('webgpu-error');
    await expect(page.getByRole('button', { name: 'Load example 1' }).isDisabled()).resolves.toBe(true);
    await shoot(page, 'webgpu-missing', { fullPage: true });
  });

  it('shows the WebGPU alert when the browser gives no adapter', async () => {
    // Without --enable-unsafe-webgpu, Linux Chromium exposes navigator.gpu but requestAdapter() resolves to
    // null: this exercises the worker's error path, not just the page's check.
    const page = await studio.launch({ webgpu: false, timeout: STEP_MS });
    await page.goto(studio.url);
    const alert = page.getByTestId('webgpu-error');
    await alert.waitFor();
    expect(await alert.getAttribute('role')).toBe('alert');
    expect(await alert.textContent()).toContain(WEBGPU_MISSING_MESSAGE);
  });
});
