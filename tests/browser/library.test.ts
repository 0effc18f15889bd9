// End-to-end for the adapter library: the studio built into its own folder (.cache/dist-library-test, so a
// concurrent `vite build` of dist/ cannot pull files from under it), served by Vite's preview server and
// driven in headless Chromium. Imports a PEFT adapter as two files and as a zip, sees a bad one refused,
// finds them again after a reload (IndexedDB), sees an import refused on a full disk (before writing, and
// rolled back when IndexedDB itself refuses), renames one, downloads it as a zip and as separate files
// and reads them back as PEFT would, then deletes it. An import whose name is taken gets a distinct one, and
// a rename to a taken name is refused. The screenshot is test-results/screenshots/library.png.

import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { adapterConfigToJson, loraKey, writeAdapter, type AdapterConfig } from '../../src/io/peft';
import { parseSafetensors } from '../../src/io/safetensors';
import { readZip, writeZip } from '../../src/io/zip';
import { download, isFocused, shoot, studioInBrowser } from './harness';

const STEP_MS = 30_000;

// A two-layer model with hidden size 32 and k/v projecting to 16, adapted on q and v with r = 4.
const BASE = 'HuggingFaceTB/SmolLM2-135M';
const CONFIG: AdapterConfig = { r: 4, loraAlpha: 16, loraDropout: 0.05, targetModules: ['q_proj', 'v_proj'], useRslora: false, baseModel: BASE };
const OUT_FEATURES = { q_proj: 32, v_proj: 16 } as const;

function makeAdapter(seed: number): { configJson: string; weights: Uint8Array } {
  const weights = new Map<string, Float32Array>();
  for (let layer = 0; layer < 2; layer++) {
    for (const target of ['q_proj', 'v_proj'] as const) {
      weights.set(loraKey(layer, target, 'A'), Float32Array.from({ length: 4 * 32 }, (_, i) => Math.sin(seed + layer + i)));
      weights.set(loraKey(layer, target, 'B'), Float32Array.from({ length: OUT_FEATURES[target] * 4 }, (_, i) => Math.cos(seed + layer + i)));
    }
  }
  return writeAdapter(CONFIG, weights);
}

const studio = studioInBrowser({ outDir: '.cache/dist-library-test' });

// Without WebGPU no model loads, so imports here are checked against themselves only (the library needs no
// GPU); panels.test.ts imports with the built-in model loaded and sees misfits refused.
async function openStudio(): Promise<Page> {
  const page = await studio.launch({ webgpu: false, viewport: { width: 1280, height: 900 }, acceptDownloads: true, timeout: STEP_MS });
  await page.goto(studio.url);
  return page;
}

const names = (page: Page) => page.getByTestId('library-name').allTextContents();

