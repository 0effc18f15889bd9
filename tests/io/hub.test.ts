// The Hub code path against a local HTTP server that serves tiny repositories in the Hub's URL layout
//   /api/models/{org}/{name}/revision/main   → {"siblings": [{"rfilename": ...}]}
//   /{org}/{name}/resolve/main/{file}        → the file's bytes, in several chunks
// Loading through hubSource must give byte-identical weights to loading the same files as a folder (in
// memory and from disk through the CLI's source), sharded or not; progress must reach 100%; 401, 404 and
// a dead server must give errors that say what to do; a warm cache must make the second load request-free;
// and a model that fails to load must leave nothing in the cache.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { hubSource, HubError, isHubId, type HubCache } from '../../src/io/hub';
import { filesFromFileList, folderSource, type ReadProgress } from '../../src/io/model_source';
import { LoraStudioError } from '../../src/io/errors';
import { loadModelDir } from '../../src/cli/files';
import { loadModel, type LoadedModel } from '../../src/model/load';
import { tinyRepo } from '../fixtures/tokenizer/tiny_repo';

const repos = new Map<string, Map<string, Uint8Array>>([
  ['tiny/llama', tinyRepo()],
  ['tiny/llama-sharded', tinyRepo({ sharded: true })],
  ['gated/llama', tinyRepo()],
  ['broken/llama', new Map([...tinyRepo(), ['config.json', new TextEncoder().encode('{"architectures": ["GPT2LMHeadModel"]}')]])],
  ['missing/tokenizer', tinyRepo()],
]);
const PRIVATE = 'private/llama';
const requests: string[] = [];
let server: Server;
let endpoint: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = decodeURIComponent(req.url ?? '');
    requests.push(url);
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/main$/.exec(url);
    const file = /^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(url);
    const repoId = api?.[1] ?? file?.[1] ?? '';
    if (repoId === PRIVATE) return void res.writeHead(401).end('{"error": "Repository not found"}');
    const repo = repos.get(repoId);
    if (repo === undefined) return void res.writeHead(404).end('{"error": "Repository not found"}');
    if (api) {
      const siblings = [...repo.keys()].map((rfilename) => ({ rfilename }));
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: repoId, siblings }));
    }
    if (repoId === 'gated/llama') return void res.writeHead(403).end('{"error": "Access to model gated/llama is restricted"}');
    const name = file![2];
    const bytes = repoId === 'missing/tokenizer' && name === 'tokenizer.json' ? undefined : repo.get(name);
    if (bytes === undefined) return void res.writeHead(404).end('Entry not found');
    // Three chunks, so progress has more than one step.
    res.writeHead(200, { 'content-length': String(bytes.byteLength), 'content-type': 'application/octet-stream' });
    const third = Math.ceil(bytes.byteLength / 3);
    res.write(bytes.subarray(0, third));
    res.write(bytes.subarray(third, 2 * third));
    res.end(bytes.subarray(2 * third));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function memoryCache(): HubCache & { store: Map<string, Uint8Array> } {
  const store = new Map<string, Uint8Array>();
  return { store, get: async (url) => store.get(url), put: async (url, bytes) => void store.set(url, bytes.slice()), delete: async (url) => void store.delete(url) };
}

function expectSameModel(a: LoadedModel, b: LoadedModel): void {
  expect(a.config).toEqual(b.config);
  expect([...a.weights.keys()].sort()).toEqual([...b.weights.keys()].sort());
  for (const [name, w] of a.weights) {
    const v = b.weights.get(name)!;
    expect(Buffer.from(w.buffer, w.byteOffset, w.byteLength).equals(Buffer.from(v.buffer, v.byteOffset, v.byteLength)), name).toBe(true);
  }
  expect(a.tokenizer?.encode('Hello world, 123!')).toEqual(b.tokenizer?.encode('Hello world, 123!'));
}

async function caught(p: Promise<unknown>): Promise<LoraStudioError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(LoraStudioError);
    return e as LoraStudioError;
  }
  throw new Error('expected a rejection');
}

