// "4. Train": start, pause, resume and stop; a progress bar, the step, loss, tokens/s and ETA; the loss chart
// (training and validation, linear or log scale); why a run stopped; and saving the adapter to the library.
// An adapter loaded from the library (or just trained) can be trained further ("Continue training": a fresh
// AdamW and schedule for the set number of steps). Every run checkpoints itself into the library while it
// goes (weights, AdamW moments, step, loss history), so a closed tab resumes from the Library panel; the
// line under the buttons says which step the library holds, or why the latest checkpoint failed. Pause
// takes hold after the step in flight: the panel says "pausing" until then, and then the step it waits
// after, which is the step its checkpoint holds. The library entries it names follow the library: a
// rename shows, and a deleted entry is no longer offered (no Resume of a run whose entry is gone).
// Start waits for the settings to pass settings_check.ts and the memory estimate, and says what is missing.
// The keyboard focus follows the run (Start → Stop/Pause → Start; Pause ↔ Resume is one button, so the
// focus stays on it) instead of dropping to the page body.
// The per-step numbers come from train_live.ts through a throttled subscription and the chart's own
// subscription, never through the studio store, so a step does not re-render the app.

import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { gpuSpeedNote } from './gpu_note';
import { LossChart } from './loss_chart';
import { useSettingsCheck } from './number_field';
import { DEFAULT_CONTEXT, settingRules } from './settings_check';
import { useStudio } from './store';
import { trainLive, useThrottled, type TrainLive } from './train_live';

const selectLast = (s: TrainLive) => s.last;
const selectBase = (s: TrainLive) => s.base;
const selectPlanned = (s: TrainLive) => s.steps;
// The latest validation loss measured, kept on the steps that measure none, so the figure does not blink.
const selectLastVal = (s: TrainLive) => s.validation.at(-1)?.loss;