describe('adapter library in Chromium', () => {
  it('imports, survives a reload, renames, downloads and deletes an adapter', async () => {
    const page = await openStudio();
    await page.getByTestId('library-empty').waitFor();
    const input = page.getByLabel('Import a PEFT adapter');

    // The two files, chosen together.
    const first = makeAdapter(1);
    await input.setInputFiles([
      { name: 'adapter_config.json', mimeType: 'application/json', buffer: Buffer.from(first.configJson) },
      { name: 'adapter_model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from(first.weights) },
    ]);
    await expect.poll(() => page.getByTestId('library-notice').textContent()).toBe('Imported “Imported adapter for SmolLM2-135M”.');

    // A zip of them: the adapter takes the zip's name.
    const second = makeAdapter(2);
    const zip = writeZip([
      { name: 'adapter_config.json', bytes: new TextEncoder().encode(second.configJson) },
      { name: 'adapter_model.safetensors', bytes: second.weights },
    ]);
    await input.setInputFiles({ name: 'pirate.zip', mimeType: 'application/zip', buffer: Buffer.from(zip) });
    await expect.poll(() => names(page)).toEqual(['pirate', 'Imported adapter for SmolLM2-135M']);

    // A config with r = 0 is refused with the reason, and nothing is added.
    await input.setInputFiles([
      { name: 'adapter_config.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify({ ...adapterConfigToJson(CONFIG), r: 0 })) },
      { name: 'adapter_model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from(first.weights) },
    ]);
    const alert = page.getByRole('alert').filter({ hasText: 'r must be a positive integer' });
    await alert.waitFor();
    expect(await alert.textContent()).toContain('adapter_config.json: r must be a positive integer (got 0).');
    await page.getByRole('button', { name: 'Dismiss' }).click();
    await expect.poll(() => page.getByTestId('library-row').count()).toBe(2);

    // IndexedDB keeps them across a reload.
    await page.reload();
    await expect.poll(() => names(page)).toEqual(['pirate', 'Imported adapter for SmolLM2-135M']);
    const row = page.getByTestId('library-row').filter({ hasText: 'pirate' });
    expect(await row.getByRole('cell').allTextContents()).toEqual(
      expect.arrayContaining([BASE, '0', '—', expect.stringMatching(/^\d+\.\d kB$/)]),
    );

    // A full disk, as navigator.storage.estimate reports it: refused before anything is written.
    // (DevTools' Storage.overrideQuotaForOrigin did not change estimate() in this Chromium, so the page's
    // estimate is replaced instead; the reload puts the real one back.)
    const recordKeys = () =>
      page.evaluate(
        () =>
          new Promise<string[]>((done, fail) => {
            const open = indexedDB.open('lora-studio-adapters');
            open.onerror = () => fail(open.error);
            open.onsuccess = () => {
              const keys = open.result.transaction('adapters').objectStore('adapters').getAllKeys();
              keys.onsuccess = () => { done((keys.result as string[]).filter((k) => k.startsWith('adapter/')).sort()); open.result.close(); };
              keys.onerror = () => fail(keys.error);
            };
          }),
      );
    const keysBefore = await recordKeys();
    expect(keysBefore).toHaveLength(2);
    await page.evaluate(() => {
      navigator.storage.estimate = async () => ({ usage: 999_500_000, quota: 1_052_000_000 }); // 95% of it is 999.4 MB
    });
    await input.setInputFiles({ name: 'too-big.zip', mimeType: 'application/zip', buffer: Buffer.from(zip) });
    const full = page.getByRole('alert').filter({ hasText: 'Not enough browser storage' });
    await full.waitFor();
    expect(await full.textContent()).toContain(
      'Not enough browser storage to save “too-big” (needs 0.1 MB, 0.0 MB free). Delete old adapters or download this one instead; your library is unchanged.',
    );
    await page.getByRole('button', { name: 'Dismiss' }).click();

    // A disk that fills up mid-write: no estimate, and IndexedDB refuses the index after the record went in.
    // The half-written record is rolled back and the old index still lists exactly what it did.
    await page.evaluate(() => {
      navigator.storage.estimate = async () => ({});
      const put = IDBObjectStore.prototype.put;
      IDBObjectStore.prototype.put = function (value: unknown, key?: IDBValidKey) {
        if (key === 'index') throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
        return put.call(this, value, key);
      };
    });
    await input.setInputFiles({ name: 'too-big.zip', mimeType: 'application/zip', buffer: Buffer.from(zip) });
    await full.waitFor();
    expect(await full.textContent()).toContain('Not enough browser storage to save “too-big” (needs 0.1 MB). Delete old adapters or download this one instead; your library is unchanged.');
    expect(await recordKeys()).toEqual(keysBefore);
    await page.reload();
    await expect.poll(() => names(page)).toEqual(['pirate', 'Imported adapter for SmolLM2-135M']);

    // Rename inline: Enter saves, and focus returns to the Rename button.
    await page.getByRole('button', { name: 'Rename pirate' }).click();
    const box = page.getByRole('textbox', { name: 'New name for pirate' });
    await expect.poll(() => isFocused(box)).toBe(true);
    await box.fill('Pirate speak');
    await shoot(page, 'library-rename');
    await box.press('Enter');
    await expect.poll(() => names(page)).toContain('Pirate speak');
    const renameButton = page.getByRole('button', { name: 'Rename Pirate speak' });
    await expect.poll(() => isFocused(renameButton)).toBe(true);

    // Escape cancels a rename.
    await renameButton.click();
    await page.getByRole('textbox', { name: 'New name for Pirate speak' }).fill('nope');
    await page.getByRole('textbox', { name: 'New name for Pirate speak' }).press('Escape');
    await expect.poll(() => names(page)).toContain('Pirate speak');

    // Download as a zip, and read it as PEFT would.
    const zipped = await download(page, 'Download Pirate speak as .zip');
    expect(zipped.name).toBe('Pirate speak.zip');
    const files = readZip(zipped.bytes, zipped.name);
    expect([...files.keys()].sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const config = JSON.parse(new TextDecoder().decode(files.get('adapter_config.json')));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'], base_model_name_or_path: BASE });
    const tensors = parseSafetensors(files.get('adapter_model.safetensors')!, 'adapter_model.safetensors').tensors;
    const shapes = Object.fromEntries([...tensors].map(([k, t]) => [k, t.shape]));
    expect(shapes).toEqual({
      [loraKey(0, 'q_proj', 'A')]: [4, 32],
      [loraKey(0, 'q_proj', 'B')]: [32, 4],
      [loraKey(0, 'v_proj', 'A')]: [4, 32],
      [loraKey(0, 'v_proj', 'B')]: [16, 4],
      [loraKey(1, 'q_proj', 'A')]: [4, 32],
      [loraKey(1, 'q_proj', 'B')]: [32, 4],
      [loraKey(1, 'v_proj', 'A')]: [4, 32],
      [loraKey(1, 'v_proj', 'B')]: [16, 4],
    });
    expect(Buffer.from(files.get('adapter_model.safetensors')!).equals(Buffer.from(second.weights))).toBe(true);

    // The weights file on its own.
    await page.getByRole('button', { name: 'Separate files of Pirate speak' }).click();
    await page.getByRole('group', { name: 'Files of Pirate speak' }).waitFor();
    await shoot(page, 'library', { fullPage: true });
    const single = await download(page, 'Download adapter_model.safetensors of Pirate speak');
    expect(single.name).toBe('adapter_model.safetensors');
    expect(single.bytes.equals(Buffer.from(second.weights))).toBe(true);
    await expect.poll(() => page.getByRole('group', { name: 'Files of Pirate speak' }).isVisible()).toBe(false); // the menu closed

    await page.emulateMedia({ colorScheme: 'dark' });
    await shoot(page, 'library-dark', { fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });

    // Delete asks first; Keep is focused, so Enter on the confirmation does no harm.
    await page.getByRole('button', { name: 'Delete Pirate speak' }).click();
    const confirm = page.getByRole('group', { name: 'Confirm deleting Pirate speak' });
    await expect.poll(() => isFocused(confirm.getByRole('button', { name: 'Keep Pirate speak' }))).toBe(true);
    await shoot(page, 'library-confirm-delete');
    await confirm.getByRole('button', { name: 'Yes, delete Pirate speak' }).click();
    await expect.poll(() => names(page)).toEqual(['Imported adapter for SmolLM2-135M']);
    await expect.poll(() => page.getByTestId('library-notice').textContent()).toBe('Deleted “Pirate speak”.');

    await page.reload();
    await expect.poll(() => names(page)).toEqual(['Imported adapter for SmolLM2-135M']);
  });

  it('gives an import whose name another adapter has a distinct name, and refuses a rename to a taken one', async () => {
    const page = await openStudio();
    await page.getByTestId('library-empty').waitFor();
    const input = page.getByLabel('Import a PEFT adapter');
    const adapter = makeAdapter(3);
    const zip = Buffer.from(writeZip([
      { name: 'adapter_config.json', bytes: new TextEncoder().encode(adapter.configJson) },
      { name: 'adapter_model.safetensors', bytes: adapter.weights },
    ]));
    await input.setInputFiles({ name: 'pirate.zip', mimeType: 'application/zip', buffer: zip });
    await expect.poll(() => names(page)).toEqual(['pirate']);
    await input.setInputFiles({ name: 'pirate.zip', mimeType: 'application/zip', buffer: zip });
    await expect.poll(() => page.getByTestId('library-notice').textContent()).toBe('Imported “pirate (2)” (another adapter is called “pirate”).');
    expect(await names(page)).toEqual(['pirate (2)', 'pirate']);

    await page.getByRole('button', { name: 'Rename pirate (2)' }).click();
    const box = page.getByRole('textbox', { name: 'New name for pirate (2)' });
    await box.fill('Pirate');
    await box.press('Enter');
    const refused = page.getByTestId('library-error');
    await refused.waitFor();
    expect(await refused.textContent()).toContain('Another adapter in the library is already called “Pirate”; choose another name.');
    expect(await isFocused(box)).toBe(true); // still in the rename, to fix the name
    await page.reload();
    await expect.poll(() => names(page)).toEqual(['pirate (2)', 'pirate']);
  });
});
