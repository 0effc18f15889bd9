// "Teach: the LoRA linear", in three modes: the playground (a 16×16 layer with live rank, α and seed
// controls, drawn as heatmaps: ./teach/playground_view.tsx) and two worked examples, each one click away, whose
// inputs and GPU outputs are shown as small tables with the scale α/r and the parameter counts.
// The mode and the playground settings live in the URL hash (./teach/url.ts), so a lesson can link to them;
// this component restores them on hashchange, scrolls itself into view for a teach link, and asks the store
// to compute once the GPU is ready.

import { useEffect, useRef } from 'react';
import { MatrixTable, tidyMatrix } from './matrix_table';
import { useStudio } from './store';
import { Playground } from './teach/playground_view';
import { readTeachUrl } from './teach/url';
import { TEACH_EXAMPLES, type TeachExampleId } from './teach_examples';

const EXAMPLE_IDS: TeachExampleId[] = [1, 2];

export function TeachPanel() {
  const gpuStatus = useStudio((s) => s.gpu.status);
  const gpuReady = gpuStatus === 'ready';
  const { mode, example, result, running, error } = useStudio((s) => s.teach);
  const loadExample = useStudio((s) => s.loadExample);
  const openPlayground = useStudio((s) => s.openPlayground);
  const restoreTeach = useStudio((s) => s.restoreTeach);
  const syncTeach = useStudio((s) => s.syncTeach);

  useEffect(() => {
    if (gpuReady) syncTeach();
  }, [gpuReady, syncTeach]);
  // A teach link names no element (#teach?r=4…), so the browser does not scroll to it by itself: the panel does.
  const section = useRef<HTMLElement>(null);
  useEffect(() => {
    const show = () => { if (readTeachUrl()) section.current?.scrollIntoView({ block: 'start' }); };
    const onHash = () => { restoreTeach(); show(); };
    show();
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, [restoreTeach]);

  return (
    <section className="panel" aria-labelledby="teach-title" ref={section}>
      <h2 id="teach-title">Teach: the LoRA linear</h2>
      <p className="lede">
        LoRA keeps the pretrained weight <var>W</var> frozen and learns a rank-<var>r</var> update{' '}
        <span className="formula">ΔW = (α/r)·B·A</span>. The layer never builds ΔW; it computes{' '}
        <span className="formula">y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ</span>. Since <var>W</var> only ever multiplies, it can be
        stored in fewer bits: QLoRA (Dettmers et al., 2023) holds it as 4-bit NormalFloat (NF4) and trains <var>A</var> and{' '}
        <var>B</var> in full precision over it, as the Model panel's “Base weights: nf4” does.
      </p>

      <div className="toolbar" role="group" aria-label="Playground and worked examples">
        <div className="toolbar-item">
          <button type="button" onClick={openPlayground} aria-pressed={mode === 'playground'} aria-describedby="teach-playground-blurb">
            Playground
          </button>
          <span id="teach-playground-blurb" className="muted">16×16 layer, live r and α</span>
        </div>
        {EXAMPLE_IDS.map((id) => (
          <div className="toolbar-item" key={id}>
            <button
              type="button"
              onClick={() => void loadExample(id)}
              disabled={!gpuReady}
              aria-pressed={mode === `example${id}`}
              aria-describedby={`teach-example-${id}-blurb`}
            >
              Load example {id}
            </button>
            <span id={`teach-example-${id}-blurb`} className="muted">{TEACH_EXAMPLES[id].blurb}</span>
          </div>
        ))}
        {!gpuReady && (
          <span className="muted">{gpuStatus === 'error' ? 'The examples need WebGPU (see above).' : 'The examples run on the GPU once it is ready.'}</span>
        )}
      </div>

      {mode === 'playground' && <Playground />}

      {mode !== 'playground' && example && (
        <div className="teach-body">
          <h3>{example.title}</h3>
          <div className="teach-grid">
            <div>
              <h4>Inputs</h4>
              <div className="matrices">
                <MatrixTable name="W" rows={example.W} note="frozen" />
                <MatrixTable name="A" rows={example.A} />
                <MatrixTable name="B" rows={example.B} />
                <MatrixTable name="x" rows={example.x} />
              </div>
              <Facts r={example.A.length} inF={example.W[0].length} outF={example.W.length} alpha={example.alpha} />
            </div>
            <div aria-live="polite" aria-busy={running}>
              <h4>Outputs, computed on the GPU</h4>
              {running && <p className="muted">Computing…</p>}
              {error && <p className="inline-error" role="alert">{error.message}</p>}
              {result && (
                <>
                  <div className="matrices">
                    <MatrixTable name="y" rows={result.y} result />
                    <MatrixTable name="ΔW" rows={result.deltaW} note="(α/r)·B·A" />
                    <MatrixTable name="W + ΔW" rows={result.merged} result />
                  </div>
                  <dl className="json">
                    <dt>y</dt>
                    <dd><code data-testid="teach-y">{JSON.stringify(result.y.length === 1 ? tidyMatrix(result.y)[0] : tidyMatrix(result.y))}</code></dd>
                    <dt>W + ΔW</dt>
                    <dd><code data-testid="teach-merged">{JSON.stringify(tidyMatrix(result.merged))}</code></dd>
                  </dl>
                  <p className="note">{example.note}</p>
                </>
              )}
            </div>
          </div>
        </div>
      )}
    </section>
  );
}

const fmt = new Intl.NumberFormat('en-US');

/** r, α, s = α/r, and trainable numbers: LoRA's r·(in + out) against full fine-tuning's in·out. */
function Facts({ r, inF, outF, alpha }: { r: number; inF: number; outF: number; alpha: number }) {
  const lora = r * (inF + outF);
  const full = inF * outF;
  // The same count for a typical attention projection, where the saving is the point.
  const big = { d: 4096, r: 8 };
  const bigLora = big.r * 2 * big.d;
  const bigFull = big.d * big.d;
  return (
    <dl className="facts">
      <div><dt>rank r</dt><dd>{r}</dd></div>
      <div><dt>α</dt><dd>{alpha}</dd></div>
      <div><dt>scale α/r</dt><dd>{alpha}/{r} = {alpha / r}</dd></div>
      <div>
        <dt>trainable, LoRA vs full</dt>
        <dd>r·(in+out) = {r}·({inF}+{outF}) = {lora} vs in·out = {inF}·{outF} = {full}</dd>
      </div>
      <div className="facts-wide">
        <dt>at 4096×4096, r = 8</dt>
        <dd>{fmt.format(bigLora)} vs {fmt.format(bigFull)} ({((100 * bigLora) / bigFull).toFixed(2)}%)</dd>
      </div>
    </dl>
  );
}
