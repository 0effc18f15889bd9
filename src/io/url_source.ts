// A model source over plain URLs: the embedded default model, fetched from the studio's own server with
// progress; and reading any fetched response's body with progress, which the Hub source (hub.ts) shares.
// It does not parse or cache what it fetches (model_source.ts loads; hub.ts caches Hub downloads).

import { LoraStudioError } from './errors.ts';
import { namedFiles, readStreamWithProgress, type ModelFiles, type OnProgress } from './model_source.ts';

/**
 * A response's body, with progress per chunk. The total is the content-length, except under a
 * content-encoding, where that counts compressed bytes and can neither check nor scale progress.
 */
export async function readResponseWithProgress(res: Response, file: string, onProgress?: OnProgress): Promise<{ bytes: Uint8Array; total: number | undefined }> {
  const encoding = res.headers.get('content-encoding');
  const length = Number(res.headers.get('content-length') ?? NaN);
  const total = (!encoding || encoding === 'identity') && Number.isSafeInteger(length) && length >= 0 ? length : undefined;
  const bytes = res.body ? await readStreamWithProgress(res.body, file, total, onProgress) : new Uint8Array(await res.arrayBuffer());
  return { bytes, total };
}

/** The files `names` under `baseUrl` (the studio's own server), labelled `label` in messages. */
export function urlSource(baseUrl: string, names: string[], label: string): ModelFiles {
  const files = namedFiles(label, names);
  const path = files.path;
  return {
    ...files,
    read: async (name, onProgress) => {
      const url = new URL(name, baseUrl).href;
      let res: Response;
      try {
        res = await fetch(url);
      } catch (e) {
        throw new LoraStudioError('bad-input', `${path(name)}: could not fetch it from the studio's server (${(e as Error).message}); reload the page.`, { file: path(name), cause: e });
      }
      if (!res.ok) throw new LoraStudioError('bad-input', `${path(name)}: the studio's server answered HTTP ${res.status}; reload the page.`, { file: path(name) });
      return (await readResponseWithProgress(res, name, onProgress)).bytes;
    },
  };
}
