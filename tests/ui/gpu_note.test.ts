// The note beside the training speed (src/ui/gpu_note.ts): on SwiftShader, by any of the names the worker's
// GpuInfo gives it, the studio says it is a CPU emulation and what a real GPU would change; on a GPU, nothing.

import { describe, expect, it } from 'vitest';
import { gpuSpeedNote, isSwiftShader, SWIFTSHADER_NOTE } from '../../src/ui/gpu_note';

describe('the GPU note beside the speed', () => {
  it('names SwiftShader and what a real GPU would change', () => {
    expect(SWIFTSHADER_NOTE).toBe('SwiftShader: a CPU emulation of a GPU; a real GPU is typically 100–1000× faster.');
    for (const name of ['google/swiftshader', 'SwiftShader Device (Subzero) (0x0000C0DE)', 'Google/SwiftShader']) {
      expect(isSwiftShader({ name }), name).toBe(true);
      expect(gpuSpeedNote({ name }), name).toBe(SWIFTSHADER_NOTE);
    }
  });

  it('says nothing on a real GPU, or before the GPU is known', () => {
    for (const name of ['nvidia/ampere', 'apple/metal-3', 'intel/gen-12lp', 'unknown']) expect(gpuSpeedNote({ name }), name).toBeNull();
    expect(gpuSpeedNote(null)).toBeNull();
  });
});
