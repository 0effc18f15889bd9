// `export`: a PEFT adapter folder out as files another tool loads.
//
//   export --model DIR --adapter DIR --format peft|gguf|mlx --out PATH
//     peft  --out is a folder: adapter_config.json + adapter_model.safetensors (checked and rewritten)
//     gguf  --out is a file:   a llama.cpp LoRA adapter (`llama-cli -m base.gguf --lora PATH`)
//     mlx   --out is a folder: adapters.safetensors + adapter_config.json (`mlx_lm.generate --adapter-path PATH`)
//     merged --out is a new or empty folder: the base with the adapter merged in (the `merge` command, src/cli/merge.ts)
//   prints {"format", "files": [...], "notes": [...]}; a note says when a setting was converted (rsLoRA's scale).
// Only the base's config.json is read for an adapter format (merged reads the weights too). The formats live in src/io/export.ts; this
// file reads and writes files: every file goes to a temporary name first and is renamed only when all are
// written, so a refusal or a failed write leaves nothing half-written.

import { existsSync, statSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { LoraStudioError } from '../io/errors';
import { EXPORT_FORMATS, exportAdapter } from '../io/export';
import { parseModelConfig } from '../model/config';
import { adapterExpectation } from '../model/lora';
import { loadAdapterDir, readText } from './files';
import { writeMergedModel } from './merge';
import { parseFlags } from './train';

const FORMATS = [...EXPORT_FORMATS, 'merged'];

export async function exportCommand(args: string[]): Promise<string> {
  const f = parseFlags(args, ['model', 'adapter', 'format', 'out']);
  const need = (name: string): string => {
    const v = f.get(name);
    if (v === undefined) throw new LoraStudioError('bad-input', `--${name} is required`);
    return String(v);
  };
  const [modelDir, adapterDir, format, out] = [need('model'), need('adapter'), need('format'), need('out')];
  if (!FORMATS.includes(format)) throw new LoraStudioError('bad-input', `--format must be one of ${FORMATS.join(', ')} (got ${format})`);
  if (format === 'merged') return writeMergedModel(modelDir, adapterDir, out);
  if (resolve(out) === resolve(adapterDir)) {
    throw new LoraStudioError('bad-input', `--out ${out} is the adapter folder itself; choose another path so the adapter is kept as it is.`);
  }
  const isDir = existsSync(out) && statSync(out).isDirectory();
  if (format === 'gguf' && isDir) throw new LoraStudioError('bad-input', `--out ${out} is a folder; a GGUF adapter is one file, e.g. ${join(out, 'adapter.gguf')}.`);
  if (format !== 'gguf' && existsSync(out) && !isDir) throw new LoraStudioError('bad-input', `--out ${out} is a file; the ${format} adapter is a folder of files.`);

  const configPath = join(modelDir, 'config.json');
  const config = parseModelConfig(await readText(configPath), configPath);
  const adapter = await loadAdapterDir(adapterDir, config);
  const exported = exportAdapter(format, adapter, {
    architecture: config.architecture,
    heads: config.heads,
    kvHeads: config.kvHeads,
    baseModel: adapter.config.baseModel || modelDir,
    name: basename(resolve(adapterDir)),
    expectation: adapterExpectation(config),
  });

  const targets = format === 'gguf' ? [{ path: out, bytes: exported.files[0].bytes }] : exported.files.map((x) => ({ path: join(out, x.name), bytes: x.bytes }));
  if (format !== 'gguf') await mkdir(out, { recursive: true });
  try {
    for (const t of targets) await writeFile(`${t.path}.tmp`, t.bytes);
  } catch (e) {
    await Promise.all(targets.map((t) => rm(`${t.path}.tmp`, { force: true })));
    throw new LoraStudioError('storage', `${out}: cannot write the ${format} files (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`, { file: out });
  }
  for (const t of targets) await rename(`${t.path}.tmp`, t.path);
  return JSON.stringify({ format, files: targets.map((t) => t.path), notes: exported.notes });
}
