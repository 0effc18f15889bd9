// A small canvas line chart of the training and validation loss, drawn imperatively: it subscribes to
// trainLive (not the React store) and redraws on the next animation frame, so a training step costs one
// canvas paint and no React render. Colours come from styles.css's variables, so it follows light and dark.
// The point counts are mirrored in data-* attributes for tests; the accessible name states the latest values.

import { useEffect, useRef } from 'react';
import { trainLive, type LossPoint, type TrainLive } from './trainLive';

interface Props {
  logScale: boolean;
  /** Accessible label prefix; the latest numbers are appended as they change. */
  label: string;
}

export function LossChart({ logScale, label }: Props) {
  const canvas = useRef<HTMLCanvasElement>(null);

  useEffect(() => {
    const el = canvas.current;
    if (!el) return;
    let frame = 0;
    const schedule = () => {
      if (frame === 0) frame = requestAnimationFrame(() => { frame = 0; draw(el, trainLive.getState(), logScale, label); });
    };
    const unsubscribe = trainLive.subscribe(schedule);
    const resize = new ResizeObserver(schedule);
    resize.observe(el);
    // Light/dark switches change the colours.
    const scheme = matchMedia('(prefers-color-scheme: dark)');
    scheme.addEventListener('change', schedule);
    schedule();
    return () => {
      unsubscribe();
      resize.disconnect();
      scheme.removeEventListener('change', schedule);
      cancelAnimationFrame(frame);
    };
  }, [logScale, label]);

  return <canvas ref={canvas} className="loss-chart" role="img" aria-label={label} data-testid="loss-chart" data-train-points={0} data-validation-points={0} />;
}

const PAD = { left: 52, right: 12, top: 10, bottom: 26 };

function draw(el: HTMLCanvasElement, s: TrainLive, logScale: boolean, label: string): void {
  el.dataset.trainPoints = String(s.train.length);
  el.dataset.validationPoints = String(s.validation.length);
  const last = s.last;
  el.setAttribute(
    'aria-label',
    last ? `${label}: step ${last.step} of ${last.steps}, training loss ${last.loss.toFixed(3)}` + (lastOf(s.validation) ? `, validation loss ${lastOf(s.validation)!.loss.toFixed(3)}` : '') : `${label}: no steps yet`,
  );

  const dpr = window.devicePixelRatio || 1;
  const w = el.clientWidth, h = el.clientHeight;
  if (w === 0 || h === 0) return;
  if (el.width !== Math.round(w * dpr) || el.height !== Math.round(h * dpr)) {
    el.width = Math.round(w * dpr);
    el.height = Math.round(h * dpr);
  }
  const ctx = el.getContext('2d');
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const css = getComputedStyle(el);
  const color = (name: string) => css.getPropertyValue(name).trim() || '#888';
  ctx.font = `11px ${css.getPropertyValue('--sans') || 'sans-serif'}`;

  const all = [...s.train, ...s.validation].filter((p) => p.loss > 0 || !logScale);
  const plotW = w - PAD.left - PAD.right, plotH = h - PAD.top - PAD.bottom;
  // Axes first, so an empty chart still reads as a chart.
  ctx.strokeStyle = color('--border');
  ctx.lineWidth = 1;
  ctx.strokeRect(PAD.left + 0.5, PAD.top + 0.5, plotW, plotH);
  if (all.length === 0) {
    ctx.fillStyle = color('--muted');
    ctx.textAlign = 'center';
    ctx.fillText('The loss appears here once training starts.', PAD.left + plotW / 2, PAD.top + plotH / 2);
    return;
  }

  const f = (v: number) => (logScale ? Math.log10(v) : v);
  let lo = Math.min(...all.map((p) => f(p.loss))), hi = Math.max(...all.map((p) => f(p.loss)));
  if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
  const margin = (hi - lo) * 0.05;
  lo -= margin; hi += margin;
  const xMax = Math.max(2, s.steps, ...all.map((p) => p.step));
  const x = (step: number) => PAD.left + ((step - 1) / (xMax - 1)) * plotW;
  const y = (loss: number) => PAD.top + (1 - (f(loss) - lo) / (hi - lo)) * plotH;

  // Grid and labels: four loss ticks, the first and last step.
  ctx.fillStyle = color('--muted');
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    const py = PAD.top + (1 - i / 4) * plotH;
    ctx.strokeStyle = color('--surface-2');
    ctx.beginPath();
    ctx.moveTo(PAD.left + 1, Math.round(py) + 0.5);
    ctx.lineTo(PAD.left + plotW, Math.round(py) + 0.5);
    ctx.stroke();
    ctx.fillText((logScale ? 10 ** v : v).toPrecision(3), PAD.left - 6, py);
  }
  ctx.textBaseline = 'top';
  ctx.textAlign = 'left';
  ctx.fillText('step 1', PAD.left, PAD.top + plotH + 6);
  ctx.textAlign = 'right';
  ctx.fillText(`step ${xMax}`, PAD.left + plotW, PAD.top + plotH + 6);

  line(ctx, s.train.filter((p) => p.loss > 0 || !logScale), x, y, color('--accent'), 2);
  line(ctx, s.validation.filter((p) => p.loss > 0 || !logScale), x, y, color('--ok'), 2, true);
}

function lastOf(points: LossPoint[]): LossPoint | undefined {
  return points[points.length - 1];
}

function line(ctx: CanvasRenderingContext2D, points: LossPoint[], x: (s: number) => number, y: (l: number) => number, stroke: string, width: number, dots = false): void {
  if (points.length === 0) return;
  ctx.strokeStyle = stroke;
  ctx.fillStyle = stroke;
  ctx.lineWidth = width;
  ctx.lineJoin = 'round';
  ctx.beginPath();
  points.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p.step), y(p.loss)) : ctx.lineTo(x(p.step), y(p.loss))));
  ctx.stroke();
  // A lone point (or the validation series, measured every few steps) needs dots to be seen.
  if (dots || points.length === 1) {
    for (const p of points) {
      ctx.beginPath();
      ctx.arc(x(p.step), y(p.loss), 3, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}
