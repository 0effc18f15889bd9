// "3. LoRA and training": which projections get an adapter (q_proj and v_proj by default, all seven offered),
// rank, α, dropout, rsLoRA; the optimizer run (learning rate and schedule, warm-up, steps, batch, sequence
// length, gradient accumulation, clipping, seed); and the engine's memory estimate for these settings, which
// the Train panel's Start button obeys.

import { useEffect, useId, useState } from 'react';
import { LORA_TARGETS, SCHEDULES, type LoraTarget, type ScheduleKind } from '../worker/protocol';
import { count, megabytes } from './model_panel';
import { useStudio } from './store';

const RANKS = [1, 2, 4, 8, 16, 32, 64];

const TARGET_HELP: Record<LoraTarget, string> = {
  q_proj: 'attention queries',
  k_proj: 'attention keys',
  v_proj: 'attention values',
  o_proj: 'attention output',
  gate_proj: 'MLP gate',
  up_proj: 'MLP up',
  down_proj: 'MLP down',
};

export function LoraPanel() {
  const { lora, optim, seqLen } = useStudio((s) => s.settings);
  const contextLength = useStudio((s) => s.model.facts?.contextLength ?? 2048);
  const busy = useStudio((s) => ['starting', 'running', 'paused', 'stopping'].includes(s.train.status));
  const setLora = useStudio((s) => s.setLora);
  const setOptim = useStudio((s) => s.setOptim);
  const setDataSettings = useStudio((s) => s.setDataSettings);
  const id = useId();

  const toggle = (t: LoraTarget, on: boolean) =>
    setLora({ targets: LORA_TARGETS.filter((x) => (x === t ? on : lora.targets.includes(x))) });

  return (
    <section className="panel" aria-labelledby="lora-title" data-testid="lora-panel">
      <h2 id="lora-title"><span className="step-no" aria-hidden="true">3</span>LoRA and training settings</h2>
      <div className="settings-grid">
        <fieldset className="settings-group" disabled={busy}>
          <legend>Adapter</legend>
          <div className="targets" role="group" aria-label="Target modules">
            {LORA_TARGETS.map((t) => (
              <label className="check" key={t} title={TARGET_HELP[t]}>
                <input type="checkbox" checked={lora.targets.includes(t)} onChange={(e) => toggle(t, e.target.checked)} />
                <span className="mono">{t}</span>
              </label>
            ))}
          </div>
          <div className="field-row">
            <label className="field narrow">
              <span>Rank r</span>
              <select value={lora.r} onChange={(e) => setLora({ r: Number(e.target.value) })}>
                {RANKS.map((r) => <option key={r} value={r}>{r}</option>)}
              </select>
            </label>
            <NumberField label="α (alpha)" value={lora.alpha} min={0.01} max={4096} onChange={(alpha) => setLora({ alpha })} />
            <NumberField label="Dropout" value={lora.dropout} min={0} max={0.9} step={0.05} onChange={(dropout) => setLora({ dropout })} />
            <label className="check" title="Scale by α/√r instead of α/r (Kalajdzievski 2023), so larger ranks keep learning">
              <input type="checkbox" checked={lora.rslora} onChange={(e) => setLora({ rslora: e.target.checked })} />
              <span>rsLoRA</span>
            </label>
          </div>
          <p className="note">
            Scale {lora.rslora ? 'α/√r' : 'α/r'} = {(lora.rslora ? lora.alpha / Math.sqrt(lora.r) : lora.alpha / lora.r).toPrecision(3)}
          </p>
        </fieldset>

        <fieldset className="settings-group" disabled={busy}>
          <legend>Optimizer (AdamW)</legend>
          <div className="field-row">
            <NumberField label="Learning rate" value={optim.lr} min={1e-7} max={1} text onChange={(lr) => setOptim({ lr })} />
            <label className="field">
              <span>Schedule</span>
              <select value={optim.schedule} onChange={(e) => setOptim({ schedule: e.target.value as ScheduleKind })}>
                {SCHEDULES.map((s) => <option key={s} value={s}>{s}</option>)}
              </select>
            </label>
            <NumberField label="Warm-up steps" value={optim.warmupSteps} min={0} max={100000} integer onChange={(warmupSteps) => setOptim({ warmupSteps })} />
            <NumberField label="Steps" value={optim.steps} min={1} max={1000000} integer onChange={(steps) => setOptim({ steps })} />
          </div>
          <div className="field-row">
            <NumberField label="Batch size" value={optim.batchSize} min={1} max={1024} integer onChange={(batchSize) => setOptim({ batchSize })} />
            <NumberField label="Sequence length" value={seqLen} min={8} max={contextLength} integer onChange={(v) => setDataSettings({ seqLen: v })} />
            <NumberField
              label="Grad. accumulation"
              value={optim.gradAccum}
              min={1}
              max={256}
              integer
              title="Micro-batches per optimizer step: the effective batch is batch size × this, at the memory of one batch"
              onChange={(gradAccum) => setOptim({ gradAccum })}
            />
            <NumberField label="Clip grad. norm" value={optim.maxGradNorm} min={0} max={1000} step={0.5} title="0: no clipping" onChange={(maxGradNorm) => setOptim({ maxGradNorm })} />
            <NumberField label="Seed" value={optim.seed} min={0} max={2 ** 31 - 1} integer onChange={(seed) => setOptim({ seed })} />
          </div>
          <p className="note" id={`${id}-effective`}>
            Effective batch {count.format(optim.batchSize * optim.gradAccum)} rows × {seqLen} tokens per step.
          </p>
        </fieldset>
      </div>
      <MemoryLine />
    </section>
  );
}

