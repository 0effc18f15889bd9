// The browser tests' shared setup: build the studio, serve it with Vite's preview server, and drive it in
// headless Chromium (/usr/bin/chromium) with WebGPU on SwiftShader. Not a test itself, and not a page
// object: tests find controls by role and name themselves.
//
// Use, at the top of a test file:
//
//   const studio = studioInBrowser({ outDir: '.cache/dist-mything-test' }); // registers beforeAll/afterAll
//   it('…', async () => {
//     const page = await studio.launch();                   // a fresh Chromium (own profile), 1280×720, WebGPU on
//     await page.goto(studio.url);
//     const gpu = await waitForGpu(page);                   // the adapter's name; throws with the alert's text
//     await waitForDefaultModel(page, 180_000);             // moby-llama and the demo data loaded
//     const zip = await download(page, 'Download x as .zip'); // { name, bytes } of the file the click saves
//     await shoot(page.getByTestId('train-panel'), 'x');    // → test-results/screenshots/x.png
//     expect(pageErrors(page)).toEqual([]);                 // console errors and uncaught exceptions so far
//   });
//
// - outDir: each test file builds into its own folder under .cache/ (a build takes a second or two), so a
//   concurrent `vite build` of dist/ or another test file cannot pull files from under it. The build runs
//   once per outDir per process. `build: 'if-missing'` reuses an existing build (app.test.ts tests dist/, which
//   `npm test` has just built).
// - launch({ webgpu: false }) starts Chromium without --enable-unsafe-webgpu: on Linux navigator.gpu then
//   exists but requestAdapter() gives null. hideWebGPU(page) removes navigator.gpu itself instead.
// - Every browser launched is closed, and its profile folder removed, in afterAll, whatever happened.
// - test-results/ is gitignored: screenshots there are test artifacts, rewritten by each run.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { preview, type PreviewServer } from 'vite';
import { afterAll, beforeAll, expect } from 'vitest';

export const ROOT = resolve(__dirname, '../..');
export const SHOTS = join(ROOT, 'test-results/screenshots');
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

export interface LaunchOptions {
  /** Pass --enable-unsafe-webgpu (default true). */
  webgpu?: boolean;
  /** Default 1280×720, the size the studio must be usable at. */
  viewport?: { width: number; height: number };
  /** Playwright's default wait, per action (default 60 s: SwiftShader compiles pipelines slowly). */
  timeout?: number;
  acceptDownloads?: boolean;
}

export interface Studio {
  /** The preview server's address, ending in '/'; set once beforeAll has run. */
  readonly url: string;
  /** A fresh Chromium with its own profile; returns its first page, console errors collected (pageErrors). */
  launch(options?: LaunchOptions): Promise<Page>;
}

const builds = new Map<string, true>();

/** Builds the studio into `outDir` (relative to the repo root) unless this process already did. */
function build(outDir: string, mode: 'always' | 'if-missing'): void {
  const out = join(ROOT, outDir);
  if (builds.has(out) || (mode === 'if-missing' && existsSync(join(out, 'index.html')))) return;
  execFileSync(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--outDir', out, '--emptyOutDir', '--logLevel', 'error'], {
    cwd: ROOT,
    stdio: 'inherit',
    timeout: 110_000,
  });
  builds.set(out, true);
}

/** Registers beforeAll (build, serve) and afterAll (close every browser, remove profiles, stop serving). */
export function studioInBrowser({ outDir, build: mode = 'always' }: { outDir: string; build?: 'always' | 'if-missing' }): Studio {
  let server: PreviewServer | undefined;
  let url = '';
  const launched: { context: BrowserContext; profile: string }[] = [];

  beforeAll(async () => {
    build(outDir, mode);
    server = await preview({
      root: ROOT,
      configFile: false,
      logLevel: 'silent',
      build: { outDir: join(ROOT, outDir) },
      preview: { host: '127.0.0.1', port: 0, strictPort: false, open: false },
    });
    url = `http://127.0.0.1:${(server.httpServer.address() as AddressInfo).port}/`;
    mkdirSync(SHOTS, { recursive: true });
  }, 180_000);

  afterAll(async () => {
    for (const { context, profile } of launched) {
      // A wedged GPU process can make close() hang; the profile is removed either way.
      await Promise.race([context.close(), new Promise((r) => setTimeout(r, 10_000))]).catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    }
    await server?.close();
  });

  return {
    get url() {
      if (!url) throw new Error('studio.url is set in beforeAll: use it inside a test, not at load time.');
      return url;
    },
    async launch({ webgpu = true, viewport = { width: 1280, height: 720 }, timeout = 60_000, acceptDownloads = false } = {}) {
      const profile = mkdtempSync(join(tmpdir(), 'lora-studio-chromium-'));
      const context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: webgpu ? [...BASE_ARGS, '--enable-unsafe-webgpu'] : BASE_ARGS,
        viewport,
        acceptDownloads,
        timeout,
      });
      launched.push({ context, profile });
      const page = context.pages()[0] ?? (await context.newPage());
      page.setDefaultTimeout(timeout);
      watch(page);
      return page;
    },
  };
}

