// The Teach playground: a seeded 16×16 layer with rank, α and seed controls. A and B come from the seed at
// once (playground.ts); ΔW = (α/r)·B·A and y = W·x + (α/r)·B·(A·x) come back from the engine on the GPU,
// requested by the store's teach slice as the controls move (at most one request in flight); below them,
// what DoRA makes of the same layer (dora_view.tsx).
// This file draws; it computes nothing but labels and the parameter counts.

import { useId, useMemo, useState, type ReactNode } from 'react';
import { MatrixTable, tidyMatrix } from '../matrix_table';
import { useStudio } from '../store';
import { DoraPart } from './dora_view';
import { Heatmap, formatNumber, niceCeil } from './heatmap';
import { D, K, MAX_ALPHA, MAX_RANK, MAX_SEED, loraParams, playgroundLayer, type PlaygroundSettings } from './playground';

/** A and B are drawn uniform in ±0.5 (playground.ts), so this limit uses their whole colour range. */
const FACTOR_LIMIT = 0.5;
/**
 * ΔW keeps one scale whatever r and α are, so moving α visibly strengthens or fades the update (W's own
 * entries are within ±0.5); larger entries saturate, and the legend's min/max still gives them.
 */
const DELTA_LIMIT = 1;

const settingsText = (s: PlaygroundSettings) => `r = ${s.r}, α = ${s.alpha}, seed ${s.seed}`;

export function Playground() {
  const { settings, result, running, error } = useStudio((s) => s.teach.playground);
  const gpuStatus = useStudio((s) => s.gpu.status);
  const setPlayground = useStudio((s) => s.setPlayground);
  const { r, alpha, seed } = settings;
  const layer = useMemo(() => playgroundLayer(seed, r), [seed, r]);
  const ids = useId();

  const stale = running && !!result;
  const deltaW = result?.deltaW;
  const y = result ? result.y[0].map((v) => [v]) : undefined; // (1, D) → a column, beside ΔW's rows
  const maxAbs = (m: number[][]) => Math.max(...m.flat().map(Math.abs));

  return (
    <div className="teach-body playground">
      <h3>Playground: one {D}×{K} layer, W frozen</h3>
      <div className="pg-controls" role="group" aria-label="Playground settings">
        <RangeField id={`${ids}-r`} label="rank r" name="rank r" value={r} min={1} max={MAX_RANK} onChange={(v) => setPlayground({ r: v })} />
        <RangeField
          id={`${ids}-alpha`}
          label={<>α<span className="visually-hidden"> (alpha)</span></>}
          name="α (alpha)"
          value={alpha}
          min={0}
          max={MAX_ALPHA}
          onChange={(v) => setPlayground({ alpha: v })}
        />
        <div className="pg-field">
          <label htmlFor={`${ids}-seed`}>seed</label>
          <NumberField id={`${ids}-seed`} value={seed} min={0} max={MAX_SEED} onCommit={(v) => setPlayground({ seed: v })} />
          <button type="button" onClick={() => setPlayground({ seed: newSeed(seed) })}>New seed</button>
        </div>
        <p className="pg-scale">
          scale <span className="mono" data-testid="teach-scale">α/r = {alpha}/{r} = {formatNumber(alpha / r)}</span>
        </p>
      </div>

      <ParamCount r={r} />

      <div className="pg-picture">
        <div className="pg-equation">
          {/* B's slot keeps its width as r changes, so A and ΔW stay put; B and the scale sit against the "·". */}
          <div className="pg-slot pg-slot-wide pg-slot-end">
            <Heatmap
              name="B"
              values={layer.B}
              limit={FACTOR_LIMIT}
              lead={
                <span className="pg-op pg-op-scale" title="the scale α/r">
                  <span className="pg-op-label">α/r</span>
                  {formatNumber(alpha / r)} ×
                </span>
              }
            />
          </div>
          <span className="pg-op" aria-hidden="true">·</span>
          <div className="pg-slot pg-slot-wide">
            <Heatmap name="A" values={layer.A} limit={FACTOR_LIMIT} />
          </div>
          <span className="pg-op" aria-hidden="true">=</span>
          <div className="pg-slot pg-slot-wide">
            {deltaW ? (
              <Heatmap name="ΔW" values={deltaW} limit={DELTA_LIMIT} note="(α/r)·B·A" stale={stale} />
            ) : (
              <Pending name="ΔW" />
            )}
          </div>
        </div>
        <div className="pg-slot pg-slot-y">
          {y ? <Heatmap name="y" values={y} bars limit={niceCeil(maxAbs(y))} note="W·x + ΔW·x" stale={stale} /> : <Pending name="y" />}
        </div>
      </div>

      {deltaW && <DoraPart W={layer.W} deltaW={deltaW} stale={stale} />}

      <div className="pg-status" role="status">
        {gpuStatus === 'error' ? (
          'ΔW and y are computed on the GPU, and WebGPU is not available (see above).'
        ) : !result ? (
          gpuStatus === 'ready' ? 'Computing ΔW and y on the GPU…' : 'ΔW and y are computed on the GPU once it is ready.'
        ) : (
          <>
            ΔW and y computed on the GPU for {settingsText(result.settings)}.
            {stale && <span className="muted"> Updating…</span>}
          </>
        )}
      </div>
      {error && <p className="inline-error" role="alert">{error.message}</p>}

      <details className="pg-numbers">
        <summary>All numbers</summary>
        <div className="matrices">
          <MatrixTable name="W" rows={layer.W} note="frozen" />
          <MatrixTable name="x" rows={layer.x} />
          <MatrixTable name="A" rows={layer.A} />
          <MatrixTable name="B" rows={layer.B} />
          {result && <MatrixTable name="ΔW" rows={result.deltaW} note="(α/r)·B·A" result />}
          {result && <MatrixTable name="y" rows={result.y} result />}
        </div>
        {result && (
          <dl className="json">
            <dt>y</dt>
            <dd>
              <code data-testid="teach-playground-y" data-settings={`r=${result.settings.r}&alpha=${result.settings.alpha}&seed=${result.settings.seed}`}>
                {JSON.stringify(tidyMatrix(result.y)[0])}
              </code>
            </dd>
          </dl>
        )}
      </details>
    </div>
  );
}