/** "Needs about X MB of GPU memory; this GPU allows Y", or why these settings cannot run. */
function MemoryLine() {
  const { estimate, error } = useStudio((s) => s.memory);
  const ready = useStudio((s) => s.model.status === 'ready');
  if (!ready) return null;
  if (error) return <p className="inline-error" role="alert">{error.message}</p>;
  if (!estimate) return <p className="muted memory-line">Estimating GPU memory…</p>;
  const share = Math.min(1, estimate.bytes / estimate.limitBytes);
  return (
    <div className="memory-line" data-testid="memory-estimate" data-fits={estimate.refusal === null}>
      <meter min={0} max={1} low={0.7} high={0.9} optimum={0.2} value={share} aria-label="GPU memory needed, as a share of what the studio allows" />
      <span>
        Needs about <strong>{megabytes(estimate.bytes)}</strong> of GPU memory; this GPU allows {megabytes(estimate.limitBytes)}
        <span className="muted">
          {' '}(weights {megabytes(estimate.breakdown.weights)}, adapter and optimizer {megabytes(estimate.breakdown.adapter + estimate.breakdown.optimizer)},
          activations {megabytes(estimate.breakdown.activations)}{estimate.measured ? ', measured' : ', estimated'})
        </span>
      </span>
      {estimate.refusal && <p className="inline-error" role="alert">{estimate.refusal}</p>}
    </div>
  );
}

interface NumberFieldProps {
  label: string;
  value: number;
  min: number;
  max: number;
  step?: number;
  integer?: boolean;
  /** A text box (for values like 3e-4) rather than a spin box. */
  text?: boolean;
  title?: string;
  onChange: (v: number) => void;
}

/** A number input that keeps what is typed, and commits only values in [min, max]; others are marked invalid. */
function NumberField({ label, value, min, max, step, integer, text, title, onChange }: NumberFieldProps) {
  const [draft, setDraft] = useState(String(value));
  useEffect(() => {
    if (Number(draft) !== value) setDraft(String(value));
    // Only an outside change of `value` resets the draft.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [value]);
  const parsed = Number(draft);
  const valid = draft.trim() !== '' && Number.isFinite(parsed) && parsed >= min && parsed <= max && (!integer || Number.isInteger(parsed));
  const errorId = useId();
  return (
    <label className="field narrow" title={title}>
      <span>{label}</span>
      <input
        type={text ? 'text' : 'number'}
        inputMode="decimal"
        value={draft}
        min={text ? undefined : min}
        max={text ? undefined : max}
        step={text ? undefined : (step ?? (integer ? 1 : 'any'))}
        aria-invalid={!valid}
        aria-describedby={valid ? undefined : errorId}
        onChange={(e) => {
          setDraft(e.target.value);
          const v = Number(e.target.value);
          if (e.target.value.trim() !== '' && Number.isFinite(v) && v >= min && v <= max && (!integer || Number.isInteger(v))) onChange(v);
        }}
        onBlur={() => { if (!valid) setDraft(String(value)); }}
      />
      {!valid && <span id={errorId} className="field-error">{integer ? 'a whole number ' : ''}from {min} to {max}</span>}
    </label>
  );
}
