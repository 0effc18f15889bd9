// A model built as its checkpoint is read (src/model/streamed_model.ts loadStreamed over loadModel's sink), on
// the four-shard bf16 fixture: every weight on the device equals its bf16 value and the model's loss equals the
// one built from the whole checkpoint at once, bit for bit; a load refused after the device opened (a truncated
// shard, a missing tensor) destroys that device, and one refused before any weight is read opens none.

import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/gpu';
import { createNodeGpu } from '../../src/gpu/node';
import { folderSource } from '../../src/io/model_source';
import { createModel } from '../../src/model/factory';
import { loadModel } from '../../src/model/load';
import { loadStreamed } from '../../src/model/streamed_model';
import { readWeight } from '../../src/model/gpu_weights';
import { Evaluator } from '../../src/train/trainer';
import { BF16_SHARDS, bf16Checkpoint } from './bf16_shards';

/** Fresh devices, each recorded as it opens and as it is destroyed. */
function devices() {
  const opened: Gpu[] = [], destroyed: Gpu[] = [];
  const open = async () => {
    const gpu = await createNodeGpu();
    const destroy = gpu.destroy.bind(gpu);
    gpu.destroy = () => void (destroyed.push(gpu), destroy());
    opened.push(gpu);
    return gpu;
  };
  return { opened, destroyed, open };
}

const streamed = (files: Map<string, Uint8Array>, open: () => Promise<Gpu>) =>
  loadStreamed((sink) => loadModel(folderSource(files, 'm'), { sink }), open);

describe('a model streamed onto the GPU', () => {
  it('holds every weight at its bf16 value and gives the loss of the model built at once, bit for bit', async () => {
    const { files, values } = bf16Checkpoint();
    const d = devices();
    const { gpu, model, config, weightStats } = await streamed(files, d.open);
    try {
      expect(d.opened).toEqual([gpu]);
      expect(weightStats.files).toBe(4);
      for (const [name, v] of values) expect(await readWeight(gpu, model.weights.get(name)!), name).toEqual(v);

      const whole = createModel(gpu, config, (await loadModel(folderSource(files, 'm'))).weights);
      const ids = Int32Array.from({ length: 16 }, (_, i) => (i * 7 + 3) % config.vocab);
      const [a, b] = [await new Evaluator(model, 2, 8).loss(ids), await new Evaluator(whole, 2, 8).loss(ids)];
      expect(Number.isFinite(a.loss)).toBe(true);
      expect(a).toEqual(b);
    } finally {
      gpu.destroy();
    }
  });

  it('destroys the device of a load refused after it opened, and opens none for one refused before', async () => {
    const d = devices();
    const { files } = bf16Checkpoint();
    const cut = files.get(BF16_SHARDS[2])!;
    files.set(BF16_SHARDS[2], cut.subarray(0, cut.byteLength - 6));
    await expect(streamed(files, d.open)).rejects.toThrow(/^m\/model-00003-of-00004\.safetensors: .*download it again\.$/);
    expect(d.opened).toHaveLength(1);
    expect(d.destroyed).toEqual(d.opened);

    await expect(streamed(bf16Checkpoint(15, 'model.norm.weight').files, d.open)).rejects.toThrow(/1 tensor\(s\) the config needs are missing, e\.g\. model\.norm\.weight/);
    expect(d.opened).toHaveLength(2);
    expect(d.destroyed).toEqual(d.opened);

    const badConfig = bf16Checkpoint().files;
    badConfig.set('config.json', new TextEncoder().encode('{"architectures": ["GPT2LMHeadModel"]}'));
    await expect(streamed(badConfig, d.open)).rejects.toThrow(/config\.json/);
    expect(d.opened).toHaveLength(2);
  });
});
