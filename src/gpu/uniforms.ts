// Uniform struct layouts: the one place that says how a WGSL `struct Params` is laid out in bytes.
// Every field is a 4-byte scalar, so offsets are 4·index and the struct is padded to 16 bytes.
// tests/gpu/uniforms.test.ts parses each shader's struct and checks it against these tables.

export type ScalarType = 'u32' | 'i32' | 'f32';
export type UniformLayout = readonly (readonly [name: string, type: ScalarType])[];

export function uniformSize(layout: UniformLayout): number {
  return Math.max(16, Math.ceil((layout.length * 4) / 16) * 16);
}

export function packUniform(layout: UniformLayout, values: Record<string, number>): ArrayBuffer {
  const buf = new ArrayBuffer(uniformSize(layout));
  const view = new DataView(buf);
  layout.forEach(([name, type], i) => {
    const v = values[name];
    if (v === undefined || !Number.isFinite(v)) throw new Error(`uniform field "${name}" is missing or not finite (${v})`);
    if (type === 'f32') view.setFloat32(i * 4, v, true);
    else if (type === 'u32') {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`uniform field "${name}" must be a u32 (got ${v})`);
      view.setUint32(i * 4, v, true);
    } else view.setInt32(i * 4, v, true);
  });
  return buf;
}
