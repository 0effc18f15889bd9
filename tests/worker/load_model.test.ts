// Loading a model in the studio's session streams its weights onto a new device while the old model stays
// loaded: a sharded model whose second shard was cut short is refused with the loader's message, its device is
// destroyed and the old model answers as before (same logits); the same model, sharded and whole, then loads in
// its place (the old device goes only then) and gives the same logits, since it has the same weights.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/gpu';
import { createNodeGpu } from '../../src/gpu/node';
import { AdapterLibrary } from '../../src/io/library';
import { parseSafetensors, writeSafetensorsRaw } from '../../src/io/safetensors';
import { DEFAULT_MODEL, Session } from '../../src/worker/session';
import { memoryStore } from './memory_store';

const modelDir = join(fileURLToPath(new URL('../..', import.meta.url)), 'public', DEFAULT_MODEL.dir);
const read = (path: string) => new Uint8Array(readFileSync(join(modelDir, path)));
const SHARDS = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];

/** moby-llama's files; `sharded`: its weights in three shards with an index, the second cut short by `cut` bytes. */
function files(sharded = false, cut = 0): { path: string; blob: Blob }[] {
  const out = new Map<string, Uint8Array>();
  for (const path of DEFAULT_MODEL.files) if (!sharded || path !== 'model.safetensors') out.set(path, read(path));
  if (sharded) {
    const st = parseSafetensors(read('model.safetensors'));
    const names = [...st.tensors.keys()];
    const weight_map: Record<string, string> = {};
    SHARDS.forEach((shard, i) => {
      const mine = names.filter((_, k) => Math.floor((3 * k) / names.length) === i);
      for (const n of mine) weight_map[n] = shard;
      const bytes = writeSafetensorsRaw(mine.map((name) => ({ name, ...st.tensors.get(name)!, bytes: st.bytes(name) })));
      out.set(shard, i === 1 ? bytes.subarray(0, bytes.byteLength - cut) : bytes);
    });
    out.set('model.safetensors.index.json', new TextEncoder().encode(JSON.stringify({ metadata: {}, weight_map })));
  }
  return [...out].map(([path, bytes]) => ({ path, blob: new Blob([bytes as Uint8Array<ArrayBuffer>]) }));
}

describe('loading a model in the session', () => {
  it('keeps the old model when the new one fails to load, and replaces it only once the new one is complete', async () => {
    const opened: Gpu[] = [], destroyed: Gpu[] = [];
    const session = new Session(async () => {
      const gpu = await createNodeGpu();
      const destroy = gpu.destroy.bind(gpu);
      gpu.destroy = () => void (destroyed.push(gpu), destroy());
      opened.push(gpu);
      return gpu;
    }, () => new AdapterLibrary({ store: memoryStore(), estimate: async () => undefined }));
    const load = (label: string, f: { path: string; blob: Blob }[]) => session.loadModel({ id: 1, type: 'loadModel', source: { kind: 'files', label, files: f } }, () => {});

    await load('moby-llama', files());
    const before = await session.nextTokenLogits('Call me Ishmael.', null);

    await expect(load('cut', files(true, 100))).rejects.toThrow(/^cut\/model-00002-of-00003\.safetensors: .*download it again\.$/);
    expect(opened).toHaveLength(2);
    expect(destroyed).toEqual([opened[1]]);
    expect(await session.nextTokenLogits('Call me Ishmael.', null)).toEqual(before);

    const loaded = await load('sharded', files(true));
    expect(loaded.model.name).toBe('sharded');
    expect(destroyed).toEqual([opened[1], opened[0]]);
    expect(await session.nextTokenLogits('Call me Ishmael.', null)).toEqual(before);
    opened[2].destroy();
  });
});
