// The one decision about an adapter's base model (src/io/base_identity.ts): a model is its architecture and
// shapes, so an adapter whose tensors fit is accepted under any name (with a note when the name differs), and
// one that does not fit is refused with every reason, whatever its name says.

import { describe, expect, it } from 'vitest';
import { ShapeError } from '../../src/io/errors.ts';
import { baseIdentity, baseNameNote, judgeAdapterBase, sameBase, shapesFingerprint, type BaseDims } from '../../src/io/base_identity.ts';
import { loraKey, type AdapterConfig } from '../../src/io/peft.ts';

// A tiny Llama: hidden 32, 4 heads of 8, 2 kv heads, MLP 48, 2 layers.
const DIMS: BaseDims = { architecture: 'LlamaForCausalLM', layers: 2, hidden: 32, heads: 4, kvHeads: 2, headDim: 8, intermediate: 48 };
const CONFIG: AdapterConfig = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false, baseModel: 'org/tiny' };

/** The shapes of a q/v adapter at r = 4 for a model of `d`. */
function adapterShapes(d: BaseDims, r = 4): Map<string, { shape: number[] }> {
  const m = new Map<string, { shape: number[] }>();
  for (let l = 0; l < d.layers; l++) {
    m.set(loraKey(l, 'q_proj', 'A'), { shape: [r, d.hidden] });
    m.set(loraKey(l, 'q_proj', 'B'), { shape: [d.heads * d.headDim, r] });
    m.set(loraKey(l, 'v_proj', 'A'), { shape: [r, d.hidden] });
    m.set(loraKey(l, 'v_proj', 'B'), { shape: [d.kvHeads * d.headDim, r] });
  }
  return m;
}

describe('base-model identity', () => {
  it('is the architecture and every projection’s shape; the name does not count', () => {
    const tiny = baseIdentity(DIMS, 'org/tiny');
    expect(shapesFingerprint(tiny)).toBe(
      'layers 2, q_proj 32×32, k_proj 32×16, v_proj 32×16, o_proj 32×32, gate_proj 32×48, up_proj 32×48, down_proj 48×32',
    );
    expect(tiny).toMatchObject({ baseModel: 'org/tiny', architecture: 'LlamaForCausalLM', numLayers: 2 });
    expect(baseIdentity(DIMS, 'org/tiny', 'v2').revision).toBe('v2');
    // A copy in a folder of another name is the same base; another architecture or any other shape is not.
    expect(sameBase(tiny, baseIdentity(DIMS, '/data/checkpoints/final'))).toBe(true);
    expect(sameBase(tiny, baseIdentity({ ...DIMS, architecture: 'Qwen2ForCausalLM' }, 'org/tiny'))).toBe(false);
    expect(sameBase(tiny, baseIdentity({ ...DIMS, intermediate: 64 }, 'org/tiny'))).toBe(false);
    expect(sameBase(tiny, baseIdentity({ ...DIMS, layers: 3 }, 'org/tiny'))).toBe(false);
    expect(sameBase(tiny, baseIdentity({ ...DIMS, kvHeads: 4 }, 'org/tiny'))).toBe(false);
  });

  it('accepts an adapter whose shapes fit under another name, with a note naming both', () => {
    const model = baseIdentity(DIMS, 'org/tiny');
    const v = judgeAdapterBase({ ...CONFIG, baseModel: '/home/me/renamed-folder' }, adapterShapes(DIMS), model);
    expect(v).toMatchObject({ fits: true, reason: null, refusals: [] });
    expect(v.note).toBe(
      'It was trained on “/home/me/renamed-folder”; the loaded model is “org/tiny”. Its shapes fit (same layers and projections), ' +
        'so it is accepted, but it only does what it learned on the weights it was trained with.',
    );
    // The same name (a local path ending in it, any case), or none on either side: no note.
    expect(judgeAdapterBase({ ...CONFIG, baseModel: './models/TINY/' }, adapterShapes(DIMS), model)).toMatchObject({ fits: true, note: null });
    expect(judgeAdapterBase({ ...CONFIG, baseModel: '' }, adapterShapes(DIMS), model).note).toBeNull();
    // A Hub revision is said when the name does not already carry it.
    expect(baseNameNote('org/other', baseIdentity(DIMS, 'org/tiny', 'v2'))).toContain('the loaded model is “org/tiny” (revision v2)');
    expect(baseNameNote('org/other', baseIdentity(DIMS, 'org/tiny@v2', 'v2'))).toContain('the loaded model is “org/tiny@v2”.');
  });

  it('refuses an adapter of other shapes even when it names the loaded model, with every reason', () => {
    const model = baseIdentity(DIMS, 'org/tiny');
    const wider = adapterShapes({ ...DIMS, hidden: 64 });
    const v = judgeAdapterBase(CONFIG, wider, model);
    expect(v.fits).toBe(false);
    expect(v.note).toBeNull();
    expect(v.refusals.every((e) => e instanceof ShapeError)).toBe(true);
    expect(v.reason).toBe(v.refusals.map((e) => e.message).join(' '));
    expect(v.reason).toMatch(/lora_A of q_proj has in_features 64 \(shape \[4, 64\]\), but “org\/tiny”'s q_proj has in_features 32/);
    expect(v.reason).toMatch(/lora_A of v_proj has in_features 64/);
    // A deeper model's adapter: the layer count is the reason.
    const deeper = judgeAdapterBase(CONFIG, adapterShapes({ ...DIMS, layers: 3 }), model);
    expect(deeper.reason).toMatch(/has weights for 3 layers, but “org\/tiny” has 2 \(num_hidden_layers\)/);
  });
});
