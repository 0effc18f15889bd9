// A model source on the Hugging Face Hub: the repository's file list from
//   GET {endpoint}/api/models/{id}/revision/{revision}          → {"siblings": [{"rfilename": ...}, ...]}
// and each file from
//   GET {endpoint}/{id}/resolve/{revision}/{file}                (the Hub redirects large files to its CDN)
// streamed with progress. A cache (the browser's Cache API by default, none in Node) makes a second load
// need no network; downloads enter it only through `commit()`, i.e. after loadModel has validated them.
// Until then weight shards wait in a staging store beside it (not in memory), so a sharded checkpoint costs
// the heap one shard at a time; `discard()` empties staging when the load fails.
// Cached files are not revalidated: a repository updated on the Hub under the same revision keeps its
// cached copy until the site data is cleared in the browser.
//
// This file does not parse models (model_source.ts) and does not manage the studio's library or quota
// (library.ts). Errors say what the user can do: accept a license, check the id, check the connection,
// or open a local folder instead.

import { FormatError, LoraStudioError } from './errors.ts';
import { isSafeFileName, namedFiles, type ModelFiles, type OnProgress } from './model_source.ts';
import { readResponseWithProgress } from './url_source.ts';
import { parseHubRef } from './hub_ref.ts';

/** Bytes by URL. Implementations must treat a failed get as a miss. */
export interface HubCache {
  get(url: string): Promise<Uint8Array | undefined>;
  put(url: string, bytes: Uint8Array): Promise<void>;
  delete(url: string): Promise<void>;
}

export interface HubOptions {
  revision?: string;
  endpoint?: string;
  fetch?: (url: string, init?: RequestInit) => Promise<Response>;
  /** undefined: the browser's Cache API where there is one; null: no cache. */
  cache?: HubCache | null;
  /**
   * Where weight shards wait, downloaded but not yet validated, so that the heap holds one shard at a time:
   * undefined: a second Cache API store beside the cache (when there is a cache); null: none (shards are then
   * held in memory until commit, as the small files always are).
   */
  staging?: HubCache | null;
  /** A Hugging Face access token, for gated or private models. */
  token?: string;
  /** A cache write failed (e.g. the storage quota is full); the model itself loaded. */
  onCacheError?: (error: unknown) => void;
}

/** An HTTP or network failure talking to the Hub; `status` is the HTTP status, absent for network errors. */
export class HubError extends LoraStudioError {
  readonly status?: number;
  constructor(file: string, message: string, status?: number, cause?: unknown) {
    super('bad-input', message, { file, cause });
    this.name = 'HubError';
    if (status !== undefined) this.status = status;
  }
}

export const HUB_CACHE_NAME = 'lora-studio-hub';
export const HUB_STAGING_NAME = 'lora-studio-hub-staging';

/** The Cache API (window and workers), which keeps responses across reloads under the origin's quota. */
export function browserHubCache(name = HUB_CACHE_NAME): HubCache {
  const open = () => caches.open(name);
  return {
    get: async (url) => {
      try {
        const hit = await (await open()).match(url);
        return hit ? new Uint8Array(await hit.arrayBuffer()) : undefined;
      } catch {
        return undefined;
      }
    },
    put: async (url, bytes) => {
      const body = new Uint8Array(bytes); // a copy the Response may own
      await (await open()).put(url, new Response(body, { headers: { 'content-length': String(bytes.byteLength) } }));
    },
    delete: async (url) => {
      await (await open()).delete(url);
    },
  };
}

/** "org/name" (or a legacy single name), or a model's Hub URL (hub_ref.ts): what hubSource accepts. */
export function isHubId(id: string): boolean {
  return parseHubRef(id) !== null;
}

