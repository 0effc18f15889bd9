// ARCHITECTURE.md, the op stem rule: the TS uniform layouts must match the WGSL structs they fill. For every shader in
// SHADERS (src/gpu/shaders.ts), its `struct Params { … }` is parsed and compared, field by field and in order,
// with the `*_PARAMS` UniformLayout exported by the op file of the same stem (src/autograd/<stem>.ts;
// matmul's is GEMM_PARAMS). Every field must be a 4-byte scalar, since packUniform writes field i at 4·i.
// Pure string checks: no GPU needed.

import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../src/gpu/shaders';
import type { UniformLayout } from '../../src/gpu/uniforms';

const OPS = import.meta.glob<Record<string, unknown>>('../../src/autograd/*.ts', { eager: true });

/** [name, type] of each field of `struct Params`, comments stripped; null when the shader has none. */
function parseParams(wgsl: string): [string, string][] | null {
  const code = wgsl.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
  const structs = [...code.matchAll(/struct\s+Params\s*\{([^}]*)\}/g)];
  if (structs.length === 0) return null;
  if (structs.length > 1) throw new Error('more than one struct Params');
  return structs[0][1].split(',').map((f) => f.trim()).filter(Boolean).map((f) => {
    const m = /^(?:@\w+(?:\([^)]*\))?\s+)*(\w+)\s*:\s*([\w<>, ]+)$/.exec(f);
    if (!m) throw new Error(`cannot parse struct Params field "${f}"`);
    return [m[1], m[2].trim()];
  });
}

/** The op file's exported layouts (arrays of [name, 'u32' | 'i32' | 'f32'] named *_PARAMS). */
function layoutsOf(mod: Record<string, unknown>): [string, UniformLayout][] {
  return Object.entries(mod).filter(([k, v]) => k.endsWith('_PARAMS') && Array.isArray(v)) as [string, UniformLayout][];
}

describe('uniform layouts match the WGSL structs', () => {
  it('the parser reads names and types in order, ignoring comments', () => {
    expect(parseParams('struct Params {\n  N: u32, // rows\n  eps: f32,\n  /* x */ k: i32 }')).toEqual([['N', 'u32'], ['eps', 'f32'], ['k', 'i32']]);
    expect(parseParams('struct Other { a: u32 }')).toBeNull();
  });

  for (const [stem, wgsl] of Object.entries(SHADERS)) {
    // An `<op>_subgroups.wgsl` variant fills the same struct from the same builders in src/autograd/<op>.ts.
    const op = stem.replace(/_subgroups$/, '');
    it(`${stem}.wgsl ↔ src/autograd/${op}.ts`, () => {
      const fields = parseParams(wgsl);
      if (!fields) return; // a shader without uniforms has nothing to check
      const mod = OPS[`../../src/autograd/${op}.ts`];
      expect(mod, `src/autograd/${stem}.ts must exist and export the UniformLayout of shaders/${stem}.wgsl's struct Params`).toBeDefined();
      const layouts = layoutsOf(mod!);
      expect(layouts.map(([k]) => k), `src/autograd/${stem}.ts must export exactly one *_PARAMS layout`).toHaveLength(1);
      const [name, layout] = layouts[0];
      for (const [f, t] of fields) expect(['u32', 'i32', 'f32'], `${stem}.wgsl Params.${f}: ${t} is not a 4-byte scalar`).toContain(t);
      expect(layout.map(([f, t]) => `${f}: ${t}`), `${name} vs struct Params in shaders/${stem}.wgsl`)
        .toEqual(fields.map(([f, t]) => `${f}: ${t}`));
    });
  }
});
