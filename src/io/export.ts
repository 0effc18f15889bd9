// One trained adapter out as the files another tool reads: PEFT's (peft.ts), llama.cpp's GGUF (gguf.ts) or
// mlx-lm's folder (mlx.ts). This file checks the adapter against its base once, for every format, and picks
// the writer; it does not read or write files (the CLI and the studio do) and does not merge (merged export
// is another module's).

import { LoraStudioError } from './errors.ts';
import { writeGgufAdapter } from './gguf.ts';
import { MLX_CONFIG_FILE, MLX_WEIGHTS_FILE, writeMlxAdapter } from './mlx.ts';
import { adapterConfigToJson, readAdapter, writeAdapter, type AdapterConfig } from './peft.ts';
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE } from './peft_files.ts';
import type { ExportableAdapter, ExportBase } from './export_types.ts';

export type { ExportableAdapter, ExportBase };

export const EXPORT_FORMATS = ['peft', 'gguf', 'mlx'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportedAdapter {
  files: { name: string; bytes: Uint8Array }[];
  /** What the user should know about the conversion (an rsLoRA scale rewritten, say). */
  notes: string[];
}

/**
 * The files of `adapter` in `format`. Refuses, with a typed error and before anything is produced, a format
 * that is not one of EXPORT_FORMATS, an adapter that does not fit the base (the PEFT writer's checks: every
 * layer and target present, shapes as the base's), and one the format cannot hold (a DoRA adapter in GGUF
 * or MLX: gguf.ts and mlx.ts say why). PEFT's files hold DoRA: use_dora and the magnitude vectors.
 */
export function exportAdapter(format: string, adapter: ExportableAdapter, base: ExportBase): ExportedAdapter {
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) {
    throw new LoraStudioError('bad-input', `Unknown export format "${format}"; choose one of ${EXPORT_FORMATS.join(', ')}.`);
  }
  const peft = writeAdapter(adapter.config, adapter.weights, base.expectation);
  const text = (s: string) => new TextEncoder().encode(s);
  switch (format as ExportFormat) {
    case 'peft':
      return {
        files: [
          { name: PEFT_CONFIG_FILE, bytes: text(peft.configJson) },
          { name: PEFT_WEIGHTS_FILE, bytes: peft.weights },
        ],
        notes: [],
      };
    case 'gguf': {
      const { bytes, notes } = writeGgufAdapter(adapter, base);
      return { files: [{ name: 'adapter.gguf', bytes }], notes };
    }
    case 'mlx': {
      const { configJson, weights, notes } = writeMlxAdapter(adapter, base);
      return {
        files: [
          { name: MLX_CONFIG_FILE, bytes: text(configJson) },
          { name: MLX_WEIGHTS_FILE, bytes: weights },
        ],
        notes,
      };
    }
  }
}

/**
 * exportAdapter for an adapter kept as PEFT safetensors bytes (a library entry, or an import): the bytes are read
 * against the base first, so a stored adapter of another model is refused with the same errors as an import.
 */
export function exportStoredAdapter(format: string, stored: { config: AdapterConfig; weights: Uint8Array }, base: ExportBase): ExportedAdapter {
  const configText = JSON.stringify(adapterConfigToJson(stored.config));
  const { weights } = readAdapter(configText, stored.weights, base.expectation);
  return exportAdapter(format, { config: stored.config, weights }, base);
}
