// "4. Train": start, pause, resume and stop; a progress bar, the step, loss, tokens/s and ETA; the loss chart
// (training and validation, linear or log scale); why a run stopped; and saving the adapter to the library.
// The per-step numbers come from trainLive.ts through a throttled subscription and the chart's own
// subscription, never through the studio store, so a step does not re-render the app.

import { useId, useState, type FormEvent } from 'react';
import { LossChart } from './LossChart';
import { useStudio } from './store';
import { trainLive, useThrottled, type TrainLive } from './trainLive';

const selectLast = (s: TrainLive) => s.last;

function duration(sec: number): string {
  if (!Number.isFinite(sec)) return '—';
  if (sec < 60) return `${sec.toFixed(0)} s`;
  const m = Math.floor(sec / 60), s = Math.round(sec % 60);
  if (m < 60) return `${m} min ${s} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function TrainPanel() {
  const train = useStudio((s) => s.train);
  const modelReady = useStudio((s) => s.model.status === 'ready');
  const dataReady = useStudio((s) => s.data.status === 'ready');
  const estimate = useStudio((s) => s.memory.estimate);
  const steps = useStudio((s) => s.settings.optim.steps);
  const startTraining = useStudio((s) => s.startTraining);
  const pauseTraining = useStudio((s) => s.pauseTraining);
  const resumeTraining = useStudio((s) => s.resumeTraining);
  const stopTraining = useStudio((s) => s.stopTraining);
  const [logScale, setLogScale] = useState(false);
  const id = useId();

  const active = ['starting', 'running', 'paused', 'stopping'].includes(train.status);
  // Why Start is off, in words: the first thing missing.
  const blocker = !modelReady
    ? 'Load a model first.'
    : !dataReady
      ? 'Load training data first.'
      : !estimate
        ? 'Checking that the run fits in GPU memory…'
        : estimate.refusal;
  const canStart = !active && blocker === null;

  return (
    <section className="panel train-panel" aria-labelledby="train-title" data-testid="train-panel">
      <h2 id="train-title"><span className="step-no" aria-hidden="true">4</span>Train</h2>
      <div className="toolbar">
        <button type="button" className="primary" onClick={() => void startTraining()} disabled={!canStart} aria-describedby={blocker ? `${id}-why` : undefined}>
          {train.adapterSteps !== null && !active ? 'Start again' : 'Start'}
        </button>
        {train.status === 'paused' ? (
          <button type="button" onClick={() => void resumeTraining()}>Resume</button>
        ) : (
          <button type="button" onClick={() => void pauseTraining()} disabled={train.status !== 'running'}>Pause</button>
        )}
        <button type="button" className="danger" onClick={() => void stopTraining()} disabled={!active || train.status === 'stopping'}>Stop</button>
        {blocker && !active && <span id={`${id}-why`} className="muted" data-testid="start-blocked">{blocker}</span>}
        {train.adapterSteps !== null && !active && <span className="muted">Start again trains a fresh adapter; save this one first to keep it.</span>}
      </div>

      <Readout steps={steps} status={train.status} />

      <div className="chart-box">
        <div className="chart-head">
          <span className="legend"><span className="swatch swatch-train" aria-hidden="true" />training loss</span>
          <span className="legend"><span className="swatch swatch-val" aria-hidden="true" />validation loss</span>
          <label className="check">
            <input type="checkbox" checked={logScale} onChange={(e) => setLogScale(e.target.checked)} />
            <span>Log scale</span>
          </label>
        </div>
        <LossChart logScale={logScale} label="Loss chart" />
      </div>

      <div aria-live="polite">
        {train.stopped && (
          <p className={train.stopped.reason === 'done' || train.stopped.reason === 'stopped' ? 'notice' : 'inline-error'} data-testid="train-stopped" data-reason={train.stopped.reason}>
            {train.stopped.message}
          </p>
        )}
      </div>
      {train.error && <p className="inline-error" role="alert" data-testid="train-error">{train.error.message}</p>}

      {train.adapterSteps !== null && (train.status === 'finished' || train.status === 'paused' || train.status === 'error') && <SaveForm />}
    </section>
  );
}

/** Step, loss, tokens/s, elapsed and ETA, re-rendered at most four times a second. */
function Readout({ steps, status }: { steps: number; status: string }) {
  const last = useThrottled(trainLive, selectLast, 250);
  const total = last?.steps ?? steps;
  const done = last?.step ?? 0;
  return (
    <div className="readout">
      <progress max={total} value={done} aria-label="Training progress" />
      <dl className="facts">
        <div><dt>step</dt><dd data-testid="train-step">{done} / {total}</dd></div>
        <div><dt>loss</dt><dd data-testid="train-loss">{last ? last.loss.toFixed(4) : '—'}</dd></div>
        <div><dt>validation</dt><dd>{last?.valLoss !== undefined ? last.valLoss.toFixed(4) : '—'}</dd></div>
        <div><dt>lr</dt><dd>{last ? last.lr.toExponential(2) : '—'}</dd></div>
        <div><dt>tokens/s</dt><dd data-testid="train-tps">{last ? Math.round(last.tokensPerSec).toLocaleString('en-US') : '—'}</dd></div>
        <div><dt>elapsed</dt><dd>{last ? duration(last.elapsedSec) : '—'}</dd></div>
        <div><dt>ETA</dt><dd>{last && (status === 'running' || status === 'paused') ? duration(last.etaSec) : '—'}</dd></div>
        {status === 'paused' && <div><dt>state</dt><dd>paused</dd></div>}
        {status === 'starting' && <div><dt>state</dt><dd>preparing the GPU programs…</dd></div>}
      </dl>
    </div>
  );
}

function SaveForm() {
  const { saving, saved, adapterSteps, status } = useStudio((s) => s.train);
  const active = status === 'running' || status === 'stopping';
  // While paused the run's own count is the live one.
  const live = useThrottled(trainLive, selectLast, 250);
  const steps = status === 'paused' ? (live?.step ?? 0) : adapterSteps;
  const modelName = useStudio((s) => s.model.facts?.name ?? 'model');
  const saveAdapter = useStudio((s) => s.saveAdapter);
  const [name, setName] = useState(() => `${modelName.split('/').pop()} adapter`);
  const id = useId();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    await saveAdapter(name);
  };
  return (
    <form className="save-form" onSubmit={(e) => void submit(e)}>
      <label htmlFor={`${id}-name`}>Adapter name</label>
      <input id={`${id}-name`} value={name} onChange={(e) => setName(e.target.value)} maxLength={100} required />
      <button type="submit" disabled={saving || active || name.trim() === ''}>
        {saving ? 'Saving…' : 'Save to library'}
      </button>
      <span className="muted">{steps} step{steps === 1 ? '' : 's'} trained{status === 'paused' ? ' so far (paused)' : ''}</span>
      <span aria-live="polite" className="notice" data-testid="save-notice">{saved ? `Saved “${saved.name}” to the library.` : ''}</span>
    </form>
  );
}
