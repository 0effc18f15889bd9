// "5. Try it": a prompt continued by the base model and by the model with the adapter, side by side, with
// temperature, top-k and a token budget; an α slider scales the adapter while generating (0 gives the base
// model back, 1 the adapter as trained, above 1 exaggerates it).

import { useId } from 'react';
import { useStudio } from './store';
import type { GenerationOutput } from './studioSlices';

export function TryPanel() {
  const t = useStudio((s) => s.tryIt);
  const setTry = useStudio((s) => s.setTry);
  const generate = useStudio((s) => s.generate);
  const modelReady = useStudio((s) => s.model.status === 'ready' && s.model.facts?.hasTokenizer);
  const hasAdapter = useStudio((s) => s.train.adapterSteps !== null);
  const training = useStudio((s) => ['starting', 'running', 'stopping'].includes(s.train.status));
  const busy = t.base.status === 'running' || t.adapted.status === 'running';
  const id = useId();
  const why = !modelReady ? 'Load a model with a tokenizer first.' : training ? 'Pause or stop training to try the model.' : null;

  return (
    <section className="panel" aria-labelledby="try-title" data-testid="try-panel">
      <h2 id="try-title"><span className="step-no" aria-hidden="true">5</span>Try it</h2>
      <form
        className="try-form"
        onSubmit={(e) => {
          e.preventDefault();
          void generate();
        }}
      >
        <label htmlFor={`${id}-prompt`}>Prompt</label>
        <textarea id={`${id}-prompt`} rows={2} value={t.prompt} onChange={(e) => setTry({ prompt: e.target.value })} />
        <div className="field-row">
          <label className="field narrow">
            <span>Temperature</span>
            <input type="number" min={0} max={2} step={0.1} value={t.temperature} onChange={(e) => setTry({ temperature: clamp(e.target.value, 0, 2) })} />
          </label>
          <label className="field narrow">
            <span>Top-k</span>
            <input type="number" min={0} max={1000} step={1} value={t.topK} onChange={(e) => setTry({ topK: Math.round(clamp(e.target.value, 0, 1000)) })} />
          </label>
          <label className="field narrow">
            <span>Max tokens</span>
            <input type="number" min={1} max={200} step={1} value={t.maxTokens} onChange={(e) => setTry({ maxTokens: Math.round(clamp(e.target.value, 1, 200)) })} />
          </label>
          <label className="field slider">
            <span>Adapter scale α × <output htmlFor={`${id}-alpha`}>{t.alphaScale.toFixed(1)}</output></span>
            <input id={`${id}-alpha`} type="range" min={0} max={2} step={0.1} value={t.alphaScale} disabled={!hasAdapter}
              onChange={(e) => setTry({ alphaScale: Number(e.target.value) })} aria-valuetext={`${t.alphaScale.toFixed(1)} times α`} />
          </label>
          <button type="submit" className="primary" disabled={!!why || busy || t.prompt.trim() === ''} aria-describedby={why ? `${id}-why` : undefined}>
            {busy ? 'Generating…' : 'Generate'}
          </button>
          {why && <span id={`${id}-why`} className="muted">{why}</span>}
        </div>
      </form>
      <p className="note">Temperature 0 always picks the likeliest token; top-k 0 keeps every token.</p>
      <div className="outputs">
        <Output title="Base model" testId="try-base" out={t.base} />
        <Output
          title={hasAdapter ? `With the adapter (α × ${t.alphaScale.toFixed(1)})` : 'With the adapter'}
          testId="try-adapted"
          out={t.adapted}
          empty={hasAdapter ? undefined : 'Train an adapter to compare.'}
        />
      </div>
    </section>
  );
}

function Output({ title, out, testId, empty }: { title: string; out: GenerationOutput; testId: string; empty?: string }) {
  return (
    <figure className="output" data-testid={testId} data-status={out.status} aria-busy={out.status === 'running'}>
      <figcaption>
        {title}
        {out.status === 'done' && out.seconds !== null && (
          <span className="muted"> · {out.tokens} tokens in {out.seconds.toFixed(1)} s</span>
        )}
      </figcaption>
      {out.error ? (
        <p className="inline-error" role="alert">{out.error.message}</p>
      ) : (
        <p className="output-text" data-testid={`${testId}-text`}>
          {out.status === 'idle' ? (
            <span className="muted">{empty ?? 'Press Generate.'}</span>
          ) : (
            <>
              <span className="output-prompt">{out.prompt}</span>
              <span data-testid={`${testId}-continuation`}>{out.text}</span>
              {out.status === 'running' && <span className="muted"> …</span>}
            </>
          )}
        </p>
      )}
    </figure>
  );
}

function clamp(raw: string, lo: number, hi: number): number {
  const v = Number(raw);
  return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo;
}
