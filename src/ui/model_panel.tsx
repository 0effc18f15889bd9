// "1. Model": the embedded moby-llama (loaded as soon as the GPU is ready), a Hugging Face Hub id, or a local
// folder (picked with <input webkitdirectory> or dropped); how its frozen base weights are held on the GPU
// (the checkpoint's own dtype by default; f32, bf16, f16, NF4 or int8), applied at load, so a change after it
// offers a reload; a progress bar while files are read; the loaded model's facts and the adapter's trainable
// parameters for the current LoRA settings.
// A Hub access token (for gated or private repositories) lives in the store's memory only: a password field,
// never in the URL, IndexedDB or a checkpoint, gone on reload; the engine sends it as `Authorization: Bearer`.

import { useEffect, useId, useState, type DragEvent, type FormEvent } from 'react';
import { filesFromDirectory, filesFromFileList, type DirectoryHandleLike } from '../io/model_source';
import { BASE_DTYPES, type BaseDtype } from '../worker/protocol';
import { useStudio } from './store';
import type { ModelChoice } from './state/studio_state';

export const count = new Intl.NumberFormat('en-US');

/** 1967808 → "1.97 M" */
export function compact(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

export function megabytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  return bytes < 1e6 ? `${(bytes / 1e3).toFixed(0)} kB` : `${(bytes / 1e6).toFixed(1)} MB`;
}

type Kind = ModelChoice['kind'];

/** What each way of holding the base costs, in memory and in precision (the adapter and all arithmetic stay float32). */
const BASE_HELP: Record<BaseDtype, string> = {
  f32: '4 bytes a weight: exact for any checkpoint, twice the memory of bf16 or f16.',
  bf16: '2 bytes a weight with float32’s range and an 8-bit mantissa: exact for a BF16 checkpoint; F32 weights are rounded.',
  f16: '2 bytes a weight with an 11-bit mantissa, but nothing beyond ±65,504: exact for an F16 checkpoint; F32 and BF16 weights are rounded.',
  nf4: 'About ½ byte a weight (QLoRA’s 4-bit NormalFloat, one scale per 64 weights): the least memory and the most rounding.',
  int8: 'About 1 byte a weight (8 bits, one scale per output row): a quarter of float32, less rounding than NF4.',
};

