/// <reference types="vitest/config" />
// Vite builds the studio (index.html → dist/) and vitest runs the tests (tests/**) through the same
// module graph, so `?raw` WGSL imports work identically in the app, its worker and the tests.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  base: './',
  worker: { format: 'es' },
  build: { target: 'es2022', sourcemap: true },
  test: {
    include: ['tests/**/*.test.ts'],
    environment: 'node',
    // Dawn (the `webgpu` package) is a native addon: separate processes keep each file's device isolated.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
