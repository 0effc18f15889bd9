// "Adapter library": the adapters saved in this browser (src/io/library.ts, IndexedDB), as a table with
// load (into the loaded model, to try it or train it further), resume (a run that stopped or whose tab
// closed, from its checkpoint), rename (inline), delete (with an inline confirmation), download (a .zip of
// the two PEFT files, or each file on its own), export for other tools (a GGUF adapter, an MLX-LM folder, the
// loaded model with the adapter merged in, the run's PEFT + TRL recipe: library_export.ts, with the reason
// beside the entry when a format cannot hold it) and import (a .zip, or adapter_config.json +
// adapter_model.safetensors). Every training run writes itself into this list as it goes, and the list
// follows the changes other tabs make (a rename, a delete, another tab's run).
//
// Import and the loaded model: this panel imports without `expected`, so the config must parse and the
// weights must agree with it and with each other (every layer, both factors, r from the config); the shapes
// are checked against the model when the adapter is loaded into it (the engine refuses a misfit, saying which
// projection and which shapes disagree).

import { useEffect, useId, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { MAX_NAME_LENGTH, type AdapterSummary } from '../io/library';
import type { StudioExportFormat } from '../worker/protocol';
import { EXPORT_CHOICES, exportFromLibrary } from './library_export';
import { useStudio } from './store';

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
  if (bytes < 1e9) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

/** A file name from an adapter name: characters that file systems refuse become '_'. */
function fileStem(name: string): string {
  const stem = name.replace(/[\\/:*?"<>|\u0000-\u001f]+/g, '_').replace(/^[.\s]+|[.\s]+$/g, '');
  return stem === '' ? 'adapter' : stem;
}

/** Hands bytes to the browser as a download, through a short-lived object URL. */
function saveFile(fileName: string, bytes: Uint8Array, type: string): void {
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = fileName;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has started once click() returns; the delay only covers browsers that read the URL late.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function LibraryPanel() {
  const { status, items, storage, importing, error, notice } = useStudio((s) => s.library);
  const refreshLibrary = useStudio((s) => s.refreshLibrary);
  const watchLibrary = useStudio((s) => s.watchLibrary);
  const importAdapter = useStudio((s) => s.importAdapter);
  const dismiss = useStudio((s) => s.dismissLibraryMessage);
  const inputId = useId();

  // Read now, and again whenever another tab (or this tab's engine) changes the library.
  useEffect(() => {
    void refreshLibrary();
    return watchLibrary();
  }, [refreshLibrary, watchLibrary]);

  return (
    <section className="panel library-panel" aria-labelledby="library-title">
      <h2 id="library-title">Adapter library</h2>
      <p className="lede">
        Adapters saved in this browser. Download one as the two files PEFT reads (<code>adapter_config.json</code> and{' '}
        <code>adapter_model.safetensors</code>, zipped or not) and load it in Python with{' '}
        <span className="formula">PeftModel.from_pretrained(base, folder)</span>; import one from the Hub or a download the same way.
        Under Files ▾, export one for llama.cpp (GGUF) or MLX-LM, merged into the loaded model as a whole model folder,
        or as the Python script that reruns its training with PEFT + TRL on GPUs.
      </p>

      <div className="toolbar">
        <div className="toolbar-item">
          <label htmlFor={inputId}>Import a PEFT adapter</label>
          <input
            id={inputId}
            type="file"
            multiple
            accept=".zip,.json,.safetensors,application/zip,application/json"
            disabled={importing}
            aria-describedby={`${inputId}-help`}
            onChange={(e) => {
              const files = [...(e.target.files ?? [])];
              e.target.value = ''; // choosing the same file again should import it again
              if (files.length > 0) void importAdapter(files);
            }}
          />
        </div>
        {storage?.usage !== undefined && storage.quota !== undefined && (
          <span className="muted" data-testid="library-storage">
            Browser storage: {formatBytes(storage.usage)} used of {formatBytes(storage.quota)}
          </span>
        )}
      </div>
      <p id={`${inputId}-help`} className="note">
        Choose a .zip, or both files together. An import is checked against itself (the config, and every layer's
        weights against it) and against the loaded model: one trained on another base model, or whose shapes do not
        fit, is refused with the reason and nothing is written.
      </p>

      <div aria-live="polite" className="library-messages">
        {importing && <p className="muted">Importing…</p>}
        {notice && <p className="library-notice" data-testid="library-notice">{notice}</p>}
      </div>
      {error && (
        <div className="inline-error library-error" role="alert" data-testid="library-error">
          <span>{error.message}</span>
          <button type="button" onClick={dismiss}>Dismiss</button>
        </div>
      )}

      {status === 'loading' && <p className="muted">Opening the library…</p>}
      {status === 'ready' && items.length === 0 && (
        <p className="muted" data-testid="library-empty">No adapters saved yet. Train one, or import a PEFT adapter above.</p>
      )}
      {items.length > 0 && (
        <div className="table-scroll">
          <table className="library-table" aria-labelledby="library-title">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Base model</th>
                <th scope="col" className="num">Steps</th>
                <th scope="col" className="num">Last loss</th>
                <th scope="col" className="num">Size</th>
                <th scope="col">Saved</th>
                <th scope="col"><span className="visually-hidden">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {items.map((item) => <AdapterRow key={item.id} item={item} />)}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function AdapterRow({ item }: { item: AdapterSummary }) {
  const renameAdapter = useStudio((s) => s.renameAdapter);
  const deleteAdapter = useStudio((s) => s.deleteAdapter);
  const exportAdapter = useStudio((s) => s.exportAdapter);
  const loadAdapter = useStudio((s) => s.loadAdapter);
  const resumeRun = useStudio((s) => s.resumeRun);
  // Load needs a model in the engine and no run; Resume loads the model it needs itself.
  const trainBusy = useStudio((s) => ['starting', 'running', 'paused', 'stopping'].includes(s.train.status));
  const modelReady = useStudio((s) => s.model.status === 'ready');
  const modelLoading = useStudio((s) => s.model.status === 'loading');
  const isRunEntry = useStudio((s) => s.train.runEntryId === item.id && ['starting', 'running', 'paused', 'stopping'].includes(s.train.status));
  const [mode, setMode] = useState<'view' | 'rename' | 'confirm-delete'>('view');
  const [exporting, setExporting] = useState<StudioExportFormat | null>(null);
  const [exported, setExported] = useState<{ ok: boolean; text: string } | null>(null);
  const renameButton = useRef<HTMLButtonElement>(null);
  const deleteButton = useRef<HTMLButtonElement>(null);
  const keepButton = useRef<HTMLButtonElement>(null);
  const returnFocus = useRef<HTMLButtonElement | null>(null);

  // Focus follows the mode: into the confirmation's safe choice, and back to the button that opened a mode.
  useEffect(() => {
    if (mode === 'confirm-delete') keepButton.current?.focus();
    if (mode === 'view' && returnFocus.current) {
      returnFocus.current.focus();
      returnFocus.current = null;
    }
  }, [mode]);

  const close = (from: HTMLButtonElement | null) => {
    returnFocus.current = from;
    setMode('view');
  };

  const menuId = `files-${item.id}`; // ids are UUIDs, so this is also a valid CSS anchor name after '--'

  const download = async (what: 'zip' | 'config' | 'weights', from?: HTMLElement) => {
    from?.closest<HTMLElement>('[popover]')?.hidePopover();
    const out = await exportAdapter(item.id);
    if (out === null) return;
    if (what === 'zip') saveFile(`${fileStem(item.name)}.zip`, out.zip, 'application/zip');
    if (what === 'config') saveFile(out.files[0].name, out.files[0].bytes, 'application/json');
    if (what === 'weights') saveFile(out.files[1].name, out.files[1].bytes, 'application/octet-stream');
  };

  const exportAs = async (format: StudioExportFormat, from: HTMLElement) => {
    from.closest<HTMLElement>('[popover]')?.hidePopover();
    setExporting(format);
    setExported(null);
    setExported(await exportFromLibrary(item.id, format));
    setExporting(null);
  };

  const submitRename = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const name = String(new FormData(e.currentTarget).get('name') ?? '');
    if (name.trim() === item.name || (await renameAdapter(item.id, name))) close(renameButton.current);
  };

  const onRenameKey = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      close(renameButton.current);
    }
  };

  return (
    <tr data-testid="library-row" data-adapter-id={item.id}>
      <th scope="row" className="library-name">
        {mode === 'rename' ? (
          <form className="rename-form" onSubmit={(e) => void submitRename(e)}>
            <input
              name="name"
              defaultValue={item.name}
              maxLength={MAX_NAME_LENGTH}
              required
              autoFocus
              onFocus={(e) => e.currentTarget.select()}
              onKeyDown={onRenameKey}
              aria-label={`New name for ${item.name}`}
            />
            <button type="submit" aria-label={`Save the new name of ${item.name}`}>Save</button>
            <button type="button" onClick={() => close(renameButton.current)} aria-label={`Cancel renaming ${item.name}`}>Cancel</button>
          </form>
        ) : (
          <>
            <span data-testid="library-name">{item.name}</span>
            {item.hasCheckpoint && (
              <span className="tag" title="Training stopped here and can resume" data-testid="library-checkpoint">
                {isRunEntry ? 'training' : 'unfinished'}: step {item.steps}{item.plannedSteps !== null ? ` of ${item.plannedSteps}` : ''}
              </span>
            )}
          </>
        )}
      </th>
      <td className="mono">{item.baseModel || <span className="muted">unknown</span>}</td>
      <td className="num">{item.steps}</td>
      <td className="num">{item.lastLoss === null ? <span className="muted">—</span> : item.lastLoss.toFixed(3)}</td>
      <td className="num">{formatBytes(item.bytes)}</td>
      <td><time dateTime={new Date(item.updatedAt).toISOString()}>{dateFormat.format(item.updatedAt)}</time></td>
      <td>
        {mode === 'confirm-delete' ? (
          <div className="row-actions" role="group" aria-label={`Confirm deleting ${item.name}`}>
            <span className="confirm-text">Delete “{item.name}”? This cannot be undone.</span>
            <button type="button" className="danger" onClick={() => void deleteAdapter(item.id)} aria-label={`Yes, delete ${item.name}`}>
              Delete
            </button>
            <button type="button" ref={keepButton} onClick={() => close(deleteButton.current)} aria-label={`Keep ${item.name}`}>
              Keep
            </button>
          </div>
        ) : (
          <div className="row-actions">
            <button
              type="button"
              onClick={() => void loadAdapter(item.id)}
              disabled={!modelReady || trainBusy}
              title={!modelReady ? 'Load a model first' : trainBusy ? 'Stop training first' : 'Put this adapter into the loaded model, to try it or train it further'}
              aria-label={`Load ${item.name} into the model`}
            >
              Load
            </button>
            {item.hasCheckpoint && (
              <button
                type="button"
                onClick={() => void resumeRun(item.id)}
                disabled={trainBusy || modelLoading}
                title={trainBusy ? 'Stop training first' : `Go on training from step ${item.steps}, with its optimizer state`}
                aria-label={`Resume training ${item.name}`}
              >
                Resume
              </button>
            )}
            <button type="button" ref={renameButton} onClick={() => setMode('rename')} aria-label={`Rename ${item.name}`} disabled={mode === 'rename'}>
              Rename
            </button>
            <button type="button" onClick={() => void download('zip')} aria-label={`Download ${item.name} as .zip`}>
              Download
            </button>
            {/* A popover lives in the top layer, so the table's scroll box cannot clip it; anchor positioning
                puts it under its button (where unsupported, the browser centres it). */}
            <button
              type="button"
              popoverTarget={menuId}
              style={{ anchorName: `--${menuId}` }}
              aria-label={`Separate files of ${item.name}`}
            >
              Files ▾
            </button>
            <div id={menuId} popover="auto" className="files-menu" style={{ positionAnchor: `--${menuId}` }} role="group" aria-label={`Files of ${item.name}`}>
              <button type="button" onClick={(e) => void download('config', e.currentTarget)} aria-label={`Download adapter_config.json of ${item.name}`}>
                adapter_config.json
              </button>
              <button type="button" onClick={(e) => void download('weights', e.currentTarget)} aria-label={`Download adapter_model.safetensors of ${item.name}`}>
                adapter_model.safetensors
              </button>
              {EXPORT_CHOICES.map((c) => (
                <button key={c.format} type="button" disabled={exporting !== null} onClick={(e) => void exportAs(c.format, e.currentTarget)} aria-label={`Export ${item.name} as ${c.what}`}>
                  {c.label}
                </button>
              ))}
            </div>
            <button type="button" ref={deleteButton} className="danger" onClick={() => setMode('confirm-delete')} aria-label={`Delete ${item.name}`}>
              Delete
            </button>
          </div>
        )}
        <div aria-live="polite">
          {exporting && <p className="muted export-message">Exporting {EXPORT_CHOICES.find((c) => c.format === exporting)!.what}…</p>}
          {exported && (
            <p className={exported.ok ? 'export-message' : 'export-message inline-error'} data-testid="library-export-message">{exported.text}</p>
          )}
        </div>
      </td>
    </tr>
  );
}
