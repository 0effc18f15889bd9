// Checks the studio's settings as the user typed them: each field's text becomes its value, or says why it
// cannot be used and which values are allowed; setups that run but teach little (one training row, no
// validation rows) get a warning. Pure functions of text and context, no React and no store, so Node tests
// cover them (tests/ui/settings_check.test.ts). Nothing here clamps or replaces a value: the settings slice
// keeps what was typed and Start (or Generate) stays off while any field has an error (issue 17, point 3).

import type { StudioSettings } from './studio_defaults';

/** The run's numeric settings, one text box each (LoRA panel, and the Data panel's validation share). */
export const SETTING_FIELDS = ['r', 'alpha', 'dropout', 'lr', 'warmupSteps', 'steps', 'batchSize', 'seqLen', 'gradAccum', 'maxGradNorm', 'seed', 'validationShare'] as const;
export type SettingField = (typeof SETTING_FIELDS)[number];

/** Try it's sampling settings. */
export const TRY_FIELDS = ['temperature', 'topK', 'maxTokens', 'seed'] as const;
export type TryField = (typeof TRY_FIELDS)[number];

export interface FieldCheck {
  /** The number the text means when it lies in the field's own range, else null; an error may still hold (a cross-field one). */
  value: number | null;
  /** Why the settings cannot be used as they are, with the allowed range. */
  error?: string;
  /** Legal but probably not what was meant. */
  warning?: string;
}

export interface FieldRule {
  label: string;
  min: number;
  max: number;
  integer?: boolean;
  /** What the maximum is, when it comes from somewhere ("the model's context"). */
  maxReason?: string;
}

/** What the checks need besides the texts: the model's context and the tokenized data (when there is one). */
export interface SettingsContext {
  contextLength: number;
  data: { trainRows: number; validationRows: number } | null;
}

export interface SettingsCheck {
  fields: Record<SettingField, FieldCheck>;
  /** Warnings about the data as tokenized with these settings (not tied to one field). */
  dataWarnings: string[];
  /** The fields with an error, in form order: Start is off while there is one. */
  errors: SettingField[];
}

const MAX_SEED = 2 ** 31 - 1;

/** The context the sequence length is checked against before a model is loaded (the LoRA panel shows the same). */
export const DEFAULT_CONTEXT = 2048;

/** The allowed range of each run setting; the sequence length's maximum is the loaded model's context. */
export function settingRules(contextLength: number): Record<SettingField, FieldRule> {
  return {
    r: { label: 'Rank r', min: 1, max: 256, integer: true },
    alpha: { label: 'α (alpha)', min: 0.01, max: 4096 },
    dropout: { label: 'Dropout', min: 0, max: 0.9 },
    lr: { label: 'Learning rate', min: 1e-7, max: 1 },
    warmupSteps: { label: 'Warm-up steps', min: 0, max: 100_000, integer: true },
    steps: { label: 'Steps', min: 1, max: 1_000_000, integer: true },
    batchSize: { label: 'Batch size', min: 1, max: 1024, integer: true },
    seqLen: { label: 'Sequence length', min: 8, max: contextLength, integer: true, maxReason: "the model's context" },
    gradAccum: { label: 'Grad. accumulation', min: 1, max: 256, integer: true },
    maxGradNorm: { label: 'Clip grad. norm', min: 0, max: 1000 },
    seed: { label: 'Seed', min: 0, max: MAX_SEED, integer: true },
    validationShare: { label: 'Validation share', min: 0, max: 0.5 },
  };
}

export const TRY_RULES: Record<TryField, FieldRule> = {
  temperature: { label: 'Temperature', min: 0, max: 2 },
  topK: { label: 'Top-k', min: 0, max: 1000, integer: true },
  maxTokens: { label: 'Max tokens', min: 1, max: 200, integer: true },
  seed: { label: 'Sampling seed', min: 0, max: MAX_SEED, integer: true },
};

/** "whole numbers from 1 to 256", "0 to 0.9": the range as the messages state it. */
export function rangeText(rule: FieldRule, max = rule.max): string {
  return `${rule.integer ? 'whole numbers from ' : ''}${rule.min} to ${max}`;
}