const errors = new WeakMap<Page, string[]>();

/**
 * Collects the page's console errors and uncaught exceptions (pageErrors), and echoes them to stderr so
 * they show beside whichever assertion fails. launch() does this for its page; call it for context.newPage().
 */
export function watch(page: Page): Page {
  if (errors.has(page)) return page;
  const list: string[] = [];
  errors.set(page, list);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    list.push(m.text());
    console.error(`[page console] ${m.text()}`);
  });
  page.on('pageerror', (e) => {
    list.push(e.message);
    console.error(`[page error] ${e.message}`);
  });
  return page;
}

/** The console errors and uncaught exceptions of a watched page, oldest first. */
export function pageErrors(page: Page): string[] {
  return errors.get(page) ?? [];
}

/** Saves a PNG to test-results/screenshots/<name>.png: a page (the viewport, or fullPage) or one element. */
export async function shoot(target: Page | Locator, name: string, { fullPage = false } = {}): Promise<string> {
  const path = join(SHOTS, `${name}.png`);
  if ('goto' in target) await target.screenshot({ path, fullPage });
  else await target.screenshot({ path });
  return path;
}

/** Waits for the GPU badge and returns the adapter's name; if WebGPU failed, throws the alert's text at once. */
export async function waitForGpu(page: Page): Promise<string> {
  const name = page.getByTestId('gpu-name');
  const alert = page.getByTestId('webgpu-error');
  await Promise.race([name.waitFor(), alert.waitFor()]);
  if (await alert.isVisible()) throw new Error(`WebGPU did not start: ${await alert.textContent()}`);
  return (await name.textContent()) ?? '';
}

/** Waits until the built-in model (which the studio loads by itself once the GPU is up) and the demo data are in. */
export async function waitForDefaultModel(page: Page, timeout: number): Promise<void> {
  await expect.poll(() => page.getByTestId('model-name').textContent(), { timeout }).toBe('moby-llama');
  await page.getByTestId('data-preview').waitFor({ timeout });
}

/** Clicks the button that starts a download; returns the file's suggested name and its bytes. */
export async function download(page: Page, button: string): Promise<{ name: string; bytes: Buffer }> {
  const [d] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: button }).click()]);
  return { name: d.suggestedFilename(), bytes: readFileSync((await d.path())!) };
}

/** From the next navigation on, the page sees no navigator.gpu: a browser without WebGPU. */
export async function hideWebGPU(page: Page): Promise<void> {
  await page.addInitScript(() => { Object.defineProperty(navigator, 'gpu', { value: undefined, configurable: true }); });
}

/** Whether the element has keyboard focus. */
export const isFocused = (locator: Locator): Promise<boolean> => locator.evaluate((el) => el === document.activeElement);

/** What the page's adapter library holds in IndexedDB, read directly: each entry's name, steps and checkpoint step ([] before its first write). */
export function storedAdapters(page: Page): Promise<{ id: string; name: string; steps: number; checkpointStep: number | null }[]> {
  return page.evaluate(
    () =>
      new Promise((done, fail) => {
        const open = indexedDB.open('lora-studio-adapters');
        // No library yet: creating its database here would leave it without the store idb-keyval makes.
        open.onupgradeneeded = () => open.transaction!.abort();
        open.onerror = () => (open.error?.name === 'AbortError' ? done([]) : fail(open.error));
        open.onsuccess = () => {
          const store = open.result.transaction('adapters').objectStore('adapters');
          const index = store.get('index');
          index.onerror = () => fail(index.error);
          index.onsuccess = () => {
            const items = (index.result?.adapters ?? []) as { id: string; name: string; key: string }[];
            const out: { id: string; name: string; steps: number; checkpointStep: number | null }[] = [];
            if (items.length === 0) { open.result.close(); return done(out); }
            for (const item of items) {
              const rec = store.get(item.key);
              rec.onerror = () => fail(rec.error);
              rec.onsuccess = () => {
                out.push({ id: item.id, name: item.name, steps: rec.result.steps, checkpointStep: rec.result.checkpoint?.step ?? null });
                if (out.length === items.length) { open.result.close(); done(out); }
              };
            }
          };
        };
      }),
  );
}