/** The files of a Hub model, named by id or URL; a revision in `options` wins over one in the URL. */
export async function hubSource(idOrUrl: string, options: HubOptions = {}): Promise<ModelFiles> {
  const ref = parseHubRef(idOrUrl);
  if (ref === null) {
    throw new LoraStudioError('bad-input', `${JSON.stringify(idOrUrl)} is not a Hugging Face model id; ids look like HuggingFaceTB/SmolLM2-135M, ` +
      'and a model URL like https://huggingface.co/HuggingFaceTB/SmolLM2-135M (optionally with /tree/REVISION).');
  }
  const id = ref.id;
  const revision = options.revision ?? ref.revision ?? 'main';
  const endpoint = (options.endpoint ?? 'https://huggingface.co').replace(/\/+$/, '');
  const doFetch = options.fetch ?? ((url: string, init?: RequestInit) => globalThis.fetch(url, init));
  const cache = options.cache === undefined ? (typeof caches === 'undefined' ? undefined : browserHubCache()) : (options.cache ?? undefined);
  const headers: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
  const rev = encodeURIComponent(revision);
  const label = revision === 'main' ? id : `${id}@${revision}`;
  const path = (name: string) => `${label}/${name}`;
  const staging = cache === undefined ? undefined
    : options.staging === undefined ? (typeof caches === 'undefined' ? undefined : browserHubCache(HUB_STAGING_NAME)) : (options.staging ?? undefined);
  // Downloads not yet validated: small files in memory, weight shards in the staging store (by URL).
  const pending = new Map<string, Uint8Array>();
  const staged = new Set<string>();

  const statusError = (status: number, name: string | undefined): HubError => {
    const what = name === undefined ? `${label}` : path(name);
    if (status === 401 || status === 403) {
      return new HubError(
        what,
        `${what}: the Hub refused access (HTTP ${status}). This is a gated or private model: accept its license on huggingface.co and ` +
          'load it with an access token, or download it and open the folder. (Check the id too: the Hub also answers 401 for ids that do not exist.)',
        status,
      );
    }
    if (status === 404) {
      return new HubError(
        what,
        name === undefined
          ? `${label}: no such model on ${endpoint} (HTTP 404): check the id (e.g. HuggingFaceTB/SmolLM2-135M) and the revision "${revision}".`
          : `${what}: not found on the Hub (HTTP 404): the repository ${id} has no ${name} at revision "${revision}".`,
        status,
      );
    }
    return new HubError(what, `${what}: the Hub answered HTTP ${status}: try again later, or download the model and open it as a local folder.`, status);
  };

  /** GET url (name undefined: the file list), from the cache or pending downloads when there. */
  const download = async (url: string, name: string | undefined, onProgress?: OnProgress): Promise<Uint8Array> => {
    const what = name === undefined ? label : path(name);
    const file = name ?? 'file list';
    const cached = pending.get(url) ?? (staged.has(url) ? await staging?.get(url).catch(() => undefined) : undefined) ??
      (await cache?.get(url).catch(() => undefined));
    if (cached !== undefined) {
      onProgress?.({ file, loaded: cached.byteLength, total: cached.byteLength, percent: 100 });
      return cached;
    }
    const offline = (e: unknown): never => {
      throw new HubError(
        what,
        `${what}: could not download ${name ?? 'the file list'} from ${endpoint} (${(e as Error).message}): check your internet connection, ` +
          'or download the model and open it as a local folder.',
        undefined,
        e,
      );
    };
    let res: Response;
    try {
      res = await doFetch(url, { headers });
    } catch (e) {
      return offline(e);
    }
    if (!res.ok) throw statusError(res.status, name);
    let bytes: Uint8Array, total: number | undefined;
    try {
      ({ bytes, total } = await readResponseWithProgress(res, file, onProgress));
    } catch (e) {
      return offline(e);
    }
    if (total !== undefined && bytes.byteLength !== total) {
      throw new HubError(what, `${what}: the download stopped after ${bytes.byteLength} of ${total} bytes: check your connection and try again.`);
    }
    if (total === undefined) onProgress?.({ file, loaded: bytes.byteLength, total: bytes.byteLength, percent: 100 });
    if (staging !== undefined && name?.endsWith('.safetensors')) {
      try {
        await staging.put(url, bytes);
        staged.add(url);
        return bytes; // the caller lets go of it; commit() moves it from staging to the cache
      } catch (e) {
        options.onCacheError?.(e); // e.g. the quota is full: keep it in memory as before
      }
    }
    pending.set(url, bytes);
    return bytes;
  };

  const discardStaged = async (): Promise<void> => {
    for (const url of staged) await staging!.delete(url).catch(() => undefined);
    staged.clear();
  };

  // The file list, so that has() and list() need no request per file.
  const listUrl = `${endpoint}/api/models/${id}/revision/${rev}`;
  const listing = await download(listUrl, undefined);
  const names = parseListing(listing, label);
  const files = namedFiles(label, names);

  return {
    ...files,
    read: async (name, onProgress) => {
      if (!files.has(name)) throw new HubError(path(name), `${path(name)}: the repository ${id} has no such file at revision "${revision}".`, 404);
      const url = `${endpoint}/${id}/resolve/${rev}/${name.split('/').map(encodeURIComponent).join('/')}`;
      return download(url, name, onProgress);
    },
    commit: async () => {
      if (cache === undefined) return pending.clear();
      try {
        for (const [url, bytes] of pending) await cache.put(url, bytes);
        // One shard in memory at a time: read it out of staging, into the cache, then drop it from staging.
        for (const url of staged) {
          const bytes = await staging!.get(url);
          if (bytes !== undefined) await cache.put(url, bytes);
        }
      } catch (e) {
        options.onCacheError?.(e);
      }
      await discardStaged();
      pending.clear();
    },
    discard: async () => {
      await discardStaged();
      pending.clear();
    },
  };
}

function parseListing(bytes: Uint8Array, label: string): string[] {
  const file = `${label} (file list)`;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new FormatError(file, `${file}: the Hub's answer is not JSON (${(e as Error).message}); is the endpoint a Hugging Face Hub?`, e);
  }
  const siblings = (json as { siblings?: unknown })?.siblings;
  if (!Array.isArray(siblings)) throw new FormatError(file, `${file}: the Hub's answer has no "siblings" list of files; is the endpoint a Hugging Face Hub?`);
  const names: string[] = [];
  for (const s of siblings) {
    const name = (s as { rfilename?: unknown })?.rfilename;
    if (typeof name === 'string' && isSafeFileName(name)) names.push(name);
  }
  return names.sort();
}