function Pending({ name }: { name: string }) {
  return (
    <div className="heat-pending" aria-hidden="true">
      <span className="matrix-name">{name}</span>
      <span className="muted">from the GPU</span>
    </div>
  );
}

const fmtInt = new Intl.NumberFormat('en-US');

/** LoRA's r·(d + k) trainable numbers against d·k, as text and as two bars on one scale. */
function ParamCount({ r }: { r: number }) {
  const { lora, full } = loraParams(r, D, K);
  const top = Math.max(lora, full);
  const breakEven = (D * K) / (D + K);
  const big = loraParams(8, 4096, 4096);
  return (
    <div className="pg-params">
      <p data-testid="teach-params">
        trainable numbers: <span className="param-key param-key-lora" aria-hidden="true" />LoRA{' '}
        <span className="mono">r·(d+k) = {r}·({D}+{K}) = {lora}</span> vs <span className="param-key param-key-full" aria-hidden="true" />full{' '}
        <span className="mono">d·k = {D}·{K} = {full}</span>: <strong>{((100 * lora) / full).toFixed(1)}%</strong>
      </p>
      <div className="param-bars" aria-hidden="true">
        <span className="param-fill param-lora" style={{ width: `${(100 * lora) / top}%` }} />
        <span className="param-fill param-full" style={{ width: `${(100 * full) / top}%` }} />
      </div>
      <p className="note">
        LoRA saves numbers on a layer this small only while r &lt; d·k/(d+k) = {breakEven}; on a 4096×4096 projection r = 8
        trains {fmtInt.format(big.lora)} of {fmtInt.format(big.full)} ({((100 * big.lora) / big.full).toFixed(2)}%).
      </p>
    </div>
  );
}

function newSeed(old: number): number {
  const s = 1 + Math.floor(Math.random() * MAX_SEED);
  return s === old ? (s % MAX_SEED) + 1 : s;
}

interface RangeProps {
  id: string;
  /** What the label shows. */
  label: ReactNode;
  /** The label as text, for the number box's name. */
  name: string;
  value: number;
  min: number;
  max: number;
  onChange: (v: number) => void;
}

/** A labelled slider with its number beside it, editable. */
function RangeField({ id, label, name, value, min, max, onChange }: RangeProps) {
  return (
    <div className="pg-field">
      <label htmlFor={id}>{label}</label>
      <input id={id} type="range" min={min} max={max} step={1} value={value} onChange={(e) => onChange(e.target.valueAsNumber)} />
      <NumberField value={value} min={min} max={max} onCommit={onChange} aria-label={`${name}, exact value`} />
    </div>
  );
}

interface NumberProps {
  id?: string;
  'aria-label'?: string;
  value: number;
  min: number;
  max: number;
  onCommit: (v: number) => void;
}

/**
 * An integer box that commits whole numbers in range as they are typed (so the picture follows), and on
 * Enter or leaving it clamps whatever is there; an empty or unreadable box goes back to the value.
 */
function NumberField({ value, min, max, onCommit, ...rest }: NumberProps) {
  const [draft, setDraft] = useState<string | null>(null);
  const settle = (text: string) => {
    const v = Number(text);
    if (text.trim() !== '' && Number.isFinite(v)) onCommit(Math.min(max, Math.max(min, Math.round(v))));
    setDraft(null);
  };
  return (
    <input
      {...rest}
      className="pg-number"
      type="number"
      inputMode="numeric"
      min={min}
      max={max}
      step={1}
      value={draft ?? String(value)}
      onChange={(e) => {
        setDraft(e.target.value);
        const v = e.target.valueAsNumber;
        if (Number.isInteger(v) && v >= min && v <= max) onCommit(v);
      }}
      onBlur={(e) => settle(e.target.value)}
      onKeyDown={(e) => { if (e.key === 'Enter') settle(e.currentTarget.value); }}
    />
  );
}
