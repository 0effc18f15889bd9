// Try it with adapters from the library, in headless Chromium on SwiftShader (tests/browser/harness.ts): two
// adapters imported for the default model are attached beside it; the base model and the two adapters
// continue one prompt side by side, each pane labelled with what the engine ran; the second pane switches to
// the live blend, whose sliders regenerate it: every weight 0 is the base model's text, "poet" at 1 alone is
// the poet pane's text; and the blend is saved to the library as a new entry.
//
// SwiftShader runs every dispatch on the CPU, so generations are 3 greedy tokens.

import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { loraKey, writeAdapter, type AdapterConfig } from '../../src/io/peft';
import { writeZip } from '../../src/io/zip';
import { pageErrors, shoot, studioInBrowser, waitForDefaultModel, waitForGpu } from './harness';

const STEP_MS = 180_000;
const studio = studioInBrowser({ outDir: '.cache/dist-try-adapters-test' });

// moby-llama: 4 layers, hidden 128, 4 query heads and 2 key/value heads of 32, MLP 384.
const DIMS = { q_proj: [128, 128], v_proj: [128, 64], down_proj: [384, 128] } as const;

function adapterZip(name: string, cfg: AdapterConfig, seed: number): { name: string; mimeType: string; buffer: Buffer } {
  const weights = new Map<string, Float32Array>();
  for (let layer = 0; layer < 4; layer++) {
    for (const t of cfg.targetModules as (keyof typeof DIMS)[]) {
      const [inF, outF] = DIMS[t];
      weights.set(loraKey(layer, t, 'A'), Float32Array.from({ length: cfg.r * inF }, (_, i) => 0.2 * Math.sin(seed * 7 + layer + i)));
      weights.set(loraKey(layer, t, 'B'), Float32Array.from({ length: outF * cfg.r }, (_, i) => 0.2 * Math.cos(seed * 3 + layer + i)));
    }
  }
  const { configJson, weights: bytes } = writeAdapter(cfg, weights);
  const zip = writeZip([{ name: 'adapter_config.json', bytes: new TextEncoder().encode(configJson) }, { name: 'adapter_model.safetensors', bytes }]);
  return { name: `${name}.zip`, mimeType: 'application/zip', buffer: Buffer.from(zip) };
}

const text = (page: Page, pane: string) => page.getByTestId(`${pane}-continuation`).textContent();
const caption = (page: Page, pane: string) => page.getByTestId(pane).locator('figcaption').textContent();
const done = (page: Page, pane: string) => expect.poll(() => page.getByTestId(pane).getAttribute('data-status'), { timeout: STEP_MS }).toBe('done');

describe('Try it with attached adapters in Chromium', () => {
  it('attaches two library adapters, compares them with the base, blends them live and saves the blend', async () => {
    const page = await studio.launch({ timeout: STEP_MS });
    await page.goto(studio.url);
    await waitForGpu(page);
    await waitForDefaultModel(page, STEP_MS);

    const input = page.getByLabel('Import a PEFT adapter');
    const base = { loraDropout: 0, baseModel: 'moby-llama', useRslora: false };
    await input.setInputFiles(adapterZip('poet', { ...base, r: 4, loraAlpha: 8, targetModules: ['q_proj', 'v_proj'] }, 1));
    await expect.poll(() => page.getByTestId('library-notice').textContent(), { timeout: 60_000 }).toMatch(/^Imported “poet”/);
    await input.setInputFiles(adapterZip('sailor', { ...base, r: 2, loraAlpha: 4, targetModules: ['q_proj', 'down_proj'], useRslora: true }, 2));
    await expect.poll(() => page.getByTestId('library-notice').textContent(), { timeout: 60_000 }).toMatch(/^Imported “sailor”/);

    // Attach both: they sit beside the model, the panes can run them.
    const attachOne = async (name: string) => {
      const pick = page.getByTestId('try-attach-pick');
      await pick.selectOption((await pick.locator('option', { hasText: `${name} (r = ` }).first().getAttribute('value'))!);
      await page.getByTestId('try-attach').click();
      await expect.poll(() => page.getByTestId('try-attached').filter({ hasText: `“${name}”` }).count(), { timeout: 60_000 }).toBe(1);
    };
    await attachOne('poet');
    await attachOne('sailor');
    const ids = await page.getByTestId('try-attached').evaluateAll((els) => els.map((e) => e.getAttribute('data-adapter-id')!));
    await page.getByTestId('try-adapted-choice').selectOption(`adapter:${ids[0]}`);
    await page.getByTestId('try-second-choice').selectOption(`adapter:${ids[1]}`);

    await page.getByLabel('Temperature').fill('0');
    await page.getByLabel('Max tokens').fill('3');
    await page.getByLabel('Prompt').fill('The whale');
    await page.getByRole('button', { name: 'Generate' }).click();
    await done(page, 'try-second');
    await done(page, 'try-adapted');
    expect(await page.getByTestId('try-base').getAttribute('data-status')).toBe('done');
    expect(await caption(page, 'try-base')).toMatch(/^Base model/);
    expect(await caption(page, 'try-adapted')).toMatch(/^With “poet” \(weight 1\)/);
    expect(await caption(page, 'try-second')).toMatch(/^With “sailor” \(weight 1\)/);
    const [baseText, poetText] = [await text(page, 'try-base'), await text(page, 'try-adapted')];
    expect(baseText).not.toBe('');
    await shoot(page.getByTestId('try-panel'), 'try-adapters-side-by-side');

    // The second pane runs the blend; every weight to 0 regenerates it as the base model, labelled so.
    await page.getByTestId('try-second-choice').selectOption('blend');
    const sliders = page.getByTestId('try-weight');
    await sliders.nth(1).fill('0');
    await sliders.nth(0).fill('0');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => caption(page, 'try-second'), { timeout: STEP_MS }).toMatch(/^Base model \(every weight 0\)/);
    await done(page, 'try-second');
    expect(await text(page, 'try-second')).toBe(baseText);

    // poet at 1, sailor at 0: the slider alone regenerates the blend pane, and it is poet's text.
    await sliders.nth(0).fill('1');
    await expect.poll(() => caption(page, 'try-second'), { timeout: STEP_MS }).toMatch(/^With “poet” \(weight 1\)/);
    await done(page, 'try-second');
    expect(await text(page, 'try-second')).toBe(poetText);

    // A real blend, with a negative weight, labelled with both, and saved to the library.
    await sliders.nth(1).fill('-1.5');
    await expect.poll(() => caption(page, 'try-second'), { timeout: STEP_MS }).toMatch(/^Blend: “poet” × 1 \+ “sailor” × −1\.5/);
    await done(page, 'try-second');
    await page.getByTestId('try-save-blend').click();
    await expect.poll(() => page.getByTestId('try-blend-notice').textContent(), { timeout: 60_000 }).toBe('Saved the blend to the library as “Blend of poet and sailor”.');
    await expect.poll(() => page.getByTestId('library-row').filter({ hasText: 'Blend of poet and sailor' }).count(), { timeout: 60_000 }).toBe(1);
    await shoot(page.getByTestId('try-panel'), 'try-adapters-blend');
    expect(pageErrors(page)).toEqual([]);
  }, 900_000);
});
