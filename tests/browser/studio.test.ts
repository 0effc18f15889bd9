// End-to-end for the studio's main flow: the app built into its own folder (.cache/dist-studio-test), served by
// Vite's preview server and driven in headless Chromium on SwiftShader. The default model loads and shows its
// facts, the demo data shows its preview, a tiny run (batch 1, 32 tokens) moves the step counter and the
// chart, stops on request, Try it continues a prompt with and without the adapter, the adapter is saved and
// listed in the library, and it is still there after a reload. Screenshots of each panel (light and dark)
// go to test-results/screenshots/studio-*.png.
//
// SwiftShader runs every dispatch on the CPU, so the run is tiny and the waits are long.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { preview, type PreviewServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseModelConfig, weightShapes } from '../../src/model/config';

const ROOT = resolve(__dirname, '../..');
const OUT = join(ROOT, '.cache/dist-studio-test');
const SHOTS = join(ROOT, 'test-results/screenshots');
const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--no-sandbox',
  '--headless=new',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-gpu-sandbox',
  '--enable-unsafe-webgpu',
];
const STEP_MS = 180_000;

let server: PreviewServer;
let baseUrl: string;
let context: BrowserContext;
let profile: string;

beforeAll(async () => {
  execFileSync(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--outDir', OUT, '--emptyOutDir', '--logLevel', 'warn'], {
    cwd: ROOT,
    stdio: 'inherit',
    timeout: 110_000,
  });
  server = await preview({
    root: ROOT,
    configFile: false,
    logLevel: 'silent',
    build: { outDir: OUT },
    preview: { host: '127.0.0.1', port: 0, strictPort: false, open: false },
  });
  baseUrl = `http://127.0.0.1:${(server.httpServer.address() as AddressInfo).port}/`;
  mkdirSync(SHOTS, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), 'lora-studio-studio-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 720 },
    timeout: STEP_MS,
  });
}, 180_000);

afterAll(async () => {
  await Promise.race([context?.close(), new Promise((r) => setTimeout(r, 10_000))]).catch(() => {});
  if (profile) rmSync(profile, { recursive: true, force: true });
  await server?.close();
});

async function openStudio(): Promise<Page> {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[page console] ${m.text()}`); });
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  await page.goto(baseUrl);
  return page;
}

async function shoot(page: Page, testId: string, name: string): Promise<void> {
  await page.getByTestId(testId).screenshot({ path: join(SHOTS, `studio-${name}.png`) });
}

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

    // A tiny run: 4 steps of one 32-token row, no warm-up.
    await page.getByLabel('Steps', { exact: true }).fill('4');
    await page.getByLabel('Batch size', { exact: true }).fill('1');
    await page.getByLabel('Warm-up steps', { exact: true }).fill('0');
    await page.getByLabel('Sequence length', { exact: true }).fill('32');
    await expect.poll(() => page.getByTestId('data-stats').textContent()).toContain('rows of 32');
    await expect.poll(() => page.getByTestId('memory-estimate').getAttribute('data-fits')).toBe('true');
    expect(await page.getByTestId('memory-estimate').textContent()).toMatch(/^Needs about [\d.]+ [kMG]B of GPU memory; this GPU allows [\d.]+ [MG]B \(weights /);
    await page.emulateMedia({ colorScheme: 'light' });
    for (const [id, name] of [['model-panel', 'model'], ['data-panel', 'data'], ['lora-panel', 'lora']] as const) await shoot(page, id, name);

    const start = page.getByRole('button', { name: 'Start', exact: true });
    await expect.poll(() => start.isEnabled()).toBe(true);
    await start.click();
    await expect.poll(() => step(page), { timeout: STEP_MS }).toBeGreaterThanOrEqual(1);
    const firstPoints = await points(page);
    expect(firstPoints).toBeGreaterThanOrEqual(1);
    await expect.poll(() => step(page), { timeout: STEP_MS }).toBeGreaterThanOrEqual(2);
    expect(await points(page)).toBeGreaterThan(firstPoints);
    expect(Number(await page.getByTestId('train-loss').textContent())).toBeGreaterThan(0);
    await shoot(page, 'train-panel', 'train-running');
    await page.getByRole('button', { name: 'Stop' }).click();
    const stopped = page.getByTestId('train-stopped');
    await stopped.waitFor({ timeout: STEP_MS });
    expect(['stopped', 'done']).toContain(await stopped.getAttribute('data-reason'));
    const trained = await step(page);
    expect(trained).toBeGreaterThanOrEqual(2);
    expect(await points(page)).toBe(trained);

    // Try it: three tokens from the base model and from the adapted one.
    await page.getByLabel('Max tokens').fill('3');
    await page.getByLabel('Prompt').fill('My fellow Americans,');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.getByTestId('try-adapted').getAttribute('data-status'), { timeout: STEP_MS }).toBe('done');
    expect(await page.getByTestId('try-base').getAttribute('data-status')).toBe('done');
    for (const which of ['try-base', 'try-adapted']) {
      expect(await page.getByTestId(`${which}-text`).textContent()).toMatch(/^My fellow Americans,./);
    }
    await shoot(page, 'try-panel', 'try');

    // Save to the library; the Library panel lists it.
    await page.getByLabel('Adapter name').fill('Presidential whaler');
    await page.getByRole('button', { name: 'Save to library' }).click();
    await expect.poll(() => page.getByTestId('save-notice').textContent()).toBe('Saved “Presidential whaler” to the library.');
    const row = page.getByTestId('library-row').filter({ hasText: 'Presidential whaler' });
    await row.waitFor();
    expect(await row.getByRole('cell').allTextContents()).toEqual(expect.arrayContaining(['moby-llama', String(trained)]));
    await shoot(page, 'train-panel', 'train-saved');
    await page.screenshot({ path: join(SHOTS, 'studio.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(SHOTS, 'studio-dark.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });

    // IndexedDB keeps it across a reload.
    await page.reload();
    await page.getByTestId('library-row').filter({ hasText: 'Presidential whaler' }).waitFor();
    await expect.poll(() => page.getByTestId('model-name').textContent(), { timeout: STEP_MS }).toBe('moby-llama');
    await page.screenshot({ path: join(SHOTS, 'studio-viewport.png') });
  }, 900_000);
});
