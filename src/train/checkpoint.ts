// A training run's checkpoint as the library stores it (src/io/library.ts TrainingCheckpoint): AdamW's
// moments as safetensors under torch.optim.AdamW's state names, the step, the run's settings (RunSettings:
// LoRA and optimizer settings, the model and the data it trained on, the step its schedule began at) and
// where the data stream stopped. Building one from a trainer's state, and reading one back to resume, with
// each stored field checked, since the library keeps settings as free JSON written by any past version.
//
// This file does not read the GPU or write the library (the session does both); the run settings' types
// are the worker protocol's (type imports only), since the UI shows them too.

import { badInput } from '../io/errors';
import type { TrainingCheckpoint } from '../io/library';
import { parseSafetensors, writeSafetensors } from '../io/safetensors';
import type { DataIdentity, LoraSettings, ModelIdentity, OptimSettings, RunSettings } from './settings';

/** torch.optim.AdamW's state names for the first and second moments. */
export const MOMENT_NAMES = { m: 'exp_avg', v: 'exp_avg_sq' } as const;

export type Moments = Map<string, { m: Float32Array; v: Float32Array }>;

/** A run's plan, kept while its trainer holds the moments of the current adapter and it can go on. */
export interface RunPlan {
  lora: LoraSettings;
  optim: OptimSettings;
  /** Adapter steps when the run began (RunSettings.origin). */
  origin: number;
  data: DataIdentity;
}

/**
 * Where the data stream stands after adapter step `step`: each optimizer step consumed gradAccum·batchSize
 * rows of the `rows` training rows, from the run's origin on.
 */
export function dataCursor(step: number, plan: RunPlan, rows: number): { epoch: number; index: number } {
  const consumed = (step - plan.origin) * plan.optim.gradAccum * plan.optim.batchSize;
  const n = Math.max(1, rows);
  return { epoch: Math.floor(consumed / n), index: consumed % n };
}

/** The checkpoint of a run at adapter step `step`: `moments` by PEFT key, with each parameter's shape. */
export function buildCheckpoint(
  step: number, plan: RunPlan, model: ModelIdentity, trainRows: number,
  params: readonly { key: string; shape: readonly number[] }[], moments: Moments,
): TrainingCheckpoint {
  const tensors = params.flatMap((p) => {
    const mv = moments.get(p.key)!;
    return [
      { name: `${MOMENT_NAMES.m}.${p.key}`, shape: [...p.shape], data: mv.m },
      { name: `${MOMENT_NAMES.v}.${p.key}`, shape: [...p.shape], data: mv.v },
    ];
  });
  const settings: RunSettings = { version: 1, lora: plan.lora, optim: plan.optim, origin: plan.origin, model, data: plan.data };
  return {
    step,
    totalSteps: plan.origin + plan.optim.steps,
    optimizer: writeSafetensors(tensors),
    settings: settings as unknown as Record<string, unknown>,
    dataCursor: dataCursor(step, plan, trainRows),
  };
}

/** The RunSettings stored in a checkpoint, checked field by field (the library stores them as free JSON). */
export function parseRunSettings(value: Record<string, unknown>, name: string): RunSettings {
  const s = value as Partial<RunSettings>;
  const ok =
    s.version === 1 && typeof s.origin === 'number' && s.lora !== undefined && Array.isArray(s.lora.targets) && s.optim !== undefined &&
    typeof s.optim.steps === 'number' && s.model !== undefined && typeof s.model.kind === 'string' && s.data !== undefined && typeof s.data.hash === 'string';
  if (!ok) badInput(`The checkpoint of “${name}” was not written by this version of LoRA Studio, so it cannot resume; load the adapter and continue training it instead.`);
  return s as RunSettings;
}

/** The moments of every key in `keys` (the adapter's PEFT keys) from checkpoint `ck` of library entry `name`. */
export function readCheckpointMoments(ck: TrainingCheckpoint, keys: Iterable<string>, name: string): Moments {
  const stored = parseSafetensors(ck.optimizer, 'optimizer state');
  const moments: Moments = new Map();
  for (const key of keys) {
    const m = `${MOMENT_NAMES.m}.${key}`, v = `${MOMENT_NAMES.v}.${key}`;
    if (!stored.tensors.has(m) || !stored.tensors.has(v)) badInput(`The checkpoint of “${name}” lacks the optimizer state of ${key}; it cannot resume.`);
    moments.set(key, { m: stored.readF32(m), v: stored.readF32(v) });
  }
  return moments;
}

/** cyrb53: a 53-bit hash of a string, as hex. Enough to tell one dataset text from another; not cryptographic. */
export function textHash(text: string): string {
  let h1 = 0xdeadbeef, h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16);
}

/** The fingerprint of `text` (file `name`) cut into rows with these settings. */
export function dataIdentity(text: string, name: string, cut: Pick<DataIdentity, 'seqLen' | 'validationShare' | 'pack' | 'seed'>): DataIdentity {
  return { name, chars: text.length, hash: textHash(text), seqLen: cut.seqLen, validationShare: cut.validationShare, pack: cut.pack, seed: cut.seed };
}

/** What differs between the data a run trained on and the loaded data, in words; [] when they are the same. */
export function dataDifferences(want: DataIdentity, have: DataIdentity): string[] {
  const out: string[] = [];
  if (want.name !== have.name) out.push(`the file is “${have.name}”, not “${want.name}”`);
  else if (want.chars !== have.chars || want.hash !== have.hash) out.push(`“${have.name}” holds other text than when the run started`);
  if (want.seqLen !== have.seqLen) out.push(`the sequence length is ${have.seqLen}, not ${want.seqLen}`);
  if (want.validationShare !== have.validationShare) out.push(`the validation share is ${have.validationShare}, not ${want.validationShare}`);
  if (want.pack !== have.pack) out.push(want.pack ? 'packing is off' : 'packing is on');
  if (want.seed !== have.seed) out.push(`the seed is ${have.seed}, not ${want.seed}`);
  return out;
}
