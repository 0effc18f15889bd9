// The studio shell: a header naming the GPU the engine opened, a banner when WebGPU is unavailable, and the
// panels. Panels are self-contained sections reading the store: the main flow (model, data, settings, train,
// try it) in a two-column grid, then the library and the teaching panel.

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
          <ModelPanel />
          <DataPanel />
          <LoraPanel />
          <TrainPanel />
          <TryPanel />
        </div>
        <TeachPanel />
        <LibraryPanel />
      </main>
    </div>
  );
}