export function ModelPanel() {
  const gpuStatus = useStudio((s) => s.gpu.status);
  const { status, label, progress, facts, seconds, error } = useStudio((s) => s.model);
  const trainable = useStudio((s) => s.memory.trainable);
  const running = useStudio((s) => s.train.status === 'running' || s.train.status === 'paused' || s.train.status === 'starting' || s.train.status === 'stopping');
  const loadModel = useStudio((s) => s.loadModel);
  const hubToken = useStudio((s) => s.model.hubToken);
  const setHubToken = useStudio((s) => s.setHubToken);
  const [kind, setKind] = useState<Kind>('default');
  const [hubId, setHubId] = useState('HuggingFaceTB/SmolLM2-135M');
  const [revision, setRevision] = useState('');
  const [dragging, setDragging] = useState(false);
  const id = useId();

  // The embedded model loads as soon as the GPU is up (the action ignores repeats).
  useEffect(() => {
    if (gpuStatus === 'ready' && useStudio.getState().model.status === 'idle') void loadModel({ kind: 'default' });
  }, [gpuStatus, loadModel]);

  const disabled = gpuStatus !== 'ready' || status === 'loading' || running;

  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (kind === 'default') void loadModel({ kind: 'default' });
    if (kind === 'hub') void loadModel({ kind: 'hub', id: hubId.trim(), revision: revision.trim() || undefined, token: hubToken.trim() || undefined });
  };

  const loadFiles = (files: Map<string, File>, folder: string) => {
    setKind('files');
    void loadModel({ kind: 'files', label: folder, files: [...files].map(([path, blob]) => ({ path, blob })) });
  };

  const onPick = (list: FileList | null) => {
    const files = [...(list ?? [])];
    if (files.length === 0) return;
    const folder = files[0].webkitRelativePath.split('/')[0] || 'folder';
    loadFiles(filesFromFileList(files), folder);
  };

  const onDrop = async (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    if (disabled) return;
    const items = [...e.dataTransfer.items].filter((i) => i.kind === 'file');
    // A dropped folder arrives as a directory handle (Chrome); loose files as files.
    const handles = await Promise.all(items.map((i) => (i as DataTransferItem & { getAsFileSystemHandle?: () => Promise<unknown> }).getAsFileSystemHandle?.()));
    const dir = handles.find((h): h is DirectoryHandleLike => (h as { kind?: string } | undefined)?.kind === 'directory');
    if (dir) loadFiles(await filesFromDirectory(dir), dir.name);
    else if (e.dataTransfer.files.length > 0) loadFiles(filesFromFileList(e.dataTransfer.files), 'dropped files');
  };

  return (
    <section className="panel" aria-labelledby="model-title" data-testid="model-panel">
      <h2 id="model-title"><span className="step-no" aria-hidden="true">1</span>Model</h2>
      <form className="model-form" onSubmit={submit}>
        <fieldset className="choice-group" disabled={disabled}>
          <legend className="visually-hidden">Where the model comes from</legend>
          <label className="choice">
            <input type="radio" name={`${id}-kind`} checked={kind === 'default'} onChange={() => setKind('default')} />
            <span>
              <strong>moby-llama</strong> <span className="muted">(built in: a tiny Llama that has read only Moby-Dick)</span>
            </span>
          </label>
          <label className="choice">
            <input type="radio" name={`${id}-kind`} checked={kind === 'hub'} onChange={() => setKind('hub')} />
            <span>Hugging Face Hub</span>
          </label>
          {kind === 'hub' && (
            <div className="field-row indent">
              <label className="field">
                <span>Model id or URL</span>
                <input value={hubId} onChange={(e) => setHubId(e.target.value)} spellCheck={false} placeholder="HuggingFaceTB/SmolLM2-135M" required />
              </label>
              <label className="field narrow">
                <span>Revision</span>
                <input value={revision} onChange={(e) => setRevision(e.target.value)} spellCheck={false} placeholder="main" />
              </label>
              <label className="field">
                <span>Access token</span>
                <input
                  type="password"
                  value={hubToken}
                  onChange={(e) => setHubToken(e.target.value)}
                  autoComplete="off"
                  spellCheck={false}
                  placeholder="hf_… (gated models only)"
                  aria-describedby={`${id}-token-help`}
                />
              </label>
              <p id={`${id}-token-help`} className="note">
                For gated or private models: accept the license on huggingface.co, then paste a read token. It stays in
                this tab's memory only (not saved, not in the URL) and is sent only with the requests to the Hub.
              </p>
            </div>
          )}
          <label className="choice">
            <input type="radio" name={`${id}-kind`} checked={kind === 'files'} onChange={() => setKind('files')} />
            <span>A folder on this computer</span>
          </label>
          {kind === 'files' && (
            <div
              className="drop-zone indent"
              data-dragging={dragging}
              onDragOver={(e) => { e.preventDefault(); setDragging(true); }}
              onDragLeave={() => setDragging(false)}
              onDrop={(e) => void onDrop(e)}
            >
              <label htmlFor={`${id}-folder`}>Choose the model folder</label>
              <input
                id={`${id}-folder`}
                type="file"
                multiple
                {...{ webkitdirectory: '' }}
                onChange={(e) => { onPick(e.target.files); e.target.value = ''; }}
              />
              <span className="muted">or drop it here (config.json, model.safetensors, tokenizer.json)</span>
            </div>
          )}
          <BaseDtypeField />
        </fieldset>
        {kind !== 'files' && (
          <button type="submit" disabled={disabled}>
            {facts && kind === 'default' && facts.name === 'moby-llama' ? 'Reload' : 'Load'}
          </button>
        )}
      </form>

      <div aria-live="polite" className="status-line">
        {status === 'loading' && (
          <div className="load-progress">
            <span>Loading {label}{progress ? `: ${progress.file}` : '…'}</span>
            <progress
              max={100}
              value={progress?.percent ?? undefined}
              aria-label={`Loading ${label}`}
              data-testid="model-progress"
            />
            <span className="muted mono">{progress ? (progress.percent !== undefined ? `${progress.percent.toFixed(0)}%` : megabytes(progress.loaded)) : ''}</span>
          </div>
        )}
        {gpuStatus === 'starting' && <span className="muted">Waiting for the GPU…</span>}
      </div>
      {error && <p className="inline-error" role="alert" data-testid="model-error">{error.message}</p>}

      {facts && (
        <dl className="facts model-facts" data-testid="model-facts">
          <div><dt>model</dt><dd data-testid="model-name">{facts.name}</dd></div>
          <div><dt>architecture</dt><dd>{facts.architecture}</dd></div>
          <div><dt>parameters</dt><dd data-testid="model-params">{compact(facts.params)}</dd></div>
          <div><dt>layers</dt><dd>{facts.layers}</dd></div>
          <div><dt>hidden</dt><dd>{facts.hidden}</dd></div>
          <div><dt>heads / kv</dt><dd>{facts.heads} / {facts.kvHeads}</dd></div>
          <div><dt>vocabulary</dt><dd>{count.format(facts.vocab)}</dd></div>
          <div><dt>context</dt><dd>{facts.contextLength}</dd></div>
          <div><dt>weights</dt><dd data-testid="model-base-dtype">{facts.dtype} stored, {facts.baseDtype} on the GPU</dd></div>
          {seconds !== null && <div><dt>loaded in</dt><dd>{seconds.toFixed(1)} s</dd></div>}
          {trainable && (
            <div className="facts-wide" data-testid="trainable">
              <dt>LoRA trains</dt>
              <dd>{count.format(trainable.params)} parameters ({(100 * trainable.share).toFixed(2)}% of the model)</dd>
            </div>
          )}
        </dl>
      )}
    </section>
  );
}

