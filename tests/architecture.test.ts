// The shape of src/, checked: which layer may import which, no import cycle, no source file over 500 lines,
// one naming convention. Every .ts/.tsx file's imports are read with Vite's own parser (oxc): static
// `import … from` and `export … from` (type-only ones too: a type import still ties two files together),
// side-effect imports, dynamic `import()`, and worker references `new URL('./x.ts', import.meta.url)`.
// Relative ones are resolved to files in src/; packages and files outside src/ (shaders, bench config) are
// not layered here. ARCHITECTURE.md explains the layers; the tables below are what holds them.
//
// This file is not a linter for style inside files, and it does not follow imports of tests or scripts.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSync, Visitor } from 'vite';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// ---- the rules ---------------------------------------------------------------------------------------------

type Layer = 'util' | 'gpu' | 'autograd' | 'io' | 'model' | 'train' | 'worker' | 'cli' | 'ui';

/**
 * One row per directory of src/ (src/main.tsx, the page's entry, is ui): the layers it may import besides
 * itself, and where it sits, which a broken rule quotes. Imports flow one way:
 *   ui → worker (protocol, client) → train → model → autograd → gpu, with io beside model and util under all;
 *   cli is a top layer beside worker, over the whole engine.
 */
const LAYERS: Record<Layer, { may: readonly Layer[]; place: string }> = {
  util: { may: [], place: 'util sits below every layer: tiny pure helpers that import nothing of ours' },
  gpu: { may: ['util'], place: 'gpu is the bottom of the engine: device, buffers, pipelines, dispatch' },
  autograd: { may: ['gpu', 'util'], place: 'autograd sits on gpu, below model' },
  io: { may: ['util'], place: 'io sits beside model, below train' },
  model: { may: ['io', 'autograd', 'gpu', 'util'], place: 'model sits on autograd, with io beside it, below train' },
  train: { may: ['model', 'io', 'autograd', 'gpu', 'util'], place: 'train sits on model, below worker and cli' },
  worker: { may: ['train', 'model', 'io', 'autograd', 'gpu', 'util'], place: 'worker sits on train, below ui' },
  cli: { may: ['worker', 'train', 'model', 'io', 'autograd', 'gpu', 'util'], place: 'cli is a top layer beside worker, over the engine' },
  ui: { may: ['worker', 'io', 'util'], place: 'the UI reaches the engine only through the worker, and never touches the GPU, the tape, the model or training' },
};

/**
 * Of the layers below it, the only modules the UI (src/ui, src/main.tsx) may import, and why the page does
 * this itself instead of asking the worker. Everything else the UI needs of the engine (LORA_TARGETS,
 * SCHEDULES, WEBGPU_MISSING_MESSAGE, the engine's types) comes re-exported through src/worker/protocol.ts.
 */
const UI_REACH: readonly { module: RegExp; label: string; names?: readonly string[]; why: string }[] = [
  {
    module: /^src\/worker\/(protocol|client|identity)\.ts$/,
    label: 'src/worker/protocol.ts, client.ts and identity.ts',
    why: 'the bridge: one typed union of messages, the client that posts them to the worker, and the one model-identity comparison both sides make',
  },
  {
    module: /^src\/io\/model_source\.ts$/,
    label: "src/io/model_source.ts's file pickers",
    names: ['filesFromDirectory', 'filesFromFileList', 'DirectoryHandleLike'],
    why: 'a picked or dropped folder exists only on the page, which hands its files to the worker as Blobs',
  },
  {
    module: /^src\/io\/library(\.ts$|_|\/)/,
    label: 'the adapter library (src/io/library*)',
    why: "IndexedDB is the page's too, so the Library panel lists, imports, renames and exports adapters itself (Web Locks serialise its writes with the worker's)",
  },
  { module: /^src\/io\/errors\.ts$/, label: 'src/io/errors.ts', why: 'the typed errors the library throws on the page' },
];

const MAX_LINES = 500;

/** File and directory names in src/: snake_case words, optionally a dotted role (engine.worker.ts), then the extension. */
const SNAKE_CASE = /^[a-z][a-z0-9]*(_[a-z0-9]+)*(\.[a-z][a-z0-9]*(_[a-z0-9]+)*)*$/;

// ---- reading src/ ------------------------------------------------------------------------------------------

export interface ImportRef {
  /** As written: '../io/peft', './engine.worker.ts'. */
  spec: string;
  kind: 'import' | 'export' | 'dynamic' | 'worker';
  /** The names it brings in ('default', '*' for a namespace or `export *`); empty for a side-effect import. */
  names: string[];
}

