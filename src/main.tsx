// Browser entry: render the studio and start the engine worker's GPU device (an action outside React, so
// StrictMode's double effects cannot open it twice).

import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './ui/app';
import { useStudio } from './ui/store';
// In this order: the base styles and variables, then the Teach panel's, then the studio flow's.
import './ui/styles.css';
import './ui/teach/teach.css';
import './ui/studio.css';

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);

void useStudio.getState().initGpu();
