// Training rows → batches, shared by the CLI and the studio's worker: step i of a run uses rows
// [i·B, (i + 1)·B) of a walk over the rows that wraps around at the end (an epoch ends every ⌈rows / B⌉ steps).
//
// Shapes: B batch, T sequence; a batch is (B·T) ids and targets, row-major.

/** (T) ids and, for tokenized data, (T) targets; token rows without targets leave them to the trainer's shift. */
export interface DataRow {
  ids: Int32Array;
  targets?: Int32Array;
}

export interface Batch {
  ids: Int32Array; //      (B·T)
  targets?: Int32Array; // (B·T), −100 where no loss is taken
}

/** Rows [from, from + size) of the wrapped walk over `rows` (all of length T), as one (size, T) batch. */
export function batchAt(rows: readonly DataRow[], from: number, size: number, T: number): Batch {
  if (rows.length === 0) throw new RangeError('batchAt: no rows to draw a batch from');
  const ids = new Int32Array(size * T);
  const targets = rows[0].targets ? new Int32Array(size * T) : undefined;
  for (let b = 0; b < size; b++) {
    const r = rows[(from + b) % rows.length];
    ids.set(r.ids, b * T);
    targets?.set(r.targets!, b * T);
  }
  return { ids, targets };
}
