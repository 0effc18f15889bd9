// Try it's adapters beside the held one: attach library adapters to the loaded model (their weights go to the
// GPU once; the base is not loaded again), blend them live with a weight slider each (PEFT's "cat": ΔW =
// Σ wᵢ·sᵢ·Bᵢ·Aᵢ, negative weights subtract), save the blend to the library, and choose what each comparison
// pane runs. Each pane's label says what the engine really ran. The actions are the Try slice's
// (state/try_slice.ts); this file only shows them.

import { useId, useState } from 'react';
import { useStudio } from './store';
import { BLEND_WEIGHT_RANGE, paneAdapterId } from './state/try_slice';
import type { GenerationOutput, PaneChoice, TryAdapter, TryPane } from './state/studio_state';

const fmt = (w: number) => String(Number(w.toPrecision(3))).replace('-', '−');

/** What a pane ran, once the engine answered, else what it is set to run: "Base model", "With “x” (weight 1)", "Blend: …". */
export function paneTitle(choice: PaneChoice, out: GenerationOutput, attached: readonly TryAdapter[]): string {
  if (out.ran !== null && out.status === 'done') {
    if (out.ran.length === 0) return 'Base model (every weight 0)';
    if (out.ran.length === 1) return `With “${out.ran[0].name}” (weight ${fmt(out.ran[0].weight)})`;
    return `Blend: ${out.ran.map((t) => `“${t.name}” × ${fmt(t.weight)}`).join(' + ')}`;
  }
  if (choice === 'blend') {
    return attached.length === 0 ? 'Blend of attached adapters' : `Blend: ${attached.map((a) => `“${a.name}” × ${fmt(a.weight)}`).join(' + ')}`;
  }
  const a = attached.find((x) => x.adapterId === paneAdapterId(choice));
  return a ? `With “${a.name}” (weight 1)` : 'With an attached adapter';
}

/** The select that chooses what a comparison pane runs. */
export function PaneChooser({ pane, heldName }: { pane: TryPane; heldName: string | null }) {
  const choice = useStudio((s) => s.tryIt.panes[pane]);
  const attached = useStudio((s) => s.tryIt.attached);
  const choosePane = useStudio((s) => s.choosePane);
  const id = useId();
  return (
    <span className="pane-chooser">
      <label htmlFor={id}>Runs</label>{' '}
      <select id={id} value={choice} onChange={(e) => choosePane(pane, e.target.value as PaneChoice)} data-testid={`try-${pane}-choice`}>
        <option value="held">{heldName ? `“${heldName}” (α slider)` : 'the trained adapter (α slider)'}</option>
        {attached.map((a) => <option key={a.adapterId} value={`adapter:${a.adapterId}`}>“{a.name}”</option>)}
        <option value="blend">the blend (weight sliders)</option>
      </select>
    </span>
  );
}

/** Attaching library adapters, their blend sliders, and saving the blend. */
export function AttachedAdapters({ disabled }: { disabled: boolean }) {
  const { attached, attaching, attachError, blendNotice } = useStudio((s) => s.tryIt);
  const items = useStudio((s) => s.library.items);
  const attach = useStudio((s) => s.attachAdapter);
  const detach = useStudio((s) => s.detachAdapter);
  const setWeight = useStudio((s) => s.setBlendWeight);
  const saveBlend = useStudio((s) => s.saveBlend);
  const [pick, setPick] = useState('');
  const [name, setName] = useState('');
  const id = useId();
  const free = items.filter((i) => !attached.some((a) => a.adapterId === i.id));
  const chosen = free.some((i) => i.id === pick) ? pick : (free[0]?.id ?? '');
  const blendName = name.trim() || `Blend of ${attached.map((a) => a.name).join(' and ')}`.slice(0, 100);
  return (
    <fieldset className="try-adapters" data-testid="try-adapters" aria-busy={attaching}>
      <legend>Adapters from the library</legend>
      <div className="field-row">
        <label htmlFor={`${id}-pick`}>Attach</label>
        <select id={`${id}-pick`} value={chosen} onChange={(e) => setPick(e.target.value)} disabled={disabled || free.length === 0} data-testid="try-attach-pick">
          {free.length === 0 && <option value="">{items.length === 0 ? 'the library is empty' : 'every adapter is attached'}</option>}
          {free.map((i) => <option key={i.id} value={i.id}>{i.name} (r = {i.r})</option>)}
        </select>
        <button type="button" disabled={disabled || attaching || chosen === ''} onClick={() => void attach(chosen)} data-testid="try-attach">Attach</button>
        <span className="muted">Attached adapters sit beside the loaded model on the GPU: switching between them loads nothing again.</span>
      </div>
      {attached.length > 0 && (
        <ul className="attached-list">
          {attached.map((a) => (
            <li key={a.adapterId} data-testid="try-attached" data-adapter-id={a.adapterId}>
              <label htmlFor={`${id}-${a.adapterId}`}>“{a.name}”</label>
              <input id={`${id}-${a.adapterId}`} type="range" min={BLEND_WEIGHT_RANGE.min} max={BLEND_WEIGHT_RANGE.max} step={0.05} value={a.weight}
                onChange={(e) => setWeight(a.adapterId, Number(e.target.value))} aria-valuetext={`weight ${fmt(a.weight)}`} data-testid="try-weight" />
              <output htmlFor={`${id}-${a.adapterId}`} data-testid="try-weight-value">{fmt(a.weight)}</output>
              <span className="muted"> r = {a.lora.r}, α = {a.lora.alpha}{a.lora.rslora ? ' (rsLoRA)' : ''}</span>
              {a.note && <span className="muted"> · {a.note}</span>}
              <button type="button" disabled={attaching} onClick={() => void detach(a.adapterId)}>Detach</button>
            </li>
          ))}
        </ul>
      )}
      {attached.length > 0 && (
        <div className="field-row">
          <label htmlFor={`${id}-name`}>Blend name</label>
          <input id={`${id}-name`} value={name} placeholder={blendName} maxLength={100} onChange={(e) => setName(e.target.value)} />
          <button type="button" disabled={disabled || attaching} onClick={() => void saveBlend(blendName)} data-testid="try-save-blend">Save blend to library</button>
          <span className="muted">Saved exactly, as PEFT's “cat” blend (rank = the sum of the ranks).</span>
        </div>
      )}
      <div aria-live="polite">
        {blendNotice && <p className="library-notice" data-testid="try-blend-notice">{blendNotice}</p>}
      </div>
      {attachError && <p className="inline-error" role="alert" data-testid="try-attach-error">{attachError.message}</p>}
    </fieldset>
  );
}