describe('hubSource', () => {
  it('loads the same weights and tokenizer as the folder, with progress to 100%', async () => {
    const events: ReadProgress[] = [];
    const viaHub = await loadModel(await hubSource('tiny/llama', { endpoint, cache: null }), { onProgress: (p) => events.push(p) });
    const viaFolder = await loadModel(folderSource(repos.get('tiny/llama')!, 'tiny-llama'));
    expectSameModel(viaHub, viaFolder);
    expect(viaHub.files).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);

    const weights = events.filter((e) => e.file === 'model.safetensors');
    expect(weights.length).toBeGreaterThan(1);
    expect(weights.map((e) => e.percent)).toEqual([...weights.map((e) => e.percent!)].sort((x, y) => x - y));
    const last = weights[weights.length - 1];
    expect(last).toMatchObject({ loaded: repos.get('tiny/llama')!.get('model.safetensors')!.byteLength, percent: 100 });
    expect(last.total).toBe(last.loaded);
    for (const file of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) {
      expect(events.filter((e) => e.file === file).pop()?.percent, file).toBe(100);
    }
  });

  it('loads a sharded checkpoint through model.safetensors.index.json, identical to the single file', async () => {
    const sharded = await loadModel(await hubSource('tiny/llama-sharded', { endpoint, cache: null }));
    expect(sharded.files).toContain('model-00002-of-00002.safetensors');
    expectSameModel(sharded, await loadModel(folderSource(repos.get('tiny/llama')!)));
    expectSameModel(sharded, await loadModel(folderSource(repos.get('tiny/llama-sharded')!)));
  });

  it('matches the CLI loading the same files from disk', async () => {
    for (const id of ['tiny/llama', 'tiny/llama-sharded']) {
      const dir = mkdtempSync(join(tmpdir(), 'lora-hub-'));
      for (const [name, bytes] of repos.get(id)!) {
        mkdirSync(dirname(join(dir, name)), { recursive: true });
        writeFileSync(join(dir, name), bytes);
      }
      expectSameModel(await loadModelDir(dir), await loadModel(await hubSource(id, { endpoint, cache: null })));
    }
  });

  it('a second load with a warm cache makes no request', async () => {
    const cache = memoryCache();
    const first = await loadModel(await hubSource('tiny/llama-sharded', { endpoint, cache }));
    expect(cache.store.size).toBe(7); // the file list, config, index, two shards, tokenizer.json, tokenizer_config.json
    const before = requests.length;
    const events: ReadProgress[] = [];
    const second = await loadModel(await hubSource('tiny/llama-sharded', { endpoint, cache }), { onProgress: (p) => events.push(p) });
    expect(requests.length - before).toBe(0);
    expectSameModel(first, second);
    expect(events.every((e) => e.percent === 100)).toBe(true);
  });

  it('weight shards wait in staging, not in memory, until the model has loaded; then move to the cache', async () => {
    const cache = memoryCache();
    const staging = memoryCache();
    const stagedDuringLoad: number[] = [];
    const put = staging.put;
    staging.put = async (url, bytes) => {
      await put(url, bytes);
      stagedDuringLoad.push(staging.store.size);
    };
    const model = await loadModel(await hubSource('tiny/llama-sharded', { endpoint, cache, staging }));
    expect(stagedDuringLoad).toEqual([1, 2]); // both shards went to staging as they arrived
    expect(staging.store.size, 'staging emptied by commit').toBe(0);
    expect(cache.store.size).toBe(7);
    expect([...cache.store.keys()].filter((u) => u.endsWith('.safetensors'))).toHaveLength(2);
    const before = requests.length;
    expectSameModel(model, await loadModel(await hubSource('tiny/llama-sharded', { endpoint, cache, staging })));
    expect(requests.length - before).toBe(0);
  });

  it('a model that fails to load leaves nothing in the cache', async () => {
    const cache = memoryCache();
    const e = await caught(loadModel(await hubSource('broken/llama', { endpoint, cache })));
    expect(e.message).toMatch(/broken\/llama\/config\.json: architecture GPT2LMHeadModel is not supported/);
    expect(cache.store.size).toBe(0);
  });

  it('401 and 403 say the model is gated or private and what to do', async () => {
    const gated = await caught(loadModel(await hubSource('gated/llama', { endpoint, cache: null })));
    expect(gated).toBeInstanceOf(HubError);
    expect((gated as HubError).status).toBe(403);
    expect(gated.message).toMatch(/^gated\/llama\/config\.json: the Hub refused access \(HTTP 403\)/);
    expect(gated.message).toMatch(/gated or private model: accept its license on huggingface\.co and/);
    const priv = await caught(hubSource(PRIVATE, { endpoint, cache: null }));
    expect((priv as HubError).status).toBe(401);
    expect(priv.message).toMatch(/^private\/llama: .*gated or private model: accept its license on huggingface\.co/);
  });

  it('404 names the id, and the file when the repository exists', async () => {
    const noRepo = await caught(hubSource('nobody/nothing', { endpoint, cache: null }));
    expect(noRepo.message).toMatch(/^nobody\/nothing: no such model on http:\/\/127\.0\.0\.1:\d+ \(HTTP 404\): check the id/);
    const noFile = await caught(loadModel(await hubSource('missing/tokenizer', { endpoint, cache: null })));
    expect(noFile.message).toMatch(/^missing\/tokenizer\/tokenizer\.json: not found on the Hub \(HTTP 404\): the repository missing\/tokenizer has no tokenizer\.json/);
    expect(noFile.file).toBe('missing/tokenizer/tokenizer.json');
  });

  it('a network failure says to check the connection or use a local folder', async () => {
    const dead = createServer();
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((resolve) => dead.close(() => resolve()));
    const e = await caught(hubSource('tiny/llama', { endpoint: `http://127.0.0.1:${port}`, cache: null }));
    expect(e.message).toMatch(/^tiny\/llama: could not download the file list from http:\/\/127\.0\.0\.1:\d+ .*check your internet connection, or download the model and open it as a local folder/);
  });

  it('a download cut short is an error, not a truncated file', async () => {
    const bytes = repos.get('tiny/llama')!;
    const fetchShort = async (url: string) => {
      if (url.includes('/api/models/')) return new Response(JSON.stringify({ siblings: [...bytes.keys()].map((rfilename) => ({ rfilename })) }));
      const name = url.split('/resolve/main/')[1];
      const full = bytes.get(name)!;
      return new Response(full.slice(0, full.byteLength - 1), { headers: { 'content-length': String(full.byteLength) } });
    };
    const e = await caught(loadModel(await hubSource('tiny/llama', { fetch: fetchShort, cache: null })));
    expect(e.message).toMatch(/^tiny\/llama\/config\.json: the download stopped after \d+ of \d+ bytes/);
  });

  it('builds Hub URLs from the endpoint, id, revision and file', async () => {
    const seen: string[] = [];
    const fetchLog = async (url: string) => {
      seen.push(url);
      return new Response(JSON.stringify({ siblings: [{ rfilename: 'config.json' }, { rfilename: '../escape' }, { rfilename: 'sub/dir file.json' }] }));
    };
    const src = await hubSource('Qwen/Qwen2.5-0.5B', { fetch: fetchLog, revision: 'refs/pr/1', cache: null });
    expect(src.list()).toEqual(['config.json', 'sub/dir file.json']); // unsafe names from the listing are dropped
    await src.read('sub/dir file.json');
    expect(seen).toEqual([
      'https://huggingface.co/api/models/Qwen/Qwen2.5-0.5B/revision/refs%2Fpr%2F1',
      'https://huggingface.co/Qwen/Qwen2.5-0.5B/resolve/refs%2Fpr%2F1/sub/dir%20file.json',
    ]);
    expect(src.path('config.json')).toBe('Qwen/Qwen2.5-0.5B@refs/pr/1/config.json');
  });

  it('accepts Hub ids and refuses paths', async () => {
    for (const id of ['HuggingFaceTB/SmolLM2-135M', 'Qwen/Qwen2.5-0.5B', 'TinyLlama/TinyLlama-1.1B-Chat-v1.0', 'gpt2']) expect(isHubId(id), id).toBe(true);
    for (const id of ['../etc/passwd', '/abs/path', 'a/b/c', 'org/..', 'org/na me', '']) expect(isHubId(id), id).toBe(false);
    await expect(hubSource('a/b/c', { endpoint, cache: null })).rejects.toThrow(/is not a Hugging Face model id; ids look like HuggingFaceTB\/SmolLM2-135M/);
  });
});

describe('folderSource', () => {
  it('reads Blobs and Files with progress, and strips the picked folder from webkitRelativePath', async () => {
    const repo = repos.get('tiny/llama')!;
    const files = [...repo].map(([name, bytes]) => {
      const f = new File([bytes.slice()], name);
      Object.defineProperty(f, 'webkitRelativePath', { value: `SmolLM2-135M/${name}` });
      return f;
    });
    files.push(Object.defineProperty(new File(['x'], 'HEAD'), 'webkitRelativePath', { value: 'SmolLM2-135M/.git/HEAD' }));
    const map = filesFromFileList(files);
    expect([...map.keys()].sort()).toEqual([...repo.keys()].sort());
    const events: ReadProgress[] = [];
    const viaBlobs = await loadModel(folderSource(map, 'SmolLM2-135M'), { onProgress: (p) => events.push(p) });
    expectSameModel(viaBlobs, await loadModel(folderSource(repo)));
    expect(events.filter((e) => e.file === 'model.safetensors').pop()?.percent).toBe(100);
  });
});
