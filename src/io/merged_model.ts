// The folder of a merged model (model/merge.ts computes its weights): what a Hugging Face model folder
// holds, laid out so that transformers' from_pretrained and this project's own loader read it as a base.
//
//   config.json               the base's, byte for byte (the weights keep its dtype, so torch_dtype holds)
//   model.safetensors         every tensor, merged or copied as stored; one file even when the base was sharded
//   generation_config.json    the base's, when it had one
//   tokenizer files           each one the base had, byte for byte (TOKENIZER_FILES)
//
// This file reads the files it copies from the base's source and writes bytes; it does not merge, and it
// does not write anything to a disk or a zip (the CLI and the studio do).

import { LoraStudioError } from './errors.ts';
import type { ModelFiles, OnProgress } from './model_source.ts';
import { writeSafetensorsRaw, type RawTensorToWrite } from './safetensors.ts';

/** Files copied from the base when it has them: its tokenizer in every form transformers reads, and its generation defaults. */
export const COPIED_FILES = [
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'tokenizer.model',
] as const;

export const MERGED_WEIGHTS_FILE = 'model.safetensors';

export interface FolderFile {
  name: string;
  bytes: Uint8Array;
}

/** config.json, model.safetensors of `tensors`, and every COPIED_FILES entry the base has, read from `base`. */
export async function writeMergedModelFolder(base: ModelFiles, tensors: RawTensorToWrite[], onProgress?: OnProgress): Promise<FolderFile[]> {
  if (tensors.length === 0) throw new LoraStudioError('bad-input', `${base.label}: no weights to write.`);
  const files: FolderFile[] = [
    { name: 'config.json', bytes: await base.read('config.json', onProgress) },
    // PEFT and transformers write this metadata; some loaders check it before trusting the file.
    { name: MERGED_WEIGHTS_FILE, bytes: writeSafetensorsRaw(tensors, { format: 'pt' }) },
  ];
  for (const name of COPIED_FILES) {
    if (base.has(name)) files.push({ name, bytes: await base.read(name, onProgress) });
  }
  return files;
}
