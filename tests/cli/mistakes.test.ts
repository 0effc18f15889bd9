// The CLI treats a user's mistake as the studio does: one line on stderr saying what to fix, exit code 1,
// no stack trace, and nothing written: a bad flag or value, an --out that is a file or cannot be written,
// a data file that is an image or a Word document. And a failed adapter write leaves no half-written file.

import { describe, expect, it, vi } from 'vitest';
import { cli } from './run_cli';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TINY_CONFIG, writeTinyModel } from './tiny-model';
import { saveAdapterDir } from '../../src/cli/files';
import { LoraStudioError } from '../../src/io/errors';
import { parseModelConfig } from '../../src/model/config';
import { initLora } from '../../src/model/lora';

// A full disk, for this process's writes whose path matches `disk.full` (the CLI processes are not affected).
const disk = vi.hoisted(() => ({ full: undefined as RegExp | undefined }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const writeFile: typeof real.writeFile = (path, ...rest) =>
    disk.full?.test(String(path)) ? Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })) : real.writeFile(path, ...rest);
  return { ...real, writeFile };
});

/** Exit 1 and exactly one line on stderr, "error: ..." matching `message`: no stack trace. */
function expectOneLine(r: { code: number; stderr: string }, message: RegExp | string) {
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  if (typeof message === 'string') expect(lines[0]).toBe(`error: ${message}`);
  else expect(lines[0]).toMatch(message);
}

const work = mkdtempSync(join(tmpdir(), 'lora-mistakes-'));
const data = join(work, 'repeat.jsonl');
writeFileSync(data, JSON.stringify({ input_ids: [1, 5, 9, 2, 17, 30, 4, 11] }) + '\n');
const model = writeTinyModel(1);
const never = join(work, 'never');

// The first bytes of a 640×480 PNG, and of a .docx (a ZIP whose first entry is [Content_Types].xml).
const png = join(work, 'photo.png');
writeFileSync(png, Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0, 2, 128, 0, 0, 1, 224, 8, 6, 0, 0, 0, 0x35, 0xd1, 0xdc, 0xe4]));
const docx = join(work, 'notes.txt');
writeFileSync(docx, Buffer.concat([Buffer.from([0x50, 0x4b, 3, 4, 20, 0, 6, 0, 8, 0, 0, 0, 0, 0]), Buffer.alloc(16, 0x11), Buffer.from([19, 0, 0, 0]), Buffer.from('[Content_Types].xml'), Buffer.alloc(64, 0xa7)]));

describe('cli: data that is not text', () => {
  it('train refuses a PNG by name, before loading the model, and writes nothing', async () => {
    const r = await cli(['train', '--model', model, '--data', png, '--out', never]);
    expectOneLine(r, `${png}: this looks like a binary file (a PNG image); use plain text or JSONL.`);
    expect(existsSync(never)).toBe(false);
  });

  it('eval refuses a Word document saved under a .txt name', async () => {
    const r = await cli(['eval', '--model', model, '--data', docx]);
    expectOneLine(r, `${docx}: this looks like a binary file (a ZIP archive (.docx, .xlsx and .zip are ZIP archives)); use plain text or JSONL.`);
  });
});

describe('cli: --out', () => {
  it('refuses an --out that names an existing file, and leaves the file alone', async () => {
    const file = join(work, 'taken.txt');
    writeFileSync(file, 'keep me');
    const r = await cli(['train', '--model', model, '--data', data, '--out', file]);
    expectOneLine(r, `--out ${file}: ${file} is a file, not a folder; give a folder (it is created if missing).`);
    expect(readFileSync(file, 'utf8')).toBe('keep me');
  });

  it('refuses an --out below a file', async () => {
    const file = join(work, 'taken2.txt');
    writeFileSync(file, 'keep me');
    const r = await cli(['train', '--model', model, '--data', data, '--out', join(file, 'adapter')]);
    expectOneLine(r, `--out ${join(file, 'adapter')}: ${file} is a file, so the folder ${join(file, 'adapter')} cannot be created; give a folder (it is created if missing).`);
  });

  // /proc/self refuses writes even to root (CI runs as root, so a chmod'ed folder would not do).
  it.runIf(process.platform === 'linux')('refuses an --out in a folder that cannot be written', async () => {
    const r = await cli(['train', '--model', model, '--data', data, '--out', '/proc/self/adapter']);
    expectOneLine(r, /^error: --out \/proc\/self\/adapter: cannot write in \/proc\/self \(.*, E[A-Z]+\); choose a folder you can write to\.$/);
  });
});

