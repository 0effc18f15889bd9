// "3. LoRA and training": which projections get an adapter (q_proj and v_proj by default, all seven offered),
// rank, α, dropout, rsLoRA, DoRA; the optimizer run (learning rate and schedule, warm-up, steps, batch, sequence
// length, gradient accumulation, clipping, seed), each box kept as typed with what is wrong beside it
// (settings_check.ts); and the engine's memory estimate for these settings, which the Train panel's Start
// button obeys as it obeys the checks.

import { useId } from 'react';
import { LORA_TARGETS, SCHEDULES, type LoraTarget, type ScheduleKind } from '../worker/protocol';
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
