// A small matrix as an accessible table: a caption with its name and shape, one cell per entry.
// Meant for teaching-sized matrices: the worked examples show theirs this way, and the playground draws its
// 16×16 ones as heatmaps (teach/heatmap.tsx) with these tables as their full text alternative.

import type { Matrix } from '../worker/protocol';

/** Float32 results shown to 6 significant digits, so 9.000000x reads as 9 and −0 as 0. */
export function tidy(v: number): number {
  return Number(v.toPrecision(6)) || 0;
}

export function tidyMatrix(m: Matrix): Matrix {
  return m.map((row) => row.map(tidy));
}

interface Props {
  /** e.g. "W"; the caption adds the shape. */
  name: string;
  rows: Matrix;
  /** A few words after the shape, e.g. "frozen". */
  note?: string;
  /** Emphasise as a result. */
  result?: boolean;
}

export function MatrixTable({ name, rows, note, result }: Props) {
  const cols = rows[0]?.length ?? 0;
  return (
    <table className={result ? 'matrix matrix-result' : 'matrix'}>
      <caption>
        <span className="matrix-name">{name}</span>{' '}
        <span className="matrix-shape">({rows.length}×{cols}{note ? `, ${note}` : ''})</span>
      </caption>
      <tbody>
        {rows.map((row, i) => (
          <tr key={i}>
            {row.map((v, j) => <td key={j}>{tidy(v)}</td>)}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
