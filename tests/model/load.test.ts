// Loading a sharded checkpoint shard by shard (src/model/load.ts over src/io/model_source.ts forEachWeightFile):
// a tiny three-layer Llama split into three shards with model.safetensors.index.json. The loader's own count of
// raw bytes held at once is one shard, not the checkpoint; each shard is converted before the next is read (the
// reads and the conversions interleave, and a bad second shard stops the load before the third is read); the
// weights equal those of the same model in one file; tensors the model does not use may be in any dtype.
// With a sink (a four-shard bf16 checkpoint), opened once the first shard is parsed, each tensor goes on as soon as its shard is parsed, once, with its
// bf16 value, and the loader's own count of what it held at once is one shard and one converted tensor; a
// missing tensor and a truncated shard are refused as without a sink.

import { describe, expect, it } from 'vitest';
import { folderSource, forEachWeightFile, findWeightFiles, readWeightFiles, type ModelFiles } from '../../src/io/model_source';
import { parseSafetensors, writeSafetensors, type TensorToWrite } from '../../src/io/safetensors';
import { parseModelConfig, weightShapes } from '../../src/model/config';
import { loadModel } from '../../src/model/load';
import { TINY_CONFIG } from '../cli/tiny-model';
import { BF16_SHARDS, bf16Checkpoint } from './bf16_shards';
import { mulberry32, randn } from '../reference/rng';

const CONFIG = { ...TINY_CONFIG, num_hidden_layers: 3 };
const enc = (s: string) => new TextEncoder().encode(s);
const SHARDS = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];

function tensors(): TensorToWrite[] {
  const rng = mulberry32(15);
  return [...weightShapes(parseModelConfig(JSON.stringify(CONFIG)))].map(([name, shape]) => ({
    name,
    shape,
    data: Float32Array.from(randn(rng, shape.reduce((a, b) => a * b, 1), 0.1)),
  }));
}

/** Layer l's tensors (and the embedding with layer 0, the final norm and lm_head with layer 2) in shard l. */
const shardOf = (name: string) => (name.startsWith('model.embed') ? 0 : name.startsWith('model.layers.') ? Number(name.split('.')[2]) : 2);

function shardedFiles(all = tensors()): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>([['config.json', enc(JSON.stringify(CONFIG))]]);
  const weight_map: Record<string, string> = {};
  SHARDS.forEach((shard, i) => {
    const mine = all.filter((t) => shardOf(t.name) === i);
    for (const t of mine) weight_map[t.name] = shard;
    files.set(shard, writeSafetensors(mine, { format: 'pt' }));
  });
  files.set('model.safetensors.index.json', enc(JSON.stringify({ metadata: { total_size: 0 }, weight_map })));
  return files;
}

/** A folder source that writes 'read <file>' into `events` as each weight file is read. */
function recorded(files: Map<string, Uint8Array>, events: string[]): ModelFiles {
  const source = folderSource(files, 'm');
  return { ...source, read: (name, onProgress) => (name.endsWith('.safetensors') && events.push(`read ${name}`), source.read(name, onProgress)) };
}

