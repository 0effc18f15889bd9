// A Hub model as a person pastes it (src/io/hub_ref.ts): an id, or the model page's URL with the revision
// its /tree/, /resolve/ or /blob/ part names; hubSource, isHubId (the CLI's --model) and the studio's model
// identity all read it alike.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadModelArg } from '../../src/cli/files';
import { hubSource, isHubId } from '../../src/io/hub';
import { parseHubRef } from '../../src/io/hub_ref';
import { DEFAULT_MODEL, modelIdentity } from '../../src/worker/identity';

describe('Hub references', () => {
  it('reads ids and model URLs, with the revision a URL names', () => {
    const cases: [string, ReturnType<typeof parseHubRef>][] = [
      ['HuggingFaceTB/SmolLM2-135M', { id: 'HuggingFaceTB/SmolLM2-135M' }],
      ['  gpt2 ', { id: 'gpt2' }],
      ['https://huggingface.co/HuggingFaceTB/SmolLM2-135M', { id: 'HuggingFaceTB/SmolLM2-135M' }],
      ['https://huggingface.co/HuggingFaceTB/SmolLM2-135M/', { id: 'HuggingFaceTB/SmolLM2-135M' }],
      ['https://huggingface.co/Qwen/Qwen2.5-0.5B/tree/main', { id: 'Qwen/Qwen2.5-0.5B', revision: 'main' }],
      ['https://huggingface.co/Qwen/Qwen2.5-0.5B/tree/v1.0/subfolder', { id: 'Qwen/Qwen2.5-0.5B', revision: 'v1.0' }],
      ['https://huggingface.co/Qwen/Qwen2.5-0.5B/tree/refs%2Fpr%2F1', { id: 'Qwen/Qwen2.5-0.5B', revision: 'refs/pr/1' }],
      ['https://huggingface.co/Qwen/Qwen2.5-0.5B/resolve/abc123/config.json', { id: 'Qwen/Qwen2.5-0.5B', revision: 'abc123' }],
      ['https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json?download=true', { id: 'Qwen/Qwen2.5-0.5B', revision: 'main' }],
      ['https://hf.co/gpt2', { id: 'gpt2' }],
      ['https://huggingface.co/gpt2/tree/main', { id: 'gpt2', revision: 'main' }],
    ];
    for (const [text, want] of cases) {
      expect(parseHubRef(text), text).toEqual(want);
      expect(isHubId(text), text).toBe(true);
    }
    // Not a model: another site, a dataset or Space, a path, a deeper path with no /tree/.
    for (const text of ['https://example.com/org/name', 'https://huggingface.co/datasets/org/data', 'https://huggingface.co/spaces/org/app',
      'https://huggingface.co/', 'https://huggingface.co/a/b/c', 'ftp://huggingface.co/org/name', '/abs/path', '../etc/passwd', '']) {
      expect(parseHubRef(text), text).toBeNull();
      expect(isHubId(text), text).toBe(false);
    }
  });

  it('downloads from the id and revision of a pasted URL; a revision given apart wins', async () => {
    const seen: string[] = [];
    const fetchLog = async (url: string) => {
      seen.push(url);
      return new Response(JSON.stringify({ siblings: [{ rfilename: 'config.json' }] }));
    };
    const src = await hubSource('https://huggingface.co/Qwen/Qwen2.5-0.5B/tree/v2', { fetch: fetchLog, cache: null });
    expect(src.path('config.json')).toBe('Qwen/Qwen2.5-0.5B@v2/config.json');
    await hubSource('https://huggingface.co/Qwen/Qwen2.5-0.5B/tree/v2', { fetch: fetchLog, revision: 'v3', cache: null });
    await hubSource('https://huggingface.co/Qwen/Qwen2.5-0.5B', { fetch: fetchLog, cache: null });
    expect(seen).toEqual([
      'https://huggingface.co/api/models/Qwen/Qwen2.5-0.5B/revision/v2',
      'https://huggingface.co/api/models/Qwen/Qwen2.5-0.5B/revision/v3',
      'https://huggingface.co/api/models/Qwen/Qwen2.5-0.5B/revision/main',
    ]);
  });

  it('gives a pasted URL the identity of its id, so a run resumes on the same model', () => {
    expect(modelIdentity({ kind: 'hub', id: 'https://huggingface.co/org/name' })).toEqual({ kind: 'hub', id: 'org/name' });
    expect(modelIdentity({ kind: 'hub', id: 'https://huggingface.co/org/name/tree/dev' })).toEqual({ kind: 'hub', id: 'org/name', revision: 'dev' });
    expect(modelIdentity({ kind: 'hub', id: 'https://huggingface.co/org/name/tree/dev', revision: ' v1 ' })).toEqual({ kind: 'hub', id: 'org/name', revision: 'v1' });
    expect(modelIdentity({ kind: 'hub', id: ' org/name ' })).toEqual({ kind: 'hub', id: 'org/name' });
  });
});

describe('the CLI’s --model', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('loads a model named by its Hub URL, from the id and revision the URL names', async () => {
    const dir = join(__dirname, '../../public', DEFAULT_MODEL.dir);
    const seen: string[] = [];
    vi.stubGlobal('fetch', async (url: string) => {
      seen.push(url);
      if (url.includes('/api/models/')) return new Response(JSON.stringify({ siblings: DEFAULT_MODEL.files.map((rfilename) => ({ rfilename })) }));
      const bytes = readFileSync(join(dir, url.split('/').pop()!));
      return new Response(new Uint8Array(bytes), { headers: { 'content-length': String(bytes.byteLength) } });
    });
    const lines: string[] = [];
    const loaded = await loadModelArg('https://huggingface.co/whalers/moby-llama/tree/v1', (l) => lines.push(l));
    expect(loaded.config.layers).toBeGreaterThan(0);
    expect(loaded.tokenizer).toBeDefined();
    expect(seen[0]).toBe('https://huggingface.co/api/models/whalers/moby-llama/revision/v1');
    expect(seen.slice(1).every((u) => u.startsWith('https://huggingface.co/whalers/moby-llama/resolve/v1/'))).toBe(true);
  });
});
