// Parsing and validating the LoRA linear calculator's input (`npm run cli -- lora-linear FILE.json` and
// the studio's Teach panel): {"W": out×in, "A": r×in, "B": out×r, "x": rows×in or [in], "alpha": α,
// "bias"?: [out]} as row-major nested arrays. Every refusal names the field and says what to fix.
// This file does no GPU work.

import { LoraStudioError } from './errors';

export interface LoraLinearInput {
  W: Float32Array; // (OUT, IN)
  A: Float32Array; // (R, IN)
  B: Float32Array; // (OUT, R)
  x: Float32Array; // (N, IN)
  bias?: Float32Array; // (OUT)
  alpha: number;
  n: number;
  inF: number;
  outF: number;
  r: number;
  /** x was given as one vector, so y is printed as one vector. */
  xIsVector: boolean;
}

function bad(file: string, message: string): LoraStudioError {
  return new LoraStudioError('bad-input', `${file}: ${message}`, { file });
}

function matrix(file: string, obj: Record<string, unknown>, field: string, what: string): { data: Float32Array; rows: number; cols: number } {
  const v = obj[field];
  if (v === undefined) throw bad(file, `"${field}" is missing: give ${what} as a nested array of numbers.`);
  if (!Array.isArray(v)) throw bad(file, `"${field}" must be ${what} as a nested array of numbers (got ${typeof v}).`);
  if (v.length === 0) throw bad(file, `"${field}" has no rows: it must be ${what}.`);
  const cols = Array.isArray(v[0]) ? v[0].length : -1;
  const data: number[] = [];
  v.forEach((row, i) => {
    if (!Array.isArray(row)) throw bad(file, `"${field}"[${i}] must be a row (an array of numbers), got ${JSON.stringify(row)}.`);
    if (row.length !== cols) throw bad(file, `"${field}" is ragged: row ${i} has ${row.length} numbers but row 0 has ${cols}. Every row of ${what} needs the same length.`);
    row.forEach((e, j) => {
      if (typeof e !== 'number' || !Number.isFinite(e)) throw bad(file, `"${field}"[${i}][${j}] is ${JSON.stringify(e)}, not a finite number.`);
      data.push(e);
    });
  });
  if (cols === 0) throw bad(file, `"${field}" has empty rows: it must be ${what}.`);
  return { data: Float32Array.from(data), rows: v.length, cols };
}

function vector(file: string, v: unknown, field: string): Float32Array {
  if (!Array.isArray(v)) throw bad(file, `"${field}" must be an array of numbers.`);
  v.forEach((e, j) => {
    if (typeof e !== 'number' || !Number.isFinite(e)) throw bad(file, `"${field}"[${j}] is ${JSON.stringify(e)}, not a finite number.`);
  });
  return Float32Array.from(v as number[]);
}

export function parseLoraLinearInput(json: unknown, file = 'input'): LoraLinearInput {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw bad(file, 'expected a JSON object {"W": [[...]], "A": [[...]], "B": [[...]], "x": [...], "alpha": 4}.');
  }
  const obj = json as Record<string, unknown>;
  const W = matrix(file, obj, 'W', 'the frozen weight, out × in');
  const outF = W.rows, inF = W.cols;
  if (Array.isArray(obj.A) && obj.A.length === 0) {
    throw bad(file, '"A" has no rows, so the rank r = 0: LoRA needs r ≥ 1 (A is r × in, B is out × r).');
  }
  const A = matrix(file, obj, 'A', `the down-projection, r × in (in = ${inF})`);
  const r = A.rows;
  if (A.cols !== inF) throw bad(file, `"A" has ${A.cols} columns but W has ${inF} (in_features): A must be r × ${inF}.`);
  const B = matrix(file, obj, 'B', `the up-projection, out × r (${outF} × ${r})`);
  if (B.rows !== outF) throw bad(file, `"B" has ${B.rows} rows but W has ${outF} (out_features): B must be ${outF} × r.`);
  if (B.cols !== r) throw bad(file, `"B" has ${B.cols} columns but A has ${r} rows (the rank r): B must be ${outF} × ${r}.`);

  let x: Float32Array, n: number;
  const xIsVector = Array.isArray(obj.x) && obj.x.length > 0 && !Array.isArray(obj.x[0]);
  if (obj.x === undefined) throw bad(file, `"x" is missing: give one input vector of ${inF} numbers or rows × ${inF}.`);
  if (xIsVector) {
    x = vector(file, obj.x, 'x');
    n = 1;
    if (x.length !== inF) throw bad(file, `"x" has ${x.length} numbers but W has ${inF} columns (in_features).`);
  } else {
    const m = matrix(file, obj, 'x', `the input, rows × in (in = ${inF})`);
    if (m.cols !== inF) throw bad(file, `"x" rows have ${m.cols} numbers but W has ${inF} columns (in_features).`);
    x = m.data;
    n = m.rows;
  }
  const alpha = obj.alpha;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw bad(file, `"alpha" must be a finite number (got ${JSON.stringify(alpha)}); the update is scaled by alpha / r.`);
  let bias: Float32Array | undefined;
  if (obj.bias !== undefined && obj.bias !== null) {
    bias = vector(file, obj.bias, 'bias');
    if (bias.length !== outF) throw bad(file, `"bias" has ${bias.length} numbers but W has ${outF} rows (out_features).`);
  }
  const known = new Set(['W', 'A', 'B', 'x', 'alpha', 'bias']);
  for (const k of Object.keys(obj)) if (!known.has(k)) throw bad(file, `unknown field "${k}": expected W, A, B, x, alpha and optionally bias.`);
  return { W: W.data, A: A.data, B: B.data, x, bias, alpha, n, inF, outF, r, xIsVector };
}
