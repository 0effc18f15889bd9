// `merge` (and `export --format merged`): a PEFT adapter merged into its base, written as a Hugging Face
// model folder that this project, transformers and the tools built on them load as a model.
//
//   merge --model DIR --adapter DIR --out DIR
//     prints {"format": "merged", "files": [...], "notes": [...]}
//
// --out must be a new or an empty folder. Unlike `export`'s adapter folders, where two files are replaced,
// a model folder is read as a whole: a leftover shard index, tokenizer or weights file from another model
// beside the new files would load as something else, so a folder with files in it is refused. Everything is
// written into a temporary folder beside --out and renamed to --out once complete, so a refusal or a failed
// write leaves nothing half-written. The merge itself is src/model/merge.ts.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { LoraStudioError } from '../io/errors';
import { mergedModelFiles } from '../model/merge';
import { parseModelConfig } from '../model/config';
import { loadAdapterDir, nodeFolderSource, readText } from './files';
import { parseFlags } from './train';

export async function mergeCommand(args: string[]): Promise<string> {
  const f = parseFlags(args, ['model', 'adapter', 'out']);
  const need = (name: string): string => {
    const v = f.get(name);
    if (v === undefined) throw new LoraStudioError('bad-input', `--${name} is required`);
    return String(v);
  };
  return writeMergedModel(need('model'), need('adapter'), need('out'));
}

/** The merge of `adapterDir` into the model in `modelDir`, written to the new or empty folder `out`. */
export async function writeMergedModel(modelDir: string, adapterDir: string, out: string): Promise<string> {
  checkMergedOut(out, modelDir, adapterDir);
  const configPath = join(modelDir, 'config.json');
  const config = parseModelConfig(await readText(configPath), configPath);
  const adapter = await loadAdapterDir(adapterDir, config);
  const merged = await mergedModelFiles(nodeFolderSource(modelDir), adapter);

  const parent = dirname(resolve(out));
  let tmp: string | undefined;
  try {
    await mkdir(parent, { recursive: true });
    tmp = await mkdtemp(join(parent, `.${basename(resolve(out))}.partial-`));
    for (const file of merged.files) await writeFile(join(tmp, file.name), file.bytes);
    if (existsSync(out)) await rmdir(out); // empty (checked above): rename cannot replace a folder on every system
    await rename(tmp, out);
  } catch (e) {
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new LoraStudioError('storage', `--out ${out}: cannot write the merged model there (${code}); nothing was written. Choose another --out.`, { file: out });
  }
  return JSON.stringify({ format: 'merged', files: merged.files.map((x) => join(out, x.name)), notes: merged.notes });
}

/** --out: a path to create, or an empty folder; never a file, a folder with files, or one of the inputs. */
function checkMergedOut(out: string, modelDir: string, adapterDir: string): void {
  for (const [what, dir] of [['model', modelDir], ['adapter', adapterDir]]) {
    if (resolve(out) === resolve(dir)) throw new LoraStudioError('bad-input', `--out ${out} is the ${what} folder itself; choose a new folder so the ${what} is kept as it is.`);
  }
  if (!existsSync(out)) return;
  if (!statSync(out).isDirectory()) throw new LoraStudioError('bad-input', `--out ${out} is a file; a merged model is a folder of files: give a new or empty folder.`);
  if (readdirSync(out).length > 0) {
    throw new LoraStudioError('bad-input', `--out ${out} already holds files; a merged model is a whole folder, and leftover files would load with it: give a new or empty folder.`);
  }
}