describe('streaming a sharded checkpoint', () => {
  it('holds one shard of raw bytes at a time, by the loader\'s own count', async () => {
    const files = shardedFiles();
    const sizes = SHARDS.map((s) => files.get(s)!.byteLength);
    const total = sizes.reduce((a, b) => a + b, 0);
    const { weightStats, weights } = await loadModel(folderSource(files, 'm'));
    // Without a sink every converted tensor is kept to the end, so all of them count with the last shard's bytes.
    const f32 = [...weights.values()].reduce((n, w) => n + w.byteLength, 0);
    expect(weightStats).toEqual({ files: 3, totalBytes: total, peakBytes: Math.max(...sizes), peakHeldBytes: sizes[2] + f32 });
    expect(weightStats.peakBytes, `peak ${weightStats.peakBytes} of ${total} bytes`).toBeLessThan(total / 2);
  });

  it('hands each shard on before reading the next', async () => {
    const events: string[] = [];
    const files = shardedFiles();
    const source = recorded(files, events);
    await forEachWeightFile(source, await findWeightFiles(source), (file) => void events.push(`use ${file.fileName}`));
    expect(events).toEqual(SHARDS.flatMap((s) => [`read ${s}`, `use m/${s}`]));
  });

  it('still gives every shard\'s bytes at once to a caller that asks for them (readWeightFiles)', async () => {
    const files = shardedFiles();
    const source = folderSource(files, 'm');
    const read = await readWeightFiles(source, await findWeightFiles(source));
    expect(read.map((f) => f.name)).toEqual(SHARDS.map((s) => `m/${s}`));
    read.forEach((f, i) => expect(f.bytes).toBe(files.get(SHARDS[i])));
  });

  it('stops at a bad second shard without reading the third', async () => {
    const events: string[] = [];
    const all = tensors();
    const bad = all.find((t) => t.name === 'model.layers.1.mlp.up_proj.weight')!;
    bad.shape = [bad.shape[1], bad.shape[0]];
    await expect(loadModel(recorded(shardedFiles(all), events))).rejects.toThrow(
      /^m\/model-00002-of-00003\.safetensors: model\.layers\.1\.mlp\.up_proj\.weight has shape \[32,64\] but config\.json implies \[64,32\]/,
    );
    expect(events).toEqual([`read ${SHARDS[0]}`, `read ${SHARDS[1]}`]);
  });

  it('gives the same weights as the model in one file', async () => {
    const all = tensors();
    const single = new Map<string, Uint8Array>([['config.json', enc(JSON.stringify(CONFIG))], ['model.safetensors', writeSafetensors(all)]]);
    const [sharded, whole] = [await loadModel(folderSource(shardedFiles(all), 'm')), await loadModel(folderSource(single, 'm'))];
    expect([...sharded.weights.keys()].sort()).toEqual([...whole.weights.keys()].sort());
    for (const [name, w] of whole.weights) expect(sharded.weights.get(name), name).toEqual(w);
    const raw = single.get('model.safetensors')!.byteLength, f32 = all.reduce((n, t) => n + t.data.byteLength, 0);
    expect(whole.weightStats).toEqual({ files: 1, totalBytes: raw, peakBytes: raw, peakHeldBytes: raw + f32 });
  });

  it('ignores a tensor the model does not use, whatever its dtype', async () => {
    const files = shardedFiles();
    const shard = parseSafetensors(files.get(SHARDS[2])!);
    const kept = [...shard.tensors.keys()].map((name) => ({ name, shape: shard.tensors.get(name)!.shape, data: shard.readF32(name) }));
    // An F64 rotary cache, as some exporters add: appended by hand, since writeSafetensors writes F32 only.
    const plain = writeSafetensors(kept);
    const headerLength = Number(new DataView(plain.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(plain.subarray(8, 8 + headerLength)));
    const dataLength = plain.byteLength - 8 - headerLength;
    header['model.rotary_emb.inv_freq'] = { dtype: 'F64', shape: [4], data_offsets: [dataLength, dataLength + 32] };
    const h = enc(JSON.stringify(header));
    const out = new Uint8Array(8 + h.length + dataLength + 32);
    new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
    out.set(h, 8);
    out.set(plain.subarray(8 + headerLength), 8 + h.length);
    files.set(SHARDS[2], out);
    const loaded = await loadModel(folderSource(files, 'm'));
    expect(loaded.weights.has('model.rotary_emb.inv_freq')).toBe(false);
    expect(loaded.weights.size).toBe(weightShapes(loaded.config).size);
  });
});

describe('streaming a bf16 checkpoint to a sink', () => {
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

  it('hands each tensor on once, with its bf16 value, as its shard is parsed, holding about one shard', async () => {
    const { files, values, shards } = bf16Checkpoint();
    const events: string[] = [];
    const got = new Map<string, Float32Array>();
    const { weightStats } = await loadModel(recorded(files, events), {
      sink: async (config, stored) => {
        events.push(`open ${config.layers} layers ${[...stored].join(', ')}`);
        return (name, data) => {
          events.push(`put ${name}`);
          expect(got.has(name), `${name} twice`).toBe(false);
          got.set(name, data);
        };
      },
    });
    // The sink opens once the first shard is parsed (with its stored dtypes), before any tensor goes on; a
    // shard's tensors go on before the next is read.
    const puts = (i: number) => [...shards[i]].sort().map((n) => `put ${n}`);
    expect(events).toEqual([`read ${BF16_SHARDS[0]}`, 'open 4 layers BF16', ...puts(0), ...BF16_SHARDS.slice(1).flatMap((s, i) => [`read ${s}`, ...puts(i + 1)])]);
    expect([...got.keys()].sort()).toEqual([...values.keys()].sort());
    for (const [name, v] of values) expect(got.get(name), name).toEqual(v);

    const raw = BF16_SHARDS.map((s) => files.get(s)!.byteLength);
    const f32 = (name: string) => values.get(name)!.byteLength;
    const whole = sum([...values.keys()].map(f32));
    // At most one shard's bytes and the one tensor converted out of it that the sink has not yet taken.
    const oneTensor = Math.max(...raw.map((r, i) => r + Math.max(...shards[i].map(f32))));
    const oneShard = Math.max(...raw.map((r, i) => r + sum(shards[i].map(f32))));
    console.log(`peak held ${weightStats.peakHeldBytes} B (raw shards ${raw.join(', ')} B; largest shard + its float32 tensors ${oneShard} B; whole model in float32 ${whole} B)`);
    expect(weightStats).toEqual({ files: 4, totalBytes: sum(raw), peakBytes: Math.max(...raw), peakHeldBytes: oneTensor });
    expect(weightStats.peakHeldBytes).toBeLessThanOrEqual(oneShard);
    expect(weightStats.peakHeldBytes).toBeLessThan(whole / 3);

    // Without a sink the loader keeps every converted tensor: the whole model in float32 and the last shard.
    const kept = await loadModel(folderSource(files, 'm'));
    console.log(`without a sink: peak held ${kept.weightStats.peakHeldBytes} B`);
    expect(kept.weightStats.peakHeldBytes).toBe(raw[3] + whole);
  });

  it('refuses a missing tensor and a truncated shard as without a sink, and discards the source', async () => {
    const sinkless = async (files: Map<string, Uint8Array>) => loadModel(folderSource(files, 'm')).then(() => 'loaded', (e: Error) => e.message);
    const streamed = async (files: Map<string, Uint8Array>, put: string[], discarded: string[]) => {
      const source: ModelFiles = { ...folderSource(files, 'm'), discard: async () => void discarded.push('discard') };
      return loadModel(source, { sink: async () => (name) => void put.push(name) }).then(() => 'loaded', (e: Error) => e.message);
    };

    const missing = 'model.layers.2.mlp.down_proj.weight';
    const incomplete = bf16Checkpoint(15, missing);
    const [put, discarded]: string[][] = [[], []];
    const message = await streamed(incomplete.files, put, discarded);
    expect(message).toMatch(/^m\/model-00001-of-00004\.safetensors, .*: 1 tensor\(s\) the config needs are missing, e\.g\. model\.layers\.2\.mlp\.down_proj\.weight\. Is the checkpoint complete \(all shards\)\?$/);
    expect(message).toBe(await sinkless(incomplete.files));
    expect(discarded).toEqual(['discard']);
    expect(put).toHaveLength(incomplete.values.size - 1); // what came went on: the caller discards its target

    const { files, shards } = bf16Checkpoint();
    const cut = files.get(BF16_SHARDS[1])!;
    files.set(BF16_SHARDS[1], cut.subarray(0, cut.byteLength - 10));
    const [put2, discarded2]: string[][] = [[], []];
    const truncated = await streamed(files, put2, discarded2);
    expect(truncated).toMatch(/^m\/model-00002-of-00004\.safetensors: .*download it again\.$/);
    expect(truncated).toBe(await sinkless(files));
    expect(discarded2).toEqual(['discard']);
    expect(put2.sort()).toEqual([...shards[0]].sort()); // stopped at the cut shard
  });
});
