// End-to-end: the built studio (dist/) served by Vite's preview server, driven in headless Chromium with
// WebGPU on SwiftShader (see /work/shared/GPU.md). Checks that the engine worker opens a GPU, that both
// Teach examples come back from the GPU with the right numbers, and that a browser without WebGPU gets the
// alert. Builds dist/ once if it is missing; otherwise it tests whatever `vite build` last produced.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { preview, type PreviewServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEBGPU_MISSING_MESSAGE } from '../../src/gpu/errors';

const ROOT = resolve(__dirname, '../..');
const DIST = join(ROOT, 'dist');
const SHOTS = join(ROOT, 'test-results/screenshots');
const CHROMIUM = '/usr/bin/chromium';

/** Flags seen to give headless Chromium a SwiftShader WebGPU adapter with no GPU present (GPU.md). */
const BASE_ARGS = [
  '--no-sandbox',
  '--headless=new',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-gpu-sandbox',
];
const WEBGPU_ARGS = [...BASE_ARGS, '--enable-unsafe-webgpu'];

const STEP_MS = 60_000; // one wait on the page: SwiftShader compiles pipelines slowly, a cold start can take seconds

let server: PreviewServer;
let baseUrl: string;
const contexts: { context: BrowserContext; dir: string }[] = [];

/** A fresh Chromium with its own profile directory, closed in afterAll whatever happens. */
async function launch(args: string[]): Promise<Page> {
  const dir = mkdtempSync(join(tmpdir(), 'lora-studio-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args,
    viewport: { width: 1280, height: 720 },
    timeout: STEP_MS,
  });
  contexts.push({ context, dir });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  // Console errors and uncaught exceptions end up in the failure message of whichever assertion fails.
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[page console] ${m.text()}`); });
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  return page;
}

beforeAll(async () => {
  if (!existsSync(join(DIST, 'index.html'))) {
    execFileSync(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'warn'], { cwd: ROOT, stdio: 'inherit', timeout: 110_000 });
  }
  server = await preview({
    root: ROOT,
    configFile: false,
    logLevel: 'silent',
    build: { outDir: DIST },
    preview: { host: '127.0.0.1', port: 0, strictPort: false, open: false },
  });
  const { port } = server.httpServer.address() as AddressInfo;
  baseUrl = `http://127.0.0.1:${port}/`;
  mkdirSync(SHOTS, { recursive: true });
});

afterAll(async () => {
  for (const { context, dir } of contexts) {
    await Promise.race([context.close(), new Promise((r) => setTimeout(r, 10_000))]).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
  await server?.close();
});

describe('studio in Chromium with WebGPU', () => {
  it('reports the GPU and computes both Teach examples on it', async () => {
    const page = await launch(WEBGPU_ARGS);
    await page.goto(baseUrl);
    await expect(page.title()).resolves.toBe('LoRA Studio');

    const gpuName = page.getByTestId('gpu-name');
    const alert = page.getByTestId('webgpu-error');
    // Either the GPU comes up or the alert says why; fail fast with the alert's text instead of timing out.
    await Promise.race([gpuName.waitFor(), alert.waitFor()]);
    if (await alert.isVisible()) throw new Error(`WebGPU did not start: ${await alert.textContent()}`);
    expect((await gpuName.textContent())?.trim()).toMatch(/\S/);
    console.log(`GPU: ${await gpuName.textContent()}`);

    await page.getByRole('button', { name: 'Load example 1' }).click();
    await expect.poll(() => page.getByTestId('teach-y').textContent(), { timeout: STEP_MS }).toBe('[9,14,11,16]');
    // W + ΔW for example 1: I₄ + 2·B·A.
    expect(JSON.parse((await page.getByTestId('teach-merged').textContent())!)).toEqual([[3, 0, 2, 0], [0, 3, 0, 2], [2, 0, 3, 0], [0, 2, 0, 3]]);
    await page.screenshot({ path: join(SHOTS, 'teach.png'), fullPage: true });

    await page.getByRole('button', { name: 'Load example 2' }).click();
    const merged = [[3, 1, 6], [4, 5, 6], [5, 9, 6], [14, 9, 18]];
    await expect.poll(async () => JSON.parse((await page.getByTestId('teach-merged').textContent()) ?? 'null'), { timeout: STEP_MS }).toEqual(merged);
    // x = I₃, so y = (W + ΔW)ᵀ.
    const transposed = merged[0].map((_, j) => merged.map((row) => row[j]));
    expect(JSON.parse((await page.getByTestId('teach-y').textContent())!)).toEqual(transposed);
    await page.screenshot({ path: join(SHOTS, 'teach-example2.png'), fullPage: true });

    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(SHOTS, 'teach-dark.png'), fullPage: true });
  });
});

describe('studio without WebGPU', () => {
  it('shows the WebGPU alert when navigator.gpu is missing', async () => {
    const page = await launch(WEBGPU_ARGS);
    await page.addInitScript(() => { Object.defineProperty(navigator, 'gpu', { value: undefined, configurable: true }); });
    await page.goto(baseUrl);
    const alert = page.getByRole('alert').filter({ has: page.getByText(WEBGPU_MISSING_MESSAGE) });
    await alert.waitFor();
    expect(await alert.getAttribute('data-testid')).toBe('webgpu-error');
    await expect(page.getByRole('button', { name: 'Load example 1' }).isDisabled()).resolves.toBe(true);
    await page.screenshot({ path: join(SHOTS, 'webgpu-missing.png'), fullPage: true });
  });

  it('shows the WebGPU alert when the browser gives no adapter', async () => {
    // Without --enable-unsafe-webgpu, Linux Chromium exposes navigator.gpu but requestAdapter() resolves to
    // null: this exercises the worker's error path, not just the page's check.
    const page = await launch(BASE_ARGS);
    await page.goto(baseUrl);
    const alert = page.getByTestId('webgpu-error');
    await alert.waitFor();
    expect(await alert.getAttribute('role')).toBe('alert');
    expect(await alert.textContent()).toContain(WEBGPU_MISSING_MESSAGE);
  });
});
