// "2. Data": the demo State of the Union paragraphs preloaded, or the user's own (a .jsonl or .txt file chosen
// or dropped, or pasted text); the validation share and packing; what the tokenizer made of it (counts, the
// first rows with their token counts, and the first row cut into tokens), and a warning when that is too
// little to learn or validate on (settings_check.ts).

import { useId, useState, type DragEvent } from 'react';
import { count } from './model_panel';
import { NumberField, useSettingsCheck } from './number_field';
import { useStudio } from './store';
import { DEMO_DATA } from './studio_defaults';

/** Larger files are refused before reading: the engine holds every row in memory. */
const MAX_DATA_BYTES = 64 << 20;

const FORMAT_NAMES: Record<string, string> = {
  text: 'plain text',
  'text-rows': '{"text"} rows',
  'prompt-completion': '{"prompt", "completion"} rows',
  chat: 'chat {"messages"} rows',
  input_ids: 'token id rows',
};

export function DataPanel() {
  const { status, source, result, error } = useStudio((s) => s.data);
  const modelReady = useStudio((s) => s.model.status === 'ready');
  const { pack, seqLen } = useStudio((s) => s.settings);
  const { texts, check } = useSettingsCheck();
  const setField = useStudio((s) => s.setField);
  const busy = useStudio((s) => ['starting', 'running', 'paused', 'stopping'].includes(s.train.status));
  const setDataText = useStudio((s) => s.setDataText);
  const useDemoData = useStudio((s) => s.useDemoData);
  const setDataSettings = useStudio((s) => s.setDataSettings);
  const [pasted, setPasted] = useState('');
  const [dragging, setDragging] = useState(false);
  const [fileError, setFileError] = useState<string | null>(null);
  const id = useId();
  const disabled = !modelReady || busy;

  const readFile = async (file: File | undefined) => {
    if (!file) return;
    if (file.size > MAX_DATA_BYTES) {
      setFileError(`${file.name} is ${(file.size / 1e6).toFixed(0)} MB; the studio takes data files up to ${MAX_DATA_BYTES >> 20} MB. Use a part of it.`);
      return;
    }
    setFileError(null);
    await setDataText(file.name, await file.text());
  };

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    if (!disabled) void readFile(e.dataTransfer.files[0]);
  };

  return (
    <section className="panel" aria-labelledby="data-title" data-testid="data-panel">
      <h2 id="data-title"><span className="step-no" aria-hidden="true">2</span>Data</h2>
      <p className="lede">
        {source?.demo !== false ? (
          <>Demo: <strong>{DEMO_DATA.title}</strong>. Teach the whaler to speak like a president.</>
        ) : (
          <>Your data: <strong className="mono">{source.name}</strong>{' '}
            <button type="button" className="link-button" onClick={() => void useDemoData()} disabled={disabled}>Use the demo again</button>
          </>
        )}
      </p>

      <div
        className="drop-zone"
        data-dragging={dragging}
        onDragOver={(e) => { e.preventDefault(); setDragging(true); }}
        onDragLeave={() => setDragging(false)}
        onDrop={onDrop}
      >
        <label htmlFor={`${id}-file`}>Use a file</label>
        <input id={`${id}-file`} type="file" accept=".jsonl,.json,.ndjson,.txt,.md,text/plain,application/json" disabled={disabled}
          onChange={(e) => { void readFile(e.target.files?.[0]); e.target.value = ''; }} />
        <span className="muted">or drop one here: .jsonl rows of {'{"text"}'}, {'{"prompt", "completion"}'} or {'{"messages"}'}, or plain text</span>
      </div>
      <details className="paste">
        <summary>Paste text instead</summary>
        <label htmlFor={`${id}-paste`} className="visually-hidden">Training text</label>
        <textarea id={`${id}-paste`} rows={4} value={pasted} onChange={(e) => setPasted(e.target.value)} placeholder="Paste plain text or JSONL rows…" />
        <button type="button" disabled={disabled || pasted.trim() === ''} onClick={() => void setDataText('pasted text', pasted)}>Use this text</button>
      </details>

      <div className="field-row">
        <NumberField label="Validation share" text={texts.validationShare} check={check.fields.validationShare} min={0} max={0.5} step={0.05}
          disabled={disabled} onText={(t) => setField('validationShare', t)} />
        <label className="check">
          <input type="checkbox" checked={pack} disabled={disabled} onChange={(e) => setDataSettings({ pack: e.target.checked })} />
          <span>Pack rows into full {seqLen}-token blocks</span>
        </label>
      </div>

      <div aria-live="polite" className="status-line">
        {status === 'loading' && <span className="muted">Tokenizing…</span>}
        {!modelReady && <span className="muted">The data is tokenized once a model is loaded.</span>}
      </div>
      {(fileError || error) && <p className="inline-error" role="alert" data-testid="data-error">{fileError ?? error!.message}</p>}

      {result && (
        <>
          <dl className="facts" data-testid="data-stats">
            <div><dt>format</dt><dd>{FORMAT_NAMES[result.format] ?? result.format}</dd></div>
            <div><dt>examples</dt><dd>{count.format(result.stats.rows)}</dd></div>
            <div><dt>tokens</dt><dd>{count.format(result.stats.tokens)}</dd></div>
            <div><dt>with loss</dt><dd>{count.format(result.stats.trainableTokens)}</dd></div>
            <div><dt>rows of {result.seqLen}</dt><dd data-testid="data-rows">{count.format(result.trainRows)} train, {count.format(result.validationRows)} validation</dd></div>
            {result.stats.truncated > 0 && <div><dt>truncated</dt><dd>{result.stats.truncated}</dd></div>}
            {result.stats.skipped > 0 && <div><dt>skipped</dt><dd>{result.stats.skipped}</dd></div>}
          </dl>
          {check.dataWarnings.map((w) => <p className="field-warning" key={w} data-testid="data-warning">{w}</p>)}
          {result.firstTokens.length > 0 && (
            <div className="tokens" aria-label="The first row, cut into tokens">
              {result.firstTokens.map((t, i) => (
                <span className="token" key={i}>{t.replace(/ /g, '·').replace(/\n/g, '↵') || '∅'}</span>
              ))}
              <span className="muted">…</span>
            </div>
          )}
          <div className="table-scroll preview">
            <table className="preview-table" data-testid="data-preview">
              <caption className="visually-hidden">The first examples and their token counts</caption>
              <thead>
                <tr><th scope="col" className="num">Line</th><th scope="col">Text</th><th scope="col" className="num">Tokens</th></tr>
              </thead>
              <tbody>
                {result.preview.map((row) => (
                  <tr key={row.line}>
                    <td className="num">{row.line}</td>
                    <td className="preview-text">{row.text}</td>
                    <td className="num">{row.tokens}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
