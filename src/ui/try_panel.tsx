// "5. Try it": a prompt continued by the base model and two comparison panes side by side, with temperature,
// top-k, a token budget and a sampling seed (Resample: the next seed), each box kept as typed with what is
// wrong beside it (settings_check.ts). A pane runs the held adapter, where a live α slider scales it (trained
// here or loaded from the library) from 0 (the base model exactly) through its trained α to twice that; or a
// library adapter attached beside it; or a live blend of the attached ones (try_adapters.tsx). Sliders
// regenerate the panes they drive as they move, so a class can watch the model move without retraining.

import { useId, useMemo } from 'react';
import { NumberField } from './number_field';
import { checkTry, fieldTexts, TRY_RULES } from './settings_check';
import { useStudio } from './store';
import type { GenerationOutput } from './state/studio_state';
import { AttachedAdapters, PaneChooser, paneTitle } from './try_adapters';

export function TryPanel() {
  const t = useStudio((s) => s.tryIt);
  const setTry = useStudio((s) => s.setTry);
  const setTryField = useStudio((s) => s.setTryField);
  const resample = useStudio((s) => s.resample);
  const { texts, check } = useMemo(() => {
    const texts = fieldTexts({ temperature: t.temperature, topK: t.topK, maxTokens: t.maxTokens, seed: t.seed }, t.drafts);
    return { texts, check: checkTry(texts) };
  }, [t.temperature, t.topK, t.maxTokens, t.seed, t.drafts]);
  const setAlphaScale = useStudio((s) => s.setAlphaScale);
  // The adapter's own α: the slider's 1× (the engine multiplies the scale α/r by the slider's factor).
  const nominal = useStudio((s) => s.train.adapter?.lora.alpha ?? s.settings.lora.alpha);
  const dora = useStudio((s) => s.train.adapter?.lora.dora ?? s.settings.lora.dora ?? false);
  const adapterName = useStudio((s) => s.train.adapter?.from?.name ?? null);
  const generate = useStudio((s) => s.generate);
  const modelReady = useStudio((s) => s.model.status === 'ready' && s.model.facts?.hasTokenizer);
  const hasAdapter = useStudio((s) => s.train.adapterSteps !== null);
  const training = useStudio((s) => ['starting', 'running', 'stopping'].includes(s.train.status));
  const busy = t.base.status === 'running' || t.adapted.status === 'running' || t.second.status === 'running';
  const id = useId();
  const why = !modelReady
    ? 'Load a model with a tokenizer first.'
    : training
      ? 'Pause or stop training to try the model.'
      : check.errors.length > 0
        ? `Fix ${check.errors.map((f) => TRY_RULES[f].label).join(', ')} first.`
        : null;

  return (
    <section className="panel" aria-labelledby="try-title" data-testid="try-panel">
      <h2 id="try-title"><span className="step-no" aria-hidden="true">5</span>Try it</h2>
      <form
        className="try-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (!busy) void generate();
        }}
      >
        <label htmlFor={`${id}-prompt`}>Prompt</label>
        <textarea id={`${id}-prompt`} rows={2} value={t.prompt} onChange={(e) => setTry({ prompt: e.target.value })} />
        <div className="field-row">
          {(['temperature', 'topK', 'maxTokens', 'seed'] as const).map((f) => (
            <NumberField key={f} label={TRY_RULES[f].label} text={texts[f]} check={check.fields[f]} onText={(v) => setTryField(f, v)}
              min={TRY_RULES[f].min} max={TRY_RULES[f].max} step={f === 'temperature' ? 0.1 : 1} />
          ))}
          <div className="field slider">
            <label htmlFor={`${id}-alpha`}>Adapter α</label>
            <input id={`${id}-alpha`} type="range" min={0} max={2} step={0.05} value={t.alphaScale} disabled={!hasAdapter}
              onChange={(e) => setAlphaScale(Number(e.target.value))} aria-valuetext={alphaText(t.alphaScale, nominal, dora)}
              aria-describedby={`${id}-alpha-out`} data-testid="try-alpha" />
            <output id={`${id}-alpha-out`} htmlFor={`${id}-alpha`} data-testid="try-alpha-value">{alphaText(t.alphaScale, nominal, dora)}</output>
          </div>
          {/* Busy, the buttons stay enabled (aria-disabled) so the keyboard focus stays on them; a press then does nothing. */}
          <button type="submit" className="primary" disabled={!!why || t.prompt.trim() === ''} aria-disabled={busy || undefined} aria-describedby={why ? `${id}-why` : undefined}>
            {busy ? 'Generating…' : 'Generate'}
          </button>
          <button type="button" disabled={!!why || t.prompt.trim() === ''} aria-disabled={busy || undefined} aria-describedby={`${id}-resample`}
            onClick={() => { if (!busy) void resample(); }}>
            Resample
          </button>
          {why && <span id={`${id}-why`} className="muted">{why}</span>}
        </div>
      </form>
      <p className="note" id={`${id}-resample`}>
        Temperature 0 always picks the likeliest token (the seed does not matter); above 0 it samples, and the same seed gives the same
        text again. Resample draws another with the next seed. Top-k 0 keeps every token.
      </p>
      <AttachedAdapters disabled={!modelReady || training} />
      <div className="outputs">
        <Output title="Base model" testId="try-base" out={t.base} />
        {(['adapted', 'second'] as const).map((pane) => {
          const choice = t.panes[pane], out = t[pane];
          const held = choice === 'held';
          const heldTitle = hasAdapter ? `With ${adapterName ? `“${adapterName}”` : 'the adapter'} (α = ${fmtAlpha((out.status === 'idle' ? t.alphaScale : out.alphaScale) * nominal)})` : 'With the adapter';
          const empty = held ? (hasAdapter ? undefined : 'Train an adapter, or load one from the library, to compare.')
            : t.attached.length === 0 ? 'Attach adapters from the library above to compare them.' : undefined;
          return (
            <Output key={pane} title={held ? heldTitle : paneTitle(choice, out, t.attached)} testId={pane === 'adapted' ? 'try-adapted' : 'try-second'} out={out} empty={empty}
              chooser={<PaneChooser pane={pane} heldName={adapterName} />} />
          );
        })}
      </div>
    </section>
  );
}

function Output({ title, out, testId, empty, chooser }: { title: string; out: GenerationOutput; testId: string; empty?: string; chooser?: React.ReactNode }) {
  return (
    <figure className="output" data-testid={testId} data-status={out.status} data-seed={out.status === 'idle' ? undefined : out.seed} aria-busy={out.status === 'running'}>
      {chooser}
      <figcaption>
        {title}
        {out.status === 'done' && out.seconds !== null && (
          <span className="muted"> · {out.tokens} tokens in {out.seconds.toFixed(1)} s, {out.temperature > 0 ? `sampled with seed ${out.seed}` : 'greedy'}</span>
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

/**
 * "α = 8 (trained at 16)", "α = 0: the base model", "α = 16, as trained". With DoRA, α = 0 switches off B·A
 * but the magnitudes still rescale each row of W (as PEFT's scaling does), so it is not the base model.
 */
function alphaText(scale: number, nominal: number, dora: boolean): string {
  const a = fmtAlpha(scale * nominal);
  if (scale === 0) return dora ? `α = 0: B·A off, DoRA's magnitudes still rescale W` : `α = 0: the base model`;
  if (scale === 1) return `α = ${a}, as trained`;
  return `α = ${a} (trained at ${fmtAlpha(nominal)})`;
}
