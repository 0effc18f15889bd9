// The training and validation loss as a uPlot line chart, driven imperatively: it subscribes to trainLive (not
// the React store) and hands the points to the one uPlot instance (setData) on the next animation frame, so a
// training step costs one canvas paint and no React render. The instance is made once per mount and remade
// only when the log scale toggles or the colour scheme changes (its colours are read from styles.css's
// variables then); a ResizeObserver keeps it the container's size. The point counts are mirrored in data-*
// attributes for tests; the wrapper is one image whose accessible name states the latest values. uPlot's
// legend and cursor are off: TrainPanel draws the legend, and the chart adds no controls of its own.

import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { trainLive, type LossPoint, type TrainLive } from './train_live';

interface Props {
  logScale: boolean;
  /** Accessible label prefix; the latest numbers are appended as they change. */
  label: string;
}

export function LossChart({ logScale, label }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const host = useRef<HTMLDivElement>(null);
  const empty = useRef<HTMLParagraphElement>(null);
  // The label lives in a ref so a new one re-labels the chart without remaking it.
  const labelRef = useRef(label);
  const redraw = useRef<() => void>(() => {});

  useEffect(() => {
    labelRef.current = label;
    redraw.current();
  }, [label]);

  useEffect(() => {
    const el = box.current, plotEl = host.current, emptyEl = empty.current;
    if (!el || !plotEl || !emptyEl) return;
    let plot: uPlot | null = null;
    const build = () => {
      plot?.destroy();
      plot = new uPlot(options(el, logScale), toData(trainLive.getState(), logScale), plotEl);
    };
    let frame = 0;
    const schedule = () => {
      if (frame === 0) frame = requestAnimationFrame(() => {
        frame = 0;
        const s = trainLive.getState();
        describe(el, emptyEl, s, labelRef.current);
        plot?.setData(toData(s, logScale));
      });
    };
    // A new scheme means new colours, which uPlot only takes at construction.
    const rebuild = () => { build(); schedule(); };
    build();
    redraw.current = schedule;
    const unsubscribe = trainLive.subscribe(schedule);
    const resize = new ResizeObserver(() => {
      if (plot && (plot.width !== el.clientWidth || plot.height !== el.clientHeight)) plot.setSize({ width: el.clientWidth, height: el.clientHeight });
    });
    resize.observe(el);
    const scheme = matchMedia('(prefers-color-scheme: dark)');
    scheme.addEventListener('change', rebuild);
    schedule();
    return () => {
      unsubscribe();
      resize.disconnect();
      scheme.removeEventListener('change', rebuild);
      cancelAnimationFrame(frame);
      redraw.current = () => {};
      plot?.destroy();
    };
  }, [logScale]);

  return (
    <div ref={box} className="loss-chart" role="img" aria-label={label} data-testid="loss-chart" data-scale={logScale ? 'log' : 'linear'} data-train-points={0} data-validation-points={0}>
      <div ref={host} />
      <p ref={empty} className="loss-chart-empty">The loss appears here once training starts.</p>
    </div>
  );
}

/** Chart options for the wrapper's current size and colours; `logScale` makes the y axis log10. */
function options(el: HTMLElement, logScale: boolean): uPlot.Options {
  const css = getComputedStyle(el);
  const color = (name: string) => css.getPropertyValue(name).trim() || '#888';
  const font = `11px ${css.getPropertyValue('--sans').trim() || 'sans-serif'}`;
  const axis = (values?: uPlot.Axis['values']): uPlot.Axis => ({
    stroke: color('--muted'),
    font,
    grid: { stroke: color('--surface-2'), width: 1 },
    ticks: { stroke: color('--border'), width: 1, size: 4 },
    border: { show: true, stroke: color('--border'), width: 1 },
    values,
  });
  return {
    width: el.clientWidth,
    height: el.clientHeight,
    legend: { show: false },
    cursor: { show: false, drag: { x: false, y: false, setScale: false } },
    scales: {
      // The x range is the whole run (step 1 to the last step planned), so the line grows across it.
      x: { time: false, range: (_u, _min, max) => [1, Math.max(2, trainLive.getState().steps, max ?? 0)] },
      // distr 3 is log10; uPlot then spans whole decades.
      y: logScale ? { distr: 3, log: 10 } : {},
    },
    // Whole steps only on x: uPlot's default increments would also offer 0.5 on a short run.
    axes: [{ ...axis(), incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 50000, 100000] }, { ...axis((_u, splits) => splits.map((v) => (v == null ? '' : Number(v.toPrecision(3)).toString()))), size: 48 }],
    series: [
      {},
      { label: 'training loss', stroke: color('--accent'), width: 2, points: { fill: color('--surface') } },
      // Validation is measured every few steps: the nulls between its points are spanned, and every point is dotted.
      { label: 'validation loss', stroke: color('--ok'), width: 2, spanGaps: true, points: { show: true, size: 6, fill: color('--ok'), stroke: color('--ok') } },
    ],
  };
}

/**
 * The points as uPlot's aligned columns: x is every step either series has (ascending, as trainLive appends
 * them), each series null where it has no point. On a log scale a loss ≤ 0 has no place, so it is null too.
 */
function toData(s: TrainLive, logScale: boolean): uPlot.AlignedData {
  const xs: number[] = [], train: (number | null)[] = [], val: (number | null)[] = [];
  const y = (p: LossPoint | undefined) => (p === undefined || (logScale && !(p.loss > 0)) ? null : p.loss);
  let i = 0, j = 0;
  while (i < s.train.length || j < s.validation.length) {
    const a = s.train[i], b = s.validation[j];
    const step = Math.min(a?.step ?? Infinity, b?.step ?? Infinity);
    const t = a?.step === step ? a : undefined, v = b?.step === step ? b : undefined;
    if (t) i++;
    if (v) j++;
    xs.push(step);
    train.push(y(t));
    val.push(y(v));
  }
  return [xs, train, val];
}

/** The data-* counts, the accessible name and the empty-state text, for the state drawn. */
function describe(el: HTMLElement, emptyEl: HTMLElement, s: TrainLive, label: string): void {
  el.dataset.trainPoints = String(s.train.length);
  el.dataset.validationPoints = String(s.validation.length);
  emptyEl.hidden = s.train.length + s.validation.length > 0;
  const last = s.last, val = s.validation[s.validation.length - 1];
  el.setAttribute(
    'aria-label',
    last ? `${label}: step ${last.step} of ${last.steps}, training loss ${last.loss.toFixed(3)}` + (val ? `, validation loss ${val.loss.toFixed(3)}` : '') : `${label}: no steps yet`,
  );
}