/** "Base weights": how the next load holds the frozen base, what that costs, and a reload when the loaded model holds it otherwise. */
function BaseDtypeField() {
  const { baseDtype, loadedBaseDtype, facts, status } = useStudio((s) => s.model);
  const setBaseDtype = useStudio((s) => s.setBaseDtype);
  const reloadModel = useStudio((s) => s.reloadModel);
  // An adapter only the model holds (not a run's entry, nor loaded from one still in the library) goes with a reload.
  const unsaved = useStudio((s) => s.train.adapterSteps !== null && s.train.runEntryId === null && !(s.train.adapter?.from && !s.train.adapter.from.deleted));
  const id = useId();
  const stale = facts !== null && status === 'ready' && baseDtype !== loadedBaseDtype;
  const help = baseDtype
    ? BASE_HELP[baseDtype]
    : `As the checkpoint stores them${facts ? ` (${facts.dtype}, so ${facts.baseDtype})` : ''}: nothing is rounded.`;
  return (
    <div className="base-dtype">
      <div className="field-row">
        <label className="field">
          <span>Base weights</span>
          <select value={baseDtype ?? ''} onChange={(e) => setBaseDtype((e.target.value || null) as BaseDtype | null)} aria-describedby={`${id}-help`} data-testid="base-dtype">
            <option value="">Default (as stored{facts ? `: ${facts.dtype}` : ''})</option>
            {BASE_DTYPES.map((d) => <option key={d} value={d}>{d}</option>)}
          </select>
        </label>
        {stale && (
          <button type="button" onClick={() => void reloadModel()} aria-describedby={`${id}-reload`} data-testid="base-dtype-reload">
            Reload with {baseDtype ?? 'the stored dtype'}
          </button>
        )}
      </div>
      <p className="note" id={`${id}-help`}>
        {help} Only the frozen base changes: the adapter, its gradients, AdamW and every sum stay float32.
      </p>
      {stale && (
        <p className="note" id={`${id}-reload`}>
          The loaded model holds its base as {facts.baseDtype}; the choice applies when it loads again.
          {unsaved && ' Reloading drops the adapter it holds, as any load does: save it to the library first.'}
        </p>
      )}
    </div>
  );
}
