// Browser entry: render the studio and start the engine worker's GPU device (an action outside React, so
// StrictMode's double effects cannot open it twice).

import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './ui/App';
import { useStudio } from './ui/store';
import './ui/styles.css';

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);

void useStudio.getState().initGpu();
