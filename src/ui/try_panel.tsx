// "5. Try it": a prompt continued by the base model and by the model with the adapter, side by side, with
// temperature, top-k and a token budget; a live α slider scales the adapter (trained here or loaded from the
// library) from 0 (the base model exactly) through its trained α to twice that, and regenerates the adapted
// column as it moves, so a class can watch the model move from base to adapted without retraining.

import { useId } from 'react';
import { useStudio } from './store';
import type { GenerationOutput } from './state/studio_state';

export function TryPanel() {
  const t = useStudio((s) => s.tryIt);
  const setTry = useStudio((s) => s.setTry);
  const setAlphaScale = useStudio((s) => s.setAlphaScale);
  // The adapter's own α: the slider's 1× (the engine multiplies the scale α/r by the slider's factor).
  const nominal = useStudio((s) => s.train.adapter?.lora.alpha ?? s.settings.lora.alpha);
  const adapterName = useStudio((s) => s.train.adapter?.from?.name ?? null);
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
          <div className="field slider">
            <label htmlFor={`${id}-alpha`}>Adapter α</label>
            <input id={`${id}-alpha`} type="range" min={0} max={2} step={0.05} value={t.alphaScale} disabled={!hasAdapter}
              onChange={(e) => setAlphaScale(Number(e.target.value))} aria-valuetext={alphaText(t.alphaScale, nominal)}
              aria-describedby={`${id}-alpha-out`} data-testid="try-alpha" />
            <output id={`${id}-alpha-out`} htmlFor={`${id}-alpha`} data-testid="try-alpha-value">{alphaText(t.alphaScale, nominal)}</output>
          </div>
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
          title={hasAdapter ? `With ${adapterName ? `“${adapterName}”` : 'the adapter'} (α = ${fmtAlpha((t.adapted.status === 'idle' ? t.alphaScale : t.adapted.alphaScale) * nominal)})` : 'With the adapter'}
          testId="try-adapted"
          out={t.adapted}
          empty={hasAdapter ? undefined : 'Train an adapter, or load one from the library, to compare.'}
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

const fmtAlpha = (a: number) => String(Number(a.toPrecision(3)));

/** "α = 8 (trained at 16)", "α = 0: the base model", "α = 16, as trained". */
function alphaText(scale: number, nominal: number): string {
  const a = fmtAlpha(scale * nominal);
  if (scale === 0) return `α = 0: the base model`;
  if (scale === 1) return `α = ${a}, as trained`;
  return `α = ${a} (trained at ${fmtAlpha(nominal)})`;
}

function clamp(raw: string, lo: number, hi: number): number {
  const v = Number(raw);
  return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo;
}
