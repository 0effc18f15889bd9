// "3. LoRA and training": which projections get an adapter (q_proj and v_proj by default, all seven offered),
// rank, α, dropout, rsLoRA, DoRA; the optimizer run (learning rate and schedule, warm-up, steps, batch, sequence
// length, gradient accumulation, clipping, seed), each box kept as typed with what is wrong beside it
// (settings_check.ts); the run's memory switch (recompute activations); and the engine's memory estimate for
// these settings, part by part (weights, adapter, optimizer state, activations), which the Train panel's Start
// button obeys as it obeys the checks: a refusal names the settings that would fit, each one click away.

import { useId } from 'react';
import { LORA_TARGETS, SCHEDULES, type LoraTarget, type MemoryAlternative, type MemoryEstimate, type ScheduleKind } from '../worker/protocol';
import { count, megabytes } from './model_panel';
import { NumberField, useSettingsCheck } from './number_field';
import { DEFAULT_CONTEXT, settingRules, type SettingField } from './settings_check';
import { useStudio } from './store';

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
  const contextLength = useStudio((s) => s.model.facts?.contextLength ?? DEFAULT_CONTEXT);
  const busy = useStudio((s) => ['starting', 'running', 'paused', 'stopping'].includes(s.train.status));
  const setLora = useStudio((s) => s.setLora);
  const setOptim = useStudio((s) => s.setOptim);
  const setField = useStudio((s) => s.setField);
  const { texts, check } = useSettingsCheck();
  const id = useId();
  // One box per numeric setting: its text as typed, its check beside it.
  const field = (f: SettingField, more: { min?: number; max?: number; step?: number; textBox?: boolean; title?: string } = {}) => (
    <NumberField label={settingRules(contextLength)[f].label} text={texts[f]} check={check.fields[f]} onText={(t) => setField(f, t)}
      step={settingRules(contextLength)[f].integer ? 1 : undefined} {...more} />
  );

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
            {field('r', { min: 1, max: 256, title: 'Usual ranks: 4, 8, 16, 32, 64' })}
            {field('alpha', { min: 0.01, max: 4096 })}
            {field('dropout', { min: 0, max: 0.9, step: 0.05 })}
            <label className="check" title="Scale by α/√r instead of α/r (Kalajdzievski 2023), so larger ranks keep learning">
              <input type="checkbox" checked={lora.rslora} onChange={(e) => setLora({ rslora: e.target.checked })} />
              <span>rsLoRA</span>
            </label>
            <label className="check" title="Weight-decomposed LoRA (Liu et al. 2024; PEFT's use_dora): also learn one magnitude per output row, starting at the row's norm in W">
              <input type="checkbox" checked={lora.dora === true} onChange={(e) => setLora({ dora: e.target.checked })} data-testid="lora-dora" />
              <span>DoRA</span>
            </label>
          </div>
          <p className="note">
            Scale {lora.rslora ? 'α/√r' : 'α/r'} = {(lora.rslora ? lora.alpha / Math.sqrt(lora.r) : lora.alpha / lora.r).toPrecision(3)}
            {lora.dora && ' · DoRA: W′ = m ⊙ (W + ΔW)/‖W + ΔW‖ per output row, m trained (Teach shows it); GGUF and MLX exports cannot hold it'}
          </p>
        </fieldset>

        <fieldset className="settings-group" disabled={busy}>
          <legend>Optimizer (AdamW)</legend>
          <div className="field-row">
            {field('lr', { textBox: true })}
            <label className="field">
              <span>Schedule</span>
              <select value={optim.schedule} onChange={(e) => setOptim({ schedule: e.target.value as ScheduleKind })}>
                {SCHEDULES.map((s) => <option key={s} value={s}>{s}</option>)}
              </select>
            </label>
            {field('warmupSteps', { min: 0, max: 100000 })}
            {field('steps', { min: 1, max: 1000000 })}
          </div>
          <div className="field-row">
            {field('batchSize', { min: 1, max: 1024 })}
            {field('seqLen', { min: 8, max: contextLength })}
            {field('gradAccum', { min: 1, max: 256, title: 'Micro-batches per optimizer step: the effective batch is batch size × this, at the memory of one batch' })}
            {field('maxGradNorm', { min: 0, max: 1000, step: 0.5, title: '0: no clipping' })}
            {field('seed', { min: 0, max: 2 ** 31 - 1 })}
          </div>
          <p className="note" id={`${id}-effective`}>
            Effective batch {count.format(optim.batchSize * optim.gradAccum)} rows × {seqLen} tokens per step.
          </p>
        </fieldset>

        <fieldset className="settings-group" disabled={busy}>
          <legend>GPU memory</legend>
          <div className="field-row">
            <label className="check">
              <input type="checkbox" checked={optim.recompute === true} onChange={(e) => setOptim({ recompute: e.target.checked })}
                aria-describedby={`${id}-recompute`} data-testid="recompute" />
              <span>Recompute activations</span>
            </label>
          </div>
          <p className="note" id={`${id}-recompute`}>
            Keeps only each layer's input and recomputes the rest in the backward: far less activation memory for about ⅓ more
            compute a step, and the same numbers bit for bit.
          </p>
        </fieldset>
      </div>
      <MemoryLine />
    </section>
  );
}

