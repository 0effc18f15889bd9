// `npm run cli -- ...`: bundle src/cli/main.ts (with its WGSL) into .cache/cli.mjs with esbuild, then run it.
// Bundling takes ~100 ms and means the CLI runs the very sources the studio and the tests use.
import { build } from 'esbuild';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { rawPlugin } from './esbuild-raw.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const outfile = `${root}.cache/cli.mjs`;
const result = await build({
  write: false,
  entryPoints: [`${root}src/cli/main.ts`],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile,
  external: ['webgpu'],
  plugins: [rawPlugin],
  logLevel: 'error',
  sourcemap: 'inline',
});
// Write then rename, so CLI processes started in parallel (the tests do) never import a half-written file.
mkdirSync(`${root}.cache`, { recursive: true });
writeFileSync(`${outfile}.${process.pid}`, result.outputFiles[0].contents);
renameSync(`${outfile}.${process.pid}`, outfile);
await import(pathToFileURL(outfile).href);
