// `generate` on a tiny model with a tokenizer, written to disk: an adapter at weight 0 generates the base
// model's tokens; a live blend of two adapters (a negative weight, rsLoRA, other targets) generates the
// tokens of the cat blend that `blend` materialises; the same seed gives the same sample, in process and from
// `npm run cli -- generate`; and mistakes (a weight that is not a number, an adapter of another base, a
// missing prompt, a negative temperature) get one line, no stack trace.

import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyRepo, REPO_CONFIG } from '../fixtures/tokenizer/tiny_repo';
import { saveAdapterDir } from '../../src/cli/files';
import { blendCommand } from '../../src/cli/blend';
import { generateCommand } from '../../src/cli/generate';
import { testGpu } from '../gpu/test-gpu';
import { loraKey, type AdapterConfig } from '../../src/io/peft';
import { parseModelConfig, projectionDims, type ModelConfig } from '../../src/model/config';
import { mulberry32, randn } from '../reference/rng';

const root = fileURLToPath(new URL('../..', import.meta.url));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['scripts/cli.mjs', ...args], { cwd: root, timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

function expectOneLine(r: { code: number; stderr: string }, message: RegExp) {
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(message);
}

function randomWeights(config: ModelConfig, cfg: AdapterConfig, seed: number): Map<string, Float32Array> {
  const rng = mulberry32(seed);
  const w = new Map<string, Float32Array>();
  for (let l = 0; l < config.layers; l++) {
    for (const t of cfg.targetModules) {
      const { inFeatures, outFeatures } = projectionDims(config, t);
      w.set(loraKey(l, t, 'A'), Float32Array.from(randn(rng, cfg.r * inFeatures, 0.4)));
      w.set(loraKey(l, t, 'B'), Float32Array.from(randn(rng, outFeatures * cfg.r, 0.4)));
    }
  }
  return w;
}

const work = mkdtempSync(join(tmpdir(), 'lora-generate-'));
const model = join(work, 'model');
mkdirSync(model);
for (const [name, bytes] of tinyRepo({ seed: 5 })) writeFileSync(join(model, name), bytes);
const config = parseModelConfig(JSON.stringify(REPO_CONFIG));
const math: AdapterConfig = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false, baseModel: model };
const style: AdapterConfig = { r: 2, loraAlpha: 4, loraDropout: 0, targetModules: ['q_proj', 'down_proj'], useRslora: true, baseModel: model };
const dirs = { math: join(work, 'math'), style: join(work, 'style'), other: join(work, 'other') };
// An adapter of another base: hidden 48 instead of 32.
const otherConfig = parseModelConfig(JSON.stringify({ ...REPO_CONFIG, hidden_size: 48 }));
const ready = Promise.all([
  saveAdapterDir(dirs.math, math, randomWeights(config, math, 1), config),
  saveAdapterDir(dirs.style, style, randomWeights(config, style, 2), config),
  saveAdapterDir(dirs.other, math, randomWeights(otherConfig, math, 3), otherConfig),
]);

const prompt = ['--prompt', 'The whale'];
type Generated = { text: string; tokens: number; ids: number[]; adapters: { dir: string; weight: number }[] };
// In process, on one device for the whole file (each new process compiles every pipeline again on SwiftShader).
const run = async (args: string[]): Promise<Generated> =>
  JSON.parse(await generateCommand(['--model', model, ...prompt, '--max-tokens', '6', ...args], { gpu: await testGpu(), log: () => {} }));

describe('cli generate', () => {
  it('weight 0 is the base model; a live blend generates what the materialised cat blend does', async () => {
    await ready;
    const base = await run([]);
    const off = await run(['--adapter', `${dirs.math}:0`]);
    expect(base.tokens).toBe(6);
    expect(off.ids).toEqual(base.ids);
    expect(off.adapters).toEqual([{ dir: dirs.math, weight: 0 }]);
    const live = await run(['--adapter', `${dirs.math}:0.7`, '--adapter', `${dirs.style}:-1.25`]);
    expect(live.ids).not.toEqual(base.ids); // the adapters do move the model
    const cat = join(work, 'cat');
    await blendCommand(['--model', model, '--adapter', `${dirs.math}:0.7`, '--adapter', `${dirs.style}:-1.25`, '--combination', 'cat', '--out', cat], () => {});
    const materialised = await run(['--adapter', cat]);
    expect(materialised.adapters).toEqual([{ dir: cat, weight: 1 }]);
    expect(live.ids).toEqual(materialised.ids);
    expect(live.text).toBe(materialised.text);
  }, 600_000);

  it('the same seed gives the same sample, in process and from the command line', async () => {
    await ready;
    const sampled = ['--temperature', '1.2', '--top-k', '50', '--seed', '7', '--adapter', `${dirs.style}:0.5`, '--adapter', dirs.math];
    const a = await run(sampled);
    expect(a.adapters).toEqual([{ dir: dirs.style, weight: 0.5 }, { dir: dirs.math, weight: 1 }]);
    const r = await cli(['generate', '--model', model, ...prompt, '--max-tokens', '6', ...sampled]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual(a);
  }, 600_000);

  it('refuses mistakes in one line, before any generation', async () => {
    await ready;
    const [weight, other, noPrompt, temp] = await Promise.all([
      cli(['generate', '--model', model, ...prompt, '--adapter', `${dirs.math}:lots`]),
      cli(['generate', '--model', model, ...prompt, '--adapter', dirs.other]),
      cli(['generate', '--model', model]),
      cli(['generate', '--model', model, ...prompt, '--temperature', '-1']),
    ]);
    expectOneLine(weight, /^error: --adapter .*math:lots: write DIR:WEIGHT with WEIGHT a finite number/);
    expectOneLine(other, /^error: --adapter .*other does not fit .*model: /);
    expectOneLine(noPrompt, /^error: --prompt is required/);
    expectOneLine(temp, /^error: --temperature must be a number ≥ 0 \(0: greedy\) \(got -1\)/);
  }, 300_000);
});
