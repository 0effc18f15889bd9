// A library entry as files for other tools, for the studio's Library panel (protocol.ts exportAdapter): a
// llama.cpp GGUF adapter, an MLX-LM adapter folder (zipped), the loaded model with the adapter merged in
// (a Hugging Face model folder, zipped), or the PEFT + TRL script that reruns the entry's run. The formats
// are io's and model/merge.ts's; this file picks one, checks the entry against the loaded model, and hands
// back a Blob. PEFT files are the page's own download (io/library.ts exportPeft).
//
// The merge reads the loaded model's files again from their source (a picked folder's Blobs, the Hub's
// cache, the server), so the studio keeps no second copy of the base in memory between exports.

import { LoraStudioError } from '../io/errors';
import { exportAdapter } from '../io/export';
import type { AdapterEntry } from '../io/library';
import type { ModelFiles } from '../io/model_source';
import { RECIPE_FILE, writeTrainingRecipe } from '../io/recipe';
import { writeZip } from '../io/zip';
import type { DatasetFormat } from '../io/dataset';
import type { ModelConfig } from '../model/config';
import { adapterExpectation } from '../model/lora';
import { mergedModelFiles } from '../model/merge';
import { parseRunSettings } from '../train/checkpoint';
import { entryConfig, fittingWeights } from './adapter_entries';
import type { ModelFacts, ResponseBody, StudioExportFormat } from './protocol';

/** What an export needs of the loaded model: its config, its name, and where its files come from (for merged). */
export interface ExportModel {
  config: ModelConfig;
  facts: ModelFacts;
  source: ModelFiles;
}

const NEEDS_MODEL: Record<Exclude<StudioExportFormat, 'recipe'>, string> = {
  gguf: 'A GGUF adapter records the base model’s attention layout',
  mlx: 'An MLX adapter is checked against its base model’s shapes',
  merged: 'A merged model is the base model’s weights with the adapter added',
};

/** A file name from an entry's name: characters that file systems refuse become '_'. */
function stem(name: string): string {
  const s = name.replace(/[\\/:*?"<>|\u0000-\u001f]+/g, '_').replace(/^[.\s]+|[.\s]+$/g, '');
  return s === '' ? 'adapter' : s;
}

const blob = (bytes: Uint8Array, type: string) => new Blob([bytes as Uint8Array<ArrayBuffer>], { type });

export async function exportEntry(entry: AdapterEntry, format: StudioExportFormat, loaded: ExportModel | null): Promise<ResponseBody<'exportAdapter'>> {
  const name = stem(entry.name);
  if (format === 'recipe') {
    const { script, notes } = recipeOf(entry);
    return { type: 'adapterExported', fileName: `${name}.${RECIPE_FILE}`, blob: blob(new TextEncoder().encode(script), 'text/x-python'), notes };
  }
  if (!(format in NEEDS_MODEL)) throw new LoraStudioError('bad-input', `Unknown export format "${String(format)}"; choose gguf, mlx, merged or recipe.`);
  if (loaded === null) {
    throw new LoraStudioError('bad-input', `${NEEDS_MODEL[format]}: load ${entry.baseModel || 'the model it was trained on'} first, then export “${entry.name}” again.`);
  }
  const { config, facts, source } = loaded;
  const adapter = { config: entryConfig(entry), weights: fittingWeights(entry, config, facts.name) };
  if (format === 'merged') {
    const merged = await mergedModelFiles(source, adapter);
    return { type: 'adapterExported', fileName: `${name}-merged.zip`, blob: blob(writeZip(merged.files, { date: new Date(entry.updatedAt) }), 'application/zip'), notes: merged.notes };
  }
  const out = exportAdapter(format, adapter, {
    architecture: config.architecture,
    heads: config.heads,
    kvHeads: config.kvHeads,
    baseModel: entry.baseModel || facts.name,
    name: entry.name,
    expectation: adapterExpectation(config),
  });
  if (format === 'gguf') return { type: 'adapterExported', fileName: `${name}.gguf`, blob: blob(out.files[0].bytes, 'application/octet-stream'), notes: out.notes };
  return { type: 'adapterExported', fileName: `${name}-mlx.zip`, blob: blob(writeZip(out.files, { date: new Date(entry.updatedAt) }), 'application/zip'), notes: out.notes };
}

/** The entry's run as a PEFT + TRL script: from the settings kept with it, or its unfinished run's checkpoint. */
function recipeOf(entry: AdapterEntry): { script: string; notes: string[] } {
  const stored = entry.run ?? entry.checkpoint?.settings;
  if (stored === undefined) {
    throw new LoraStudioError('bad-input', `“${entry.name}” has no training settings stored (it was imported, or trained before the studio kept them), so there is no run to write as a recipe.`);
  }
  let run: ReturnType<typeof parseRunSettings>;
  try {
    run = parseRunSettings(stored, entry.name);
  } catch {
    throw new LoraStudioError('bad-input', `The training settings stored with “${entry.name}” were written by another version of LoRA Studio; no recipe can be written from them.`);
  }
  const notes: string[] = [];
  let format = entry.run?.format as DatasetFormat | undefined;
  if (format === undefined) {
    format = /\.(txt|md|text)$/i.test(run.data.name) ? 'text' : 'prompt-completion';
    notes.push(`The data's format was not recorded; the script assumes ${format} rows. Check the masking lines before you run it.`);
  }
  if (run.model.kind !== 'hub') {
    notes.push(`The base model is ${run.model.kind === 'files' ? `the folder “${run.model.label}”` : 'the built-in moby-llama'}: set BASE_MODEL to its Hub id or a path on the GPU machine.`);
  }
  const script = writeTrainingRecipe({
    baseModel: run.model.kind === 'hub' ? run.model.id : entry.baseModel || 'BASE_MODEL_ID',
    lora: { ...run.lora, dora: (run.lora as { dora?: boolean }).dora },
    optim: { ...run.optim, optimizer: 'adamw', weightDecay: 0 },
    data: { file: run.data.name, format, seqLen: run.data.seqLen, pack: run.data.pack, validationShare: run.data.validationShare },
    baseDtype: run.baseDtype,
  });
  return { script, notes };
}