/** The parts of the estimate, as the bar draws them and the list names them. */
const PARTS: { key: keyof MemoryEstimate['breakdown']; name: string; what: (recompute: boolean) => string }[] = [
  { key: 'weights', name: 'Weights', what: () => 'the frozen base' },
  { key: 'adapter', name: 'Adapter', what: () => 'LoRA A and B, and their gradients' },
  { key: 'optimizer', name: 'Optimizer state', what: () => 'AdamW’s two moments and a last good copy' },
  { key: 'activations', name: 'Activations', what: (recompute) => (recompute ? 'each layer’s input, the rest recomputed' : 'kept for the backward') },
  { key: 'other', name: 'Other', what: () => 'token ids, uniforms, the loss' },
];

/** An alternative as its button says it: its own words, or for a new base dtype, the choice it makes in the Model panel. */
function alternativeButton(a: MemoryAlternative): string {
  if (!a.baseDtype) return `${a.label[0].toUpperCase()}${a.label.slice(1)}`;
  return `Choose the ${a.baseDtype.toUpperCase()} base${Object.keys(a.optim).length > 0 ? ' and the rest' : ''}`;
}

/**
 * "Needs about X MB of GPU memory; this GPU allows Y", drawn as a bar of its parts against that budget and
 * listed part by part; or why these settings cannot run, with a button for each setting that would fit.
 */
function MemoryLine() {
  const { estimate, error } = useStudio((s) => s.memory);
  const ready = useStudio((s) => s.model.status === 'ready');
  const recompute = useStudio((s) => s.settings.optim.recompute === true);
  const base = useStudio((s) => s.model.facts?.baseDtype);
  const busy = useStudio((s) => ['starting', 'running', 'paused', 'stopping'].includes(s.train.status));
  const apply = useStudio((s) => s.applyMemoryAlternative);
  if (!ready) return null;
  if (error) return <p className="inline-error" role="alert">{error.message}</p>;
  if (!estimate) return <p className="muted memory-line">Estimating GPU memory…</p>;
  const scale = Math.max(estimate.bytes, estimate.limitBytes);
  const parts = PARTS.map((p) => `${p.name.toLowerCase()} ${megabytes(estimate.breakdown[p.key])}`).join(', ');
  const reload = estimate.alternatives.some((a) => a.baseDtype);
  return (
    <div className="memory-line" data-testid="memory-estimate" data-fits={estimate.refusal === null}>
      <div className="memory-bar" role="img" aria-label={`GPU memory needed: ${parts}; the studio allows ${megabytes(estimate.limitBytes)}`}>
        {PARTS.map((p) => (
          <span key={p.key} className={`memory-part memory-${p.key}`} style={{ width: `${(100 * estimate.breakdown[p.key]) / scale}%` }} />
        ))}
        <span className="memory-limit" style={{ left: `${(100 * estimate.limitBytes) / scale}%` }} title="What the studio allows itself" />
      </div>
      <span>
        Needs about <strong>{megabytes(estimate.bytes)}</strong> of GPU memory; this GPU allows {megabytes(estimate.limitBytes)}
        <span className="muted">{estimate.measured ? ' (measured)' : ' (estimated)'}</span>
      </span>
      <dl className="memory-parts" data-testid="memory-breakdown">
        {PARTS.map((p) => (
          <div key={p.key} data-part={p.key}>
            <dt>
              <span className={`swatch memory-${p.key}`} aria-hidden="true" />
              {p.name}{p.key === 'weights' && base ? ` (${base})` : ''} <span className="muted">{p.what(recompute)}</span>
            </dt>
            <dd>{megabytes(estimate.breakdown[p.key])}</dd>
          </div>
        ))}
      </dl>
      {estimate.refusal && <p className="inline-error" role="alert" data-testid="memory-refusal">{estimate.refusal}</p>}
      {estimate.alternatives.length > 0 && (
        <div className="memory-alternatives" role="group" aria-label="Settings that would fit">
          {estimate.alternatives.map((a) => (
            <button type="button" key={a.label} onClick={() => apply(a)} disabled={busy} data-testid="memory-alternative">
              {alternativeButton(a)}
            </button>
          ))}
          {reload && <span className="muted">A new base dtype takes effect when the model is reloaded (Model panel).</span>}
        </div>
      )}
    </div>
  );
}
