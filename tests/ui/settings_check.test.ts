// The settings checks of src/ui/settings_check.ts in Node: a value the user typed is judged, never replaced;
// each error names the reason and the allowed range; cross-field rules (warm-up within the run, a batch
// within the data) and the warnings for degenerate data (one training row, no validation rows).

import { describe, expect, it } from 'vitest';
import {
  checkNumber, checkSettings, checkTry, fieldTexts, nextSeed, settingRules, settingValues, TRY_FIELDS, type SettingField, type SettingsContext,
} from '../../src/ui/settings_check';
import { DEFAULT_SETTINGS } from '../../src/ui/studio_defaults';

const CTX: SettingsContext = { contextLength: 2048, data: { trainRows: 700, validationRows: 70 } };
const defaults = () => fieldTexts(settingValues(DEFAULT_SETTINGS), {});
const withTexts = (p: Partial<Record<SettingField, string>>, ctx = CTX) => checkSettings({ ...defaults(), ...p }, ctx);

describe('settings_check', () => {
  it('accepts the studio defaults with nothing to say', () => {
    const c = checkSettings(defaults(), CTX);
    expect(c.errors).toEqual([]);
    expect(c.dataWarnings).toEqual([]);
    for (const [f, check] of Object.entries(c.fields)) {
      expect(check.value, f).toBe(settingValues(DEFAULT_SETTINGS)[f as SettingField]);
      expect(check.warning, f).toBeUndefined();
    }
  });

  it('refuses the issue’s examples with the reason and the range, and never substitutes a value', () => {
    const cases: [SettingField, string, RegExp][] = [
      ['seqLen', '100000', /^100000 is above 2048, the model's context; allowed: whole numbers from 8 to 2048\.$/],
      ['lr', 'abc', /^“abc” is not a number; allowed: 1e-7 to 1\.$/],
      ['r', '0', /^0 is below 1; allowed: whole numbers from 1 to 256\.$/],
      ['batchSize', '2.5', /^2\.5 is not a whole number; allowed: whole numbers from 1 to 1024\.$/],
      ['steps', '', /^Enter a number; allowed: whole numbers from 1 to 1000000\.$/],
      ['validationShare', '0.9', /^0\.9 is above 0\.5; allowed: 0 to 0\.5\.$/],
      ['dropout', 'Infinity', /not a number/],
    ];
    for (const [field, text, message] of cases) {
      const c = withTexts({ [field]: text });
      expect(c.fields[field].value, field).toBeNull();
      expect(c.fields[field].error, field).toMatch(message);
      expect(c.errors).toEqual([field]);
    }
  });

  it('takes numbers as JavaScript reads them (3e-4, spaces around)', () => {
    expect(checkNumber(' 3e-4 ', settingRules(2048).lr)).toEqual({ value: 3e-4 });
    expect(checkNumber('2048', settingRules(2048).seqLen)).toEqual({ value: 2048 });
    expect(checkNumber('2049', settingRules(2048).seqLen).error).toMatch(/above 2048/);
    expect(checkNumber('4096', settingRules(4096).seqLen)).toEqual({ value: 4096 });
  });

  it('refuses a warm-up longer than the run, on the warm-up field, with the run as the limit', () => {
    const c = withTexts({ warmupSteps: '500', steps: '200' });
    expect(c.errors).toEqual(['warmupSteps']);
    expect(c.fields.warmupSteps.value).toBe(500); // a number in its own range: the engine may be asked about it
    expect(c.fields.warmupSteps.error).toBe('A warm-up of 500 steps is longer than the run (200 steps); allowed: whole numbers from 0 to 200.');
    expect(withTexts({ warmupSteps: '200', steps: '200' }).errors).toEqual([]);
    // With the steps unreadable there is no run length to compare with: only the steps are wrong.
    expect(withTexts({ warmupSteps: '500', steps: 'x' }).errors).toEqual(['steps']);
  });

  it('refuses a batch larger than the training rows, and says nothing of the data before it is tokenized', () => {
    const ctx = { contextLength: 2048, data: { trainRows: 5, validationRows: 1 } };
    const c = withTexts({ batchSize: '8' }, ctx);
    expect(c.errors).toEqual(['batchSize']);
    expect(c.fields.batchSize.error).toBe('A batch of 8 rows is larger than the data (5 training rows); allowed: whole numbers from 1 to 5.');
    expect(withTexts({ batchSize: '5' }, ctx).errors).toEqual([]);
    expect(withTexts({ batchSize: '8' }, { contextLength: 2048, data: null }).errors).toEqual([]);
  });

  it('warns about one training row and a validation share that leaves no validation rows, without blocking', () => {
    const c = withTexts({ batchSize: '1' }, { contextLength: 2048, data: { trainRows: 1, validationRows: 0 } });
    expect(c.errors).toEqual([]);
    expect(c.dataWarnings).toHaveLength(1);
    expect(c.dataWarnings[0]).toMatch(/^Only one training row/);
    expect(c.fields.validationShare.warning).toBe('A share of 0.1 leaves no validation rows, so the run shows no validation loss; raise it to see one.');
    const none = withTexts({ validationShare: '0' }, { contextLength: 2048, data: { trainRows: 700, validationRows: 0 } });
    expect(none.errors).toEqual([]);
    expect(none.dataWarnings).toEqual([]);
    expect(none.fields.validationShare.warning).toBe('A share of 0 leaves no validation rows, so the run shows no validation loss; raise it to see one.');
    // With validation rows, or an unreadable share (its error says enough), no warning.
    expect(withTexts({}, CTX).fields.validationShare.warning).toBeUndefined();
    expect(withTexts({ validationShare: 'x' }, { contextLength: 2048, data: { trainRows: 700, validationRows: 0 } }).fields.validationShare.warning).toBeUndefined();
  });

  it('keeps what was typed over the value, and shows the value where nothing was typed', () => {
    const values = settingValues(DEFAULT_SETTINGS);
    const texts = fieldTexts(values, { lr: '1e-3', seqLen: '100000' });
    expect(texts.lr).toBe('1e-3');
    expect(texts.seqLen).toBe('100000');
    expect(texts.steps).toBe(String(values.steps));
  });

  it('checks Try it’s fields the same way', () => {
    const ok = checkTry({ temperature: '0.7', topK: '40', maxTokens: '24', seed: '0' });
    expect(ok.errors).toEqual([]);
    expect(TRY_FIELDS.map((f) => ok.fields[f].value)).toEqual([0.7, 40, 24, 0]);
    const bad = checkTry({ temperature: '5', topK: '-1', maxTokens: '0', seed: '1.5' });
    expect(bad.errors).toEqual(['temperature', 'topK', 'maxTokens', 'seed']);
    expect(bad.fields.temperature.error).toBe('5 is above 2; allowed: 0 to 2.');
  });

  it('gives the next seed on resample, wrapping after the largest', () => {
    expect(nextSeed(0)).toBe(1);
    expect(nextSeed(41)).toBe(42);
    expect(nextSeed(2 ** 31 - 1)).toBe(0);
  });
});