describe('cli: flags', () => {
  const bad: [string, string[], string][] = [
    ['an unknown flag', ['--epochs', '3'], 'unknown option --epochs; expected one of'],
    ['a flag with no value at the end', ['--lr'], '--lr needs a value'],
    ['a flag followed by another flag', ['--lr', '--steps', '3'], '--lr needs a value'],
    ['an empty value', ['--steps='], '--steps needs a value'],
    ['a word where a number goes', ['--steps', 'ten'], '--steps must be a non-negative integer (got ten)'],
    ['a blank where a number goes', ['--batch-size', ' '], '--batch-size must be a positive integer (got  )'],
    ['a fraction where an integer goes', ['--seed', '1.5'], '--seed must be an integer (got 1.5)'],
    ['a word for the rank', ['--rank', 'eight'], '--rank must be a positive integer (got eight)'],
    ['a bad --seq-len, before the model loads', ['--seq-len', '0'], '--seq-len must be a positive integer (got 0)'],
    ['a flag given twice', ['--steps', '3', '--steps', '4'], '--steps is given twice; keep one'],
    ['a value for a switch', ['--pack=yes'], '--pack takes no value; write --pack alone'],
    ['a stray argument', ['extra'], 'unexpected argument "extra"; options start with --'],
  ];
  for (const [what, extra, message] of bad) {
    it(`train refuses ${what}, writing nothing`, async () => {
      const r = await cli(['train', '--model', model, '--data', data, '--out', never, ...extra]);
      expectOneLine(r, new RegExp(`^error: ${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      expect(existsSync(never)).toBe(false);
    });
  }

  it('train refuses a missing --data file by name', async () => {
    const r = await cli(['train', '--model', model, '--data', join(work, 'nope.jsonl'), '--out', never]);
    expectOneLine(r, `${join(work, 'nope.jsonl')}: cannot read it (no such file or folder, ENOENT).`);
  });

  it('lora-linear refuses a second file', async () => {
    const r = await cli(['lora-linear', 'examples/lora-linear-identity.json', 'examples/lora-linear-rank1.json']);
    expectOneLine(r, 'usage: lora-linear FILE.json (one JSON file with W, A, B, x and alpha)');
  });

  it('--name=value is read like --name value', async () => {
    const out = join(work, 'eq');
    const r = await cli(['train', `--model=${model}`, `--data=${data}`, '--steps=2', '--batch-size=1', `--out=${out}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(2);
    expect(readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  });
});

describe('saveAdapterDir', () => {
  const config = parseModelConfig(JSON.stringify(TINY_CONFIG));
  const settings = { r: 2, loraAlpha: 4, loraDropout: 0, targetModules: ['q_proj' as const], useRslora: false, baseModel: 'tiny' };

  it('a failed write removes its temporary files and keeps the old adapter whole', async () => {
    const dir = join(work, 'kept');
    await saveAdapterDir(dir, settings, initLora(config, settings, 1), config);
    const before = readdirSync(dir).sort().map((n) => [n, readFileSync(join(dir, n))]);
    // The second file cannot be written: a folder sits at its temporary name.
    mkdirSync(join(dir, 'adapter_config.json.tmp'));
    const attempt = saveAdapterDir(dir, { ...settings, loraAlpha: 8 }, initLora(config, settings, 2), config);
    await expect(attempt).rejects.toThrow(LoraStudioError);
    await expect(attempt).rejects.toThrow(`${dir}: cannot write the adapter there (it is a folder, EISDIR); nothing was written. Choose another --out.`);
    expect(existsSync(join(dir, 'adapter_model.safetensors.tmp'))).toBe(false);
    const after = readdirSync(dir).filter((n) => n !== 'adapter_config.json.tmp').sort().map((n) => [n, readFileSync(join(dir, n))]);
    expect(after).toEqual(before);
  });

  it('a full disk in a folder it created: the folder goes, nothing is left', async () => {
    const dir = join(work, 'fresh', 'nested');
    disk.full = /adapter_config\.json\.tmp$/;
    try {
      await expect(saveAdapterDir(dir, settings, initLora(config, settings, 1), config)).rejects.toThrow(
        `${dir}: cannot write the adapter there (the disk is full, ENOSPC); nothing was written. Choose another --out.`,
      );
    } finally {
      disk.full = undefined;
    }
    expect(existsSync(join(work, 'fresh'))).toBe(false);
  });
});
