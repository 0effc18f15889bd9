// A matrix drawn as a heatmap (one coloured cell per entry) or, for a column vector, as horizontal bars.
// The colour scale diverges around 0 (blue below, red above, the panel's own surface at 0) and is symmetric,
// ±limit, so two pictures on the same limit compare by eye; the legend gives the limit and the real min/max.
// Colours are CSS variables (teach.css, `---- playground`), so light and dark both work.
// For assistive tech and exact numbers: the grid has an aria-label summarising it, takes focus, and arrow
// keys move a cursor whose entry is read out below it (as pointer hover does). The full tables are the
// playground's "All numbers" section. Not for big tensors: one element per entry.

import { useId, useState, type KeyboardEvent, type PointerEvent, type ReactNode } from 'react';
import type { Matrix } from '../../worker/protocol';

const fmt = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 3 });

/** A number for people: 3 significant digits and a real minus sign. */
export function formatNumber(v: number): string {
  return fmt.format(v || 0).replace('-', '−');
}

/** The smallest of 1, 1.5, 2, 3, 4, 5, 6, 8 × 10ⁿ at or above v: a round axis limit that does not change at every step. */
export function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return ([1, 1.5, 2, 3, 4, 5, 6, 8, 10].find((m) => m * p >= v * (1 - 1e-9)) ?? 10) * p;
}

/** Background for a value on the ±limit scale: the sign's colour mixed into the zero colour by |v|/limit. */
function heat(v: number, limit: number): string {
  const t = Math.min(1, Math.abs(v) / limit);
  return `color-mix(in oklab, var(${v < 0 ? '--heat-neg' : '--heat-pos'}) ${Math.round(t * 100)}%, var(--heat-zero))`;
}

interface Props {
  /** e.g. "ΔW"; the caption adds the shape. */
  name: string;
  values: Matrix;
  /** The colour scale runs from −limit to +limit; larger values saturate. */
  limit: number;
  /** A few words after the shape, e.g. "frozen". */
  note?: string;
  /** Bars instead of cells: for a column vector (one column). */
  bars?: boolean;
  /** Fade while the numbers are about to be replaced. */
  stale?: boolean;
  /** Drawn just left of the grid, centred on it: an operator such as "2 ×". */
  lead?: ReactNode;
}

export function Heatmap({ name, values, limit, note, bars, stale, lead }: Props) {
  const rows = values.length;
  const cols = values[0]?.length ?? 0;
  const readoutId = useId();
  const [cursor, setCursor] = useState<{ i: number; j: number } | null>(null);
  // The readout speaks only while the grid has focus: otherwise every slider step would announce each picture's min and max.
  const [focused, setFocused] = useState(false);
  // The shape can shrink under the cursor (A loses a row when r goes down).
  const at = cursor && { i: Math.min(cursor.i, rows - 1), j: Math.min(cursor.j, cols - 1) };

  let min = Infinity, max = -Infinity;
  for (const row of values) for (const v of row) { min = Math.min(min, v); max = Math.max(max, v); }
  const range = rows ? `values from ${formatNumber(min)} to ${formatNumber(max)}` : 'empty';
  const where = (i: number, j: number) => (cols === 1 ? `${name}[${i + 1}]` : `${name}[${i + 1}, ${j + 1}]`);

  const onKeyDown = (e: KeyboardEvent) => {
    const moves: Record<string, [number, number]> = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const base = at ?? { i: 0, j: 0 };
    let next: { i: number; j: number } | null = null;
    if (e.key in moves) {
      const [di, dj] = moves[e.key];
      next = at ? { i: Math.max(0, Math.min(rows - 1, base.i + di)), j: Math.max(0, Math.min(cols - 1, base.j + dj)) } : base;
    } else if (e.key === 'Home') next = { i: base.i, j: 0 };
    else if (e.key === 'End') next = { i: base.i, j: cols - 1 };
    else if (e.key === 'Escape') { setCursor(null); return; }
    if (!next) return;
    e.preventDefault();
    setCursor(next);
  };
  const onPointerMove = (e: PointerEvent) => {
    const cell = (e.target as HTMLElement).closest<HTMLElement>('[data-cell]');
    if (!cell) return;
    const [i, j] = cell.dataset.cell!.split(',').map(Number);
    if (i !== at?.i || j !== at?.j) setCursor({ i, j });
  };

  return (
    <figure className={`heatmap${bars ? ' heatmap-bars' : ''}${stale ? ' is-stale' : ''}`}>
      <figcaption>
        <span className="matrix-name">{name}</span>{' '}
        <span className="matrix-shape">({rows}×{cols}{note ? `, ${note}` : ''})</span>
      </figcaption>
      <div className="heat-row">
        {lead}
        <div
          className="heat-grid"
          role="group"
          aria-roledescription={bars ? 'bar chart' : 'heatmap'}
          aria-label={`${name}, ${rows} by ${cols}, ${range}. Arrow keys read one entry at a time.`}
          aria-describedby={readoutId}
          tabIndex={0}
          style={bars ? undefined : { gridTemplateColumns: `repeat(${cols}, var(--cell))` }}
          onKeyDown={onKeyDown}
          onPointerMove={onPointerMove}
          onPointerLeave={() => setCursor(null)}
          onFocus={() => setFocused(true)}
          onBlur={() => { setFocused(false); setCursor(null); }}
        >
          {values.map((row, i) =>
            row.map((v, j) => {
              const active = at?.i === i && at?.j === j;
              if (!bars) {
                return <div key={`${i},${j}`} data-cell={`${i},${j}`} className={active ? 'heat-cell is-active' : 'heat-cell'} style={{ background: heat(v, limit) }} />;
              }
              const w = `${(50 * Math.min(1, Math.abs(v) / limit)).toFixed(2)}%`;
              return (
                <div key={`${i},${j}`} data-cell={`${i},${j}`} className={active ? 'heat-bar is-active' : 'heat-bar'}>
                  <span className={v < 0 ? 'is-neg' : 'is-pos'} style={{ width: w, [v < 0 ? 'right' : 'left']: '50%' }} />
                </div>
              );
            }),
          )}
        </div>
      </div>
      <div className="heat-legend" aria-hidden="true">
        <span>{formatNumber(-limit)}</span>
        <span className={bars ? 'heat-ramp heat-axis' : 'heat-ramp'} />
        <span>{formatNumber(limit)}</span>
      </div>
      <p className="heat-readout" id={readoutId} aria-live={focused ? 'polite' : 'off'}>
        {at ? (
          <>
            <span className="mono">{where(at.i, at.j)}</span> = <span className="mono">{formatNumber(values[at.i][at.j])}</span>
          </>
        ) : rows ? (
          <>
            min <span className="mono">{formatNumber(min)}</span>, max <span className="mono">{formatNumber(max)}</span>
            {Math.max(-min, max) > limit && <span className="muted" title={`Entries beyond ±${formatNumber(limit)} are drawn at full colour.`}>, clipped</span>}
          </>
        ) : null}
      </p>
    </figure>
  );
}