/** Where the keyboard focus goes, by run state, when the button that held it went away or turned off. */
const FOCUS_ORDER: Record<string, string[]> = {
  idle: ['start', 'continue', 'resume-run', 'status'],
  starting: ['stop', 'status'],
  running: ['pause', 'stop', 'status'],
  paused: ['resume', 'stop', 'status'],
  stopping: ['status'],
};

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
  const continueTraining = useStudio((s) => s.continueTraining);
  const resumeRun = useStudio((s) => s.resumeRun);
  const [logScale, setLogScale] = useState(false);
  const id = useId();
  const { check } = useSettingsCheck();
  const contextLength = useStudio((s) => s.model.facts?.contextLength ?? DEFAULT_CONTEXT);
  const toolbar = useRef<HTMLDivElement>(null);
  const focusInBar = useRef(false);

  const active = ['starting', 'running', 'paused', 'stopping'].includes(train.status);
  // Why Start is off, in words: the first thing missing.
  const blocker = !modelReady
    ? 'Load a model first.'
    : !dataReady
      ? 'Load training data first.'
      : check.errors.length > 0
        ? `Fix ${check.errors.map((f) => settingRules(contextLength)[f].label).join(', ')} in the settings first.`
        : !estimate
          ? 'Checking that the run fits in GPU memory…'
          : estimate.refusal;
  const canStart = !active && blocker === null;
  const held = train.adapter;
  const canContinue = canStart && held !== null;

  // A pressed button that goes away or turns off (Start once the run begins, Pause becoming Resume, Stop
  // while stopping) would drop the keyboard focus on the page body: hand it to the control that now matters.
  useEffect(() => {
    const bar = toolbar.current;
    if (!bar || !focusInBar.current) return;
    const a = document.activeElement as HTMLElement | null;
    const lost = !a || a === document.body || (bar.contains(a) && ((a as HTMLButtonElement).disabled || a.dataset.focus === 'status'));
    if (!lost) return;
    const order = FOCUS_ORDER[train.status] ?? FOCUS_ORDER.idle;
    for (const name of order) {
      const el = bar.querySelector<HTMLElement>(`[data-focus="${name}"]:not(:disabled)`);
      if (el) return el.focus();
    }
  });

  return (
    <section className="panel train-panel" aria-labelledby="train-title" data-testid="train-panel">
      <h2 id="train-title"><span className="step-no" aria-hidden="true">4</span>Train</h2>
      <div
        className="toolbar"
        ref={toolbar}
        onFocus={() => { focusInBar.current = true; }}
        onBlur={(e) => {
          // Focus the user moved elsewhere is theirs; focus dropped by a button turning off is not.
          const from = e.target as Element;
          const off = (from instanceof HTMLButtonElement && from.disabled) || !from.isConnected;
          if (e.relatedTarget ? !toolbar.current?.contains(e.relatedTarget as Node) : !off) focusInBar.current = false;
        }}
      >
        <button type="button" className="primary" data-focus="start" onClick={() => void startTraining()} disabled={!canStart} aria-describedby={blocker ? `${id}-why` : undefined}>
          {train.adapterSteps !== null && !active ? 'Start again' : 'Start'}
        </button>
        {train.status === 'paused' ? (
          <button type="button" data-focus="resume" onClick={() => void resumeTraining()}>Resume</button>
        ) : (
          <button type="button" data-focus="pause" onClick={() => void pauseTraining()} disabled={train.status !== 'running'}>Pause</button>
        )}
        <button type="button" className="danger" data-focus="stop" onClick={() => void stopTraining()} disabled={!active || train.status === 'stopping'}>Stop</button>
        {train.resumable && train.runEntryId && !active && (
          <button type="button" data-focus="resume-run" onClick={() => void resumeRun(train.runEntryId!)} disabled={!modelReady || !dataReady}>
            Resume the run
          </button>
        )}
        {held && train.adapterSteps !== null && !active && (
          <button type="button" data-focus="continue" onClick={() => void continueTraining()} disabled={!canContinue} aria-describedby={`${id}-continue`}>
            Continue training
          </button>
        )}
        <RunState stopping={train.status === 'stopping'} />
        {blocker && !active && <span id={`${id}-why`} className="muted" data-testid="start-blocked">{blocker}</span>}
        {train.adapterSteps !== null && !active && (
          <span className="muted">
            Start again trains a fresh adapter; {train.runEntryId || (held?.from && !held.from.deleted) ? 'this one stays in the library.' : 'save this one first to keep it.'}
          </span>
        )}
      </div>
      {held && train.adapterSteps !== null && !active && (
        <p className="note" id={`${id}-continue`} data-testid="held-adapter">
          The model holds {held.from ? `“${held.from.name}”${held.from.deleted ? ', since deleted from the library' : ' from the library'}` : 'the adapter trained here'} ({train.adapterSteps} step{train.adapterSteps === 1 ? '' : 's'},
          r={held.lora.r}, α={held.lora.alpha}). Continue training runs {steps} more step{steps === 1 ? '' : 's'} on it with the
          settings above; the optimizer (AdamW's moments) and the learning-rate schedule start afresh, and the result goes
          into the library as a new entry.
          {held.note && <> {held.note}</>}
        </p>
      )}
      <CheckpointLine />

      <Readout steps={steps} status={train.status} pausedAt={train.pausedAt} />

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

/**
 * What the run is doing when no button says it (a live region; the focus rests here while nothing can be
 * pressed): a Stop pressed before the first step must not look ignored while the GPU programs build.
 */
function RunState({ stopping }: { stopping: boolean }) {
  const last = useThrottled(trainLive, selectLast, 250); // null until this run's first step
  return (
    <span role="status" tabIndex={-1} data-focus="status" data-testid="train-state" className="run-state">
      {stopping && (last === null ? 'Stopping before the first step: the run ends as soon as its GPU programs are built.' : 'Stopping after the step in progress…')}
    </span>
  );
}

/**
 * Where the run's checkpoint stands: the step the library holds (resumable after a closed tab), or why not.
 * A run whose entry is deleted from the library (here or in another tab) goes on without it: its writes
 * stop rather than put the entry back, and this line says so.
 */
function CheckpointLine() {
  const { status, checkpoint, kind, resumable, entryDeleted, pausedAt } = useStudio((s) => s.train);
  const active = ['starting', 'running', 'paused', 'stopping'].includes(status);
  if (entryDeleted !== null && (active || status === 'finished')) {
    return (
      <p className="note" aria-live="polite" data-testid="checkpoint-status" data-deleted="true">
        “{entryDeleted}” was deleted from the library{active ? ': the run goes on, but no longer saves checkpoints (a closed tab cannot resume it).' : '.'} Save the
        adapter to the library {active ? 'when you pause or stop it' : 'below'} to keep it.
      </p>
    );
  }
  if (checkpoint?.error && (active || status === 'finished')) {
    return (
      <p className="inline-error" role="alert" data-testid="checkpoint-status">
        {checkpoint.error}. Training goes on{checkpoint.step !== null ? `; the library keeps the checkpoint from step ${checkpoint.step}` : ''}. Free some browser storage (delete old adapters).
      </p>
    );
  }
  let text: string | null = null;
  if (active && kind === 'resume' && !checkpoint) text = 'Resumed from the library checkpoint: weights, AdamW moments, step and schedule restored.';
  else if (status === 'paused' && pausedAt !== null && checkpoint?.step === pausedAt) text = `Paused at step ${pausedAt}; its checkpoint is in the library: if this tab closes, resume the run from the Library panel.`;
  else if (active && checkpoint?.step != null) text = `Checkpoint at step ${checkpoint.step} is in the library: if this tab closes, resume the run from the Library panel.`;
  else if (active) text = 'The run saves a checkpoint to the library every 30 s, on pause and on stop.';
  else if (status === 'finished' && resumable) text = 'The run is in the library as an unfinished run: “Resume the run” goes on to its planned steps with its optimizer state, here or after a reload.';
  if (!text) return null;
  return <p className="muted" aria-live="polite" data-testid="checkpoint-status">{text}</p>;
}

/** Step, loss, tokens/s, elapsed and ETA, re-rendered at most four times a second. */
function Readout({ steps, status, pausedAt }: { steps: number; status: string; pausedAt: number | null }) {
  const last = useThrottled(trainLive, selectLast, 250);
  const lastVal = useThrottled(trainLive, selectLastVal, 250);
  const speedNote = gpuSpeedNote(useStudio((s) => s.gpu.info));
  // Before the first step of a run, an adapter's own steps (loaded, or resuming) and where it is going.
  const base = useThrottled(trainLive, selectBase, 250);
  const planned = useThrottled(trainLive, selectPlanned, 250);
  const total = last?.steps ?? (base > 0 ? planned : steps);
  const done = last?.step ?? base;
  return (
    <div className="readout">
      <progress max={total} value={done} aria-label="Training progress" />
      <dl className="facts">
        <div><dt>step</dt><dd data-testid="train-step">{done} / {total}</dd></div>
        <div><dt>loss</dt><dd data-testid="train-loss">{last ? last.loss.toFixed(4) : '—'}</dd></div>
        <div><dt>validation</dt><dd data-testid="train-val">{lastVal !== undefined ? lastVal.toFixed(4) : '—'}</dd></div>
        <div><dt>lr</dt><dd>{last ? last.lr.toExponential(2) : '—'}</dd></div>
        <div><dt>tokens/s</dt><dd data-testid="train-tps">{last ? Math.round(last.tokensPerSec).toLocaleString('en-US') : '—'}</dd></div>
        <div><dt>elapsed</dt><dd>{last ? duration(last.elapsedSec) : '—'}</dd></div>
        <div><dt>ETA</dt><dd>{last && (status === 'running' || status === 'paused') ? duration(last.etaSec) : '—'}</dd></div>
        {status === 'paused' && <div><dt>state</dt><dd data-testid="train-paused">{pausedAt === null ? 'pausing after the step in progress…' : `paused after step ${pausedAt}`}</dd></div>}
        {status === 'starting' && <div><dt>state</dt><dd>preparing the GPU programs…</dd></div>}
      </dl>
      {speedNote && <p className="muted" data-testid="gpu-speed-note">{speedNote}</p>}
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
