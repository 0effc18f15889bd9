// The studio shell: a header naming the GPU the engine opened, a banner when WebGPU is unavailable, and the
// panels. Panels are self-contained sections reading the store: the main flow in two columns, what to train
// (model, data, settings) on the left and the run (train, try it) on the right, so Start is in view without
// scrolling on a 1280×800 screen; one column below 1000 px, in the same order. Then the teaching panel and
// the library.

import { DataPanel } from './data_panel';
import { LibraryPanel } from './library_panel';
import { LoraPanel } from './lora_panel';
import { ModelPanel } from './model_panel';
import { TrainPanel } from './train_panel';
import { TryPanel } from './try_panel';
import { useStudio } from './store';
import { TeachPanel } from './teach_panel';

export function App() {
  const gpu = useStudio((s) => s.gpu);
  return (
    <div className="app">
      <a className="skip-link" href="#main">Skip to content</a>
      <header className="app-header">
        <h1>LoRA Studio</h1>
        <p className="gpu-badge" role="status" data-status={gpu.status}>
          <span className="gpu-dot" aria-hidden="true" />
          GPU:{' '}
          {gpu.status === 'ready' && gpu.info ? (
            <span data-testid="gpu-name">{gpu.info.name}</span>
          ) : gpu.status === 'error' ? (
            'unavailable'
          ) : (
            'starting…'
          )}
        </p>
      </header>

      {gpu.status === 'error' && gpu.error && (
        <div className="banner banner-error" role="alert" data-testid="webgpu-error">
          <strong>LoRA Studio needs WebGPU, and could not start it.</strong>
          <p>{gpu.error.message}</p>
        </div>
      )}

      <main id="main" className="panels" tabIndex={-1}>
        <div className="studio-grid">
          <div className="studio-column">
            <ModelPanel />
            <DataPanel />
            <LoraPanel />
          </div>
          <div className="studio-column">
            <TrainPanel />
            <TryPanel />
          </div>
        </div>
        <TeachPanel />
        <LibraryPanel />
      </main>
    </div>
  );
}
