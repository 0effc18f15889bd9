// The Library panel's exports beyond PEFT files (GGUF, MLX, merged model, training recipe): one request to the
// engine worker, which builds the file (worker/exports.ts) and hands back a Blob, saved here as a download.
// The panel keeps the outcome beside the entry; nothing here is store state (the library slice holds the list).

import type { StudioExportFormat } from '../worker/protocol';
import { engine, toFailure } from './state/shared';

export const EXPORT_CHOICES: { format: StudioExportFormat; label: string; what: string }[] = [
  { format: 'gguf', label: 'GGUF adapter (llama.cpp)', what: 'a GGUF adapter' },
  { format: 'mlx', label: 'MLX-LM folder (.zip)', what: 'an MLX-LM adapter folder' },
  { format: 'merged', label: 'Merged model (.zip)', what: 'a merged model' },
  { format: 'recipe', label: 'Training recipe (.py)', what: 'a PEFT + TRL training recipe' },
];

/** Hands a Blob to the browser as a download, through a short-lived object URL. */
export function saveBlob(fileName: string, blob: Blob): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = fileName;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has started once click() returns; the delay only covers browsers that read the URL late.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Exports library entry `id` as `format` and downloads it: what happened, in words, for the panel to show. */
export async function exportFromLibrary(id: string, format: StudioExportFormat): Promise<{ ok: boolean; text: string }> {
  try {
    const res = await engine().request({ type: 'exportAdapter', adapterId: id, format });
    saveBlob(res.fileName, res.blob);
    return { ok: true, text: [`Downloaded ${res.fileName}.`, ...res.notes].join(' ') };
  } catch (err) {
    return { ok: false, text: toFailure(err).message };
  }
}