/** One field's text on its own: its value, or why not with the range allowed. */
export function checkNumber(text: string, rule: FieldRule): FieldCheck {
  const allowed = `allowed: ${rangeText(rule)}`;
  const t = text.trim();
  if (t === '') return { value: null, error: `Enter a number; ${allowed}.` };
  const v = Number(t);
  if (!Number.isFinite(v)) return { value: null, error: `“${t}” is not a number; ${allowed}.` };
  if (rule.integer && !Number.isInteger(v)) return { value: null, error: `${t} is not a whole number; ${allowed}.` };
  if (v < rule.min) return { value: null, error: `${t} is below ${rule.min}; ${allowed}.` };
  if (v > rule.max) return { value: null, error: `${t} is above ${rule.max}${rule.maxReason ? `, ${rule.maxReason}` : ''}; ${allowed}.` };
  return { value: v };
}

/**
 * Every run setting from its text, then what only holds of several together: the warm-up fits in the run, a
 * batch is no larger than the training rows, and the data leaves something to validate on.
 */
export function checkSettings(texts: Record<SettingField, string>, ctx: SettingsContext): SettingsCheck {
  const rules = settingRules(ctx.contextLength);
  const fields = Object.fromEntries(SETTING_FIELDS.map((f) => [f, checkNumber(texts[f], rules[f])])) as Record<SettingField, FieldCheck>;
  const { warmupSteps, steps, batchSize, validationShare } = fields;
  if (warmupSteps.value !== null && steps.value !== null && !warmupSteps.error && warmupSteps.value > steps.value) {
    warmupSteps.error = `A warm-up of ${warmupSteps.value} steps is longer than the run (${steps.value} steps); allowed: ${rangeText(rules.warmupSteps, steps.value)}.`;
  }
  const dataWarnings: string[] = [];
  if (ctx.data) {
    const { trainRows, validationRows } = ctx.data;
    if (batchSize.value !== null && !batchSize.error && batchSize.value > trainRows) {
      batchSize.error = `A batch of ${batchSize.value} rows is larger than the data (${trainRows} training row${trainRows === 1 ? '' : 's'}); allowed: ${rangeText(rules.batchSize, trainRows)}.`;
    }
    if (trainRows === 1) dataWarnings.push('Only one training row: every step trains on the same tokens, so the loss falls by memorising them. Add data or shorten the sequence length.');
    // The engine holds out at least one row for any share above 0 (or refuses the data), so this is mostly a share of 0.
    if (validationRows === 0 && validationShare.value !== null && !validationShare.error) {
      validationShare.warning = `A share of ${validationShare.value} leaves no validation rows, so the run shows no validation loss; raise it to see one.`;
    }
  }
  return { fields, dataWarnings, errors: SETTING_FIELDS.filter((f) => fields[f].error) };
}

/** Try it's fields from their texts; Generate is off while one has an error. */
export function checkTry(texts: Record<TryField, string>): { fields: Record<TryField, FieldCheck>; errors: TryField[] } {
  const fields = Object.fromEntries(TRY_FIELDS.map((f) => [f, checkNumber(texts[f], TRY_RULES[f])])) as Record<TryField, FieldCheck>;
  return { fields, errors: TRY_FIELDS.filter((f) => fields[f].error) };
}

/** The texts the boxes show: what the user typed where they typed, else the value itself. */
export function fieldTexts<F extends string>(values: Record<F, number>, drafts: Partial<Record<F, string>>): Record<F, string> {
  const out = {} as Record<F, string>;
  for (const f of Object.keys(values) as F[]) out[f] = drafts[f] ?? String(values[f]);
  return out;
}

/** The run settings' values by field, as the boxes show them. */
export function settingValues(s: StudioSettings): Record<SettingField, number> {
  const { lora, optim } = s;
  return {
    r: lora.r, alpha: lora.alpha, dropout: lora.dropout, lr: optim.lr, warmupSteps: optim.warmupSteps, steps: optim.steps, batchSize: optim.batchSize,
    seqLen: s.seqLen, gradAccum: optim.gradAccum, maxGradNorm: optim.maxGradNorm, seed: optim.seed, validationShare: s.validationShare,
  };
}

/** The Try field after a Resample: the next seed, wrapping to 0 after the largest. */
export const nextSeed = (seed: number): number => (seed >= MAX_SEED ? 0 : seed + 1);