/** Every module reference in one file's source, in the order written. */
export function importsOf(file: string, text: string): ImportRef[] {
  const parsed = parseSync(file, text);
  if (parsed.errors.length > 0) throw new Error(`${file}: cannot be parsed (${parsed.errors[0].message})`);
  const refs: { at: number; ref: ImportRef }[] = [];
  for (const s of parsed.module.staticImports) {
    const names = s.entries.map((e) => (e.importName.kind === 'Name' ? e.importName.name! : e.importName.kind === 'Default' ? 'default' : '*'));
    refs.push({ at: s.start, ref: { spec: s.moduleRequest.value, kind: 'import', names } });
  }
  for (const s of parsed.module.staticExports) {
    for (const e of s.entries) {
      if (e.moduleRequest === null) continue; // a local export
      refs.push({ at: e.start, ref: { spec: e.moduleRequest.value, kind: 'export', names: [e.importName.name ?? '*'] } });
    }
  }
  for (const d of parsed.module.dynamicImports) {
    const written = text.slice(d.moduleRequest.start, d.moduleRequest.end);
    const literal = /^(['"])([^'"]*)\1$/.exec(written);
    // A computed specifier cannot be checked, so it is reported as one that does not resolve.
    refs.push({ at: d.start, ref: { spec: literal ? literal[2] : written, kind: 'dynamic', names: ['*'] } });
  }
  new Visitor({
    NewExpression(node) {
      const [url, base] = node.arguments;
      if (node.callee.type !== 'Identifier' || node.callee.name !== 'URL') return;
      if (url?.type !== 'Literal' || typeof url.value !== 'string') return;
      if (base?.type !== 'MemberExpression' || base.object.type !== 'MetaProperty' || base.property.type !== 'Identifier' || base.property.name !== 'url') return;
      refs.push({ at: node.start, ref: { spec: url.value, kind: 'worker', names: ['*'] } });
    },
  }).visit(parsed.program);
  // One `export { a, b } from` statement is one reference.
  const merged = new Map<string, { at: number; ref: ImportRef }>();
  for (const r of refs) {
    const key = `${r.ref.kind} ${r.ref.spec} ${r.ref.kind === 'export' ? '' : r.at}`;
    const seen = merged.get(key);
    if (seen) seen.ref.names.push(...r.ref.names);
    else merged.set(key, { at: r.at, ref: { ...r.ref, names: [...r.ref.names] } });
  }
  return [...merged.values()].sort((a, b) => a.at - b.at).map((r) => r.ref);
}

/** Every file under a directory of the repository, as '/'-separated paths from the root. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir)).sort()) {
    const path = `${dir}/${name}`;
    if (statSync(join(ROOT, path)).isDirectory()) out.push(path + '/', ...filesUnder(path));
    else out.push(path);
  }
  return out;
}

/** The file a relative specifier names, with Vite's extension search; undefined when there is none. */
function resolveSpec(from: string, spec: string): string | undefined {
  const path = relative(ROOT, resolve(ROOT, dirname(from), spec.replace(/\?.*$/, ''))).split('\\').join('/');
  return [path, `${path}.ts`, `${path}.tsx`, `${path}/index.ts`].find((p) => existsSync(join(ROOT, p)) && statSync(join(ROOT, p)).isFile());
}

function layerOf(file: string): Layer | undefined {
  if (file === 'src/main.tsx') return 'ui';
  const dir = file.split('/')[1];
  return Object.hasOwn(LAYERS, dir) ? (dir as Layer) : undefined;
}

interface Edge {
  from: string;
  to: string;
  ref: ImportRef;
}

const ALL = filesUnder('src');
const FILES = ALL.filter((p) => !p.endsWith('/'));
const SOURCES = FILES.filter((f) => /\.tsx?$/.test(f));

function readGraph(): { edges: Edge[]; broken: string[] } {
  const edges: Edge[] = [];
  const broken: string[] = [];
  for (const from of SOURCES) {
    for (const ref of importsOf(from, readFileSync(join(ROOT, from), 'utf8'))) {
      if (!ref.spec.startsWith('.')) continue; // a package
      const to = resolveSpec(from, ref.spec);
      if (to === undefined) broken.push(`${from}: ${ref.kind} '${ref.spec}' names no file`);
      else if (to.startsWith('src/')) edges.push({ from, to, ref });
    }
  }
  return { edges, broken };
}

const GRAPH = readGraph();

// ---- the checks --------------------------------------------------------------------------------------------

/** What is wrong with one import, or null when the rules allow it. */
function ruleBreak({ from, to, ref }: Edge): string | null {
  const [mine, theirs] = [layerOf(from), layerOf(to)];
  if (mine === undefined || theirs === undefined || mine === theirs) return null; // a file in no layer is reported on its own
  const what = ref.kind === 'worker' ? 'starts the worker' : 'imports';
  if (!LAYERS[mine].may.includes(theirs)) return `${from} ${what} ${to}: ${mine} never imports ${theirs} (${LAYERS[mine].place})`;
  if (mine !== 'ui' || theirs === 'util') return null;
  const reach = UI_REACH.find((r) => r.module.test(to));
  if (reach === undefined) {
    const allowed = UI_REACH.filter((r) => r.module.source.startsWith(`^src\\/${theirs}\\/`)).map((r) => r.label);
    return `${from} ${what} ${to}: of ${theirs}, the UI imports only ${allowed.join(', ')}; ` +
      'what else it needs of the engine comes through src/worker/protocol.ts, which may re-export it from below';
  }
  const extra = reach.names === undefined ? [] : ref.names.filter((n) => !reach.names!.includes(n));
  if (extra.length > 0) return `${from} imports ${extra.join(', ')} from ${to}: of it the UI imports only ${reach.names!.join(', ')} (${reach.why})`;
  return null;
}

/** Each import cycle once, as a path that returns to its start (Tarjan's strongly connected components). */
function cycles(edges: Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (stack.includes(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component = new Set<string>();
    for (let w = ''; w !== v; ) component.add((w = stack.pop()!));
    if (component.size > 1 || (next.get(v) ?? []).includes(v)) found.push(pathWithin(component, v, next));
  };
  for (const f of SOURCES) if (!index.has(f)) visit(f);
  return found;
}

/** A shortest path from start back to itself inside one strongly connected component. */
function pathWithin(component: Set<string>, start: string, next: Map<string, string[]>): string[] {
  const cameFrom = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of next.get(v) ?? []) {
      if (!component.has(w)) continue;
      if (w === start) {
        const path: string[] = [];
        for (let u = v; u !== start; u = cameFrom.get(u)!) path.unshift(u);
        return [start, ...path, start];
      }
      if (!cameFrom.has(w)) {
        cameFrom.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start];
}

function lineCount(file: string): number {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
}

const snakeCase = (name: string) => name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[-\s]+/g, '_').toLowerCase();

describe('architecture of src/', () => {
  it('reads every kind of module reference', () => {
    const text = [
      "import { a, type B } from './one';",
      "import type { C } from '../two.ts';",
      "import './three.css';",
      "export { d, e as f } from './four';",
      "export * from './five';",
      "const g = await import('./six');",
      "const w = new Worker(new URL('./seven.worker.ts', import.meta.url));",
      "const u = new URL('page.html', document.baseURI);",
      "const s = \"import x from './not-an-import'\";",
    ].join('\n');
    expect(importsOf('x.ts', text)).toEqual([
      { spec: './one', kind: 'import', names: ['a', 'B'] },
      { spec: '../two.ts', kind: 'import', names: ['C'] },
      { spec: './three.css', kind: 'import', names: [] },
      { spec: './four', kind: 'export', names: ['d', 'e'] },
      { spec: './five', kind: 'export', names: ['*'] },
      { spec: './six', kind: 'dynamic', names: ['*'] },
      { spec: './seven.worker.ts', kind: 'worker', names: ['*'] },
    ]);
  });

  it('resolves every relative import to a file', () => {
    expect(SOURCES.length).toBeGreaterThan(50);
    expect(GRAPH.broken).toEqual([]);
  });

  it('puts every source file in a layer', () => {
    const loose = SOURCES.filter((f) => layerOf(f) === undefined);
    expect(loose.map((f) => `${f} is in no layer: put it in a directory of LAYERS (tests/architecture.test.ts), or add a row saying what that directory may import`)).toEqual([]);
  });

  it('keeps every import inside the layer rules', () => {
    // The worker reference from the UI's client is the one import of engine.worker.ts: the UI starts it and talks to it.
    expect(GRAPH.edges.some((e) => e.ref.kind === 'worker' && e.to === 'src/worker/engine.worker.ts')).toBe(true);
    expect(GRAPH.edges.map(ruleBreak).filter((m) => m !== null)).toEqual([]);
  });

  it('has no import cycle between files of src/', () => {
    expect(cycles(GRAPH.edges).map((c) => `import cycle: ${c.join(' → ')}`)).toEqual([]);
  });

  it(`keeps every source file in src/ to ${MAX_LINES} lines`, () => {
    const over = FILES.filter((f) => lineCount(f) > MAX_LINES);
    expect(over.map((f) => `${f} has ${lineCount(f)} lines; source files stay ≤ ${MAX_LINES}: split it`)).toEqual([]);
  });

  it('names every file and directory in src/ in snake_case', () => {
    const bad = ALL.filter((p) => {
      const name = p.replace(/\/$/, '').split('/').pop()!;
      return !SNAKE_CASE.test(p.endsWith('/') ? name : name.replace(/\.[a-z]+$/, ''));
    });
    expect(bad.map((p) => `${p}: names in src/ are snake_case (git mv it to ${p.replace(/[^/]+\/?$/, (n) => snakeCase(n))})`)).toEqual([]);
  });
});
