// Tests for src/io/zip.ts: CRC-32 against known values, round trips, interop both ways with Info-ZIP
// (`zip`/`unzip`) and Python's zipfile when they are installed (stored and Deflate archives read back
// byte for byte), and refusals of damaged, bzip2-compressed and Zip64 archives with typed errors naming
// the file.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FormatError, LoraStudioError, UnsupportedError } from '../../src/io/errors.ts';
import { crc32, readZip, writeZip, type ZipFile } from '../../src/io/zip.ts';

const dir = mkdtempSync(join(tmpdir(), 'lora-studio-zip-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function has(cmd: string): boolean {
  try {
    execFileSync('which', [cmd], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const HAS_ZIP = has('zip') && has('unzip');
const PYTHON = ['/usr/bin/python3', 'python3'].find((p) => {
  try {
    execFileSync(p, ['-c', 'import zipfile'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});

const enc = new TextEncoder();
/** Bytes 0..n-1 scrambled, so a swapped or shifted byte changes the CRC. */
function noise(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const FILES: ZipFile[] = [
  { name: 'adapter_config.json', bytes: enc.encode('{"peft_type": "LORA", "r": 4}\n') },
  { name: 'adapter_model.safetensors', bytes: noise(70_001) },
  { name: 'notes/ünïcödé name.txt', bytes: enc.encode('named in UTF-8\n') },
  { name: 'empty.txt', bytes: new Uint8Array(0) },
];

function expectFiles(got: Map<string, Uint8Array>, want: ZipFile[]): void {
  expect([...got.keys()].sort()).toEqual(want.map((f) => f.name).sort());
  for (const f of want) expect(Buffer.from(got.get(f.name)!).equals(Buffer.from(f.bytes)), f.name).toBe(true);
}

/** Writes FILES under a fresh folder and returns it. */
function writeTree(name: string): string {
  const root = join(dir, name);
  for (const f of FILES) {
    mkdirSync(join(root, f.name, '..'), { recursive: true });
    writeFileSync(join(root, f.name), f.bytes);
  }
  return root;
}

/** Reads bytes as `fileName` and expects a FormatError for that file whose message starts with its name. */
function expectFormatError(bytes: Uint8Array, pattern: RegExp, fileName = 'bad.zip'): void {
  let caught: unknown;
  try {
    readZip(bytes, fileName);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(FormatError);
  expect((caught as LoraStudioError).file).toBe(fileName);
  expect((caught as Error).message.startsWith(`${fileName}: `)).toBe(true);
  expect((caught as Error).message).toMatch(pattern);
}

describe('crc32', () => {
  it('matches the standard check values', () => {
    expect(crc32(enc.encode('123456789'))).toBe(0xcbf43926); // the CRC-32/ISO-HDLC check value
    expect(crc32(new Uint8Array(0))).toBe(0);
    expect(crc32(enc.encode('The quick brown fox jumps over the lazy dog'))).toBe(0x414fa339);
  });
});

describe('writeZip / readZip', () => {
  it('round-trips names, empty files and binary data', () => {
    const zip = writeZip(FILES, { date: new Date(2024, 4, 17, 13, 45, 30) });
    expectFiles(readZip(zip, 'round.zip'), FILES);
    // Stored, so the archive is the data plus headers: 30 + 46 bytes and the name twice per file, plus 22.
    const names = FILES.reduce((n, f) => n + 2 * enc.encode(f.name).length, 0);
    const data = FILES.reduce((n, f) => n + f.bytes.length, 0);
    expect(zip.length).toBe(data + names + FILES.length * 76 + 22);
  });

  it('reads an archive that sits inside a larger buffer', () => {
    const zip = writeZip(FILES);
    const padded = new Uint8Array(zip.length + 10);
    padded.set(zip, 5);
    expectFiles(readZip(padded.subarray(5, 5 + zip.length)), FILES);
  });

  it('refuses duplicate and absolute names when writing', () => {
    expect(() => writeZip([FILES[0], FILES[0]])).toThrow(/two files/);
    expect(() => writeZip([{ name: '/etc/passwd', bytes: new Uint8Array(1) }])).toThrow(/relative/);
  });
});

describe.skipIf(!HAS_ZIP)('interop with Info-ZIP zip/unzip', () => {
  it('unzip tests and extracts what writeZip wrote', () => {
    const path = join(dir, 'ours.zip');
    writeFileSync(path, writeZip(FILES));
    const test = execFileSync('unzip', ['-t', path], { encoding: 'utf8' });
    expect(test).toContain('No errors detected');
    const out = join(dir, 'ours-extracted');
    execFileSync('unzip', ['-q', path, '-d', out]);
    for (const f of FILES) expect(readFileSync(join(out, f.name)).equals(Buffer.from(f.bytes)), f.name).toBe(true);
  });

  it('reads what `zip -0` wrote, folders included', () => {
    const root = writeTree('for-zip');
    const path = join(dir, 'theirs.zip');
    execFileSync('zip', ['-0', '-r', '-q', path, '.'], { cwd: root });
    const files = readZip(readFileSync(path), 'theirs.zip');
    expectFiles(files, FILES); // the 'notes/' directory entry is skipped
  });

  it('reads what `zip -9` (Deflate) wrote, byte for byte', () => {
    const root = writeTree('for-deflate');
    const path = join(dir, 'deflated.zip');
    execFileSync('zip', ['-9', '-r', '-q', path, '.'], { cwd: root });
    expect(execFileSync('unzip', ['-v', path], { encoding: 'utf8' })).toMatch(/Defl:X/); // compressed, not stored
    expectFiles(readZip(readFileSync(path), 'deflated.zip'), FILES);
  });

  it('refuses a bzip2 archive, saying how to make one it reads', () => {
    const root = writeTree('for-bzip2');
    const path = join(dir, 'bzip2.zip');
    execFileSync('zip', ['-Z', 'bzip2', '-r', '-q', path, '.'], { cwd: root });
    const run = () => readZip(readFileSync(path), 'bzip2.zip');
    expect(run).toThrow(UnsupportedError);
    expect(run).toThrow(/bzip2\.zip: entry ".*" is compressed with bzip2.*plain `zip`.*import the two files directly/);
  });

  it('refuses a streamed (Zip64) archive', () => {
    // zip reading stdin cannot know the size up front, so it writes Zip64 records (stdout must be a file).
    const path = join(dir, 'stream.zip');
    execFileSync('sh', ['-c', 'printf streamed | zip -0 -q - - > "$1"', 'sh', path]);
    expect(() => readZip(readFileSync(path), 'stream.zip')).toThrow(/stream\.zip: is a Zip64 archive/);
  });
});

describe.skipIf(PYTHON === undefined)("interop with Python's zipfile", () => {
  it('zipfile reads what writeZip wrote and checks every CRC', () => {
    const path = join(dir, 'for-python.zip');
    writeFileSync(path, writeZip(FILES));
    const script = `
import json, sys, zipfile, hashlib
with zipfile.ZipFile(sys.argv[1]) as z:
    assert z.testzip() is None
    print(json.dumps({i.filename: [i.compress_type, i.file_size, hashlib.sha256(z.read(i)).hexdigest()] for i in z.infolist()}))
`;
    const got = JSON.parse(execFileSync(PYTHON!, ['-c', script, path], { encoding: 'utf8' }));
    for (const f of FILES) {
      const sha = execFileSync(PYTHON!, ['-c', 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'], { input: f.bytes, encoding: 'utf8' }).trim();
      expect(got[f.name]).toEqual([0, f.bytes.length, sha]);
    }
  });

  it('readZip reads ZIP_STORED and ZIP_DEFLATED archives from zipfile, and refuses a ZIP_BZIP2 one', () => {
    const root = writeTree('for-zipfile');
    const script = `
import os, sys, zipfile
root, out, method = sys.argv[1], sys.argv[2], getattr(zipfile, sys.argv[3])
with zipfile.ZipFile(out, 'w', compression=method) as z:
    for dirpath, _, names in os.walk(root):
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            z.write(p, os.path.relpath(p, root))
`;
    const stored = join(dir, 'py-stored.zip');
    execFileSync(PYTHON!, ['-c', script, root, stored, 'ZIP_STORED']);
    expectFiles(readZip(readFileSync(stored), 'py-stored.zip'), FILES);

    const deflated = join(dir, 'py-deflated.zip');
    execFileSync(PYTHON!, ['-c', script, root, deflated, 'ZIP_DEFLATED']);
    expectFiles(readZip(readFileSync(deflated), 'py-deflated.zip'), FILES);

    const bzip2 = join(dir, 'py-bzip2.zip');
    execFileSync(PYTHON!, ['-c', script, root, bzip2, 'ZIP_BZIP2']);
    expect(() => readZip(readFileSync(bzip2), 'py-bzip2.zip')).toThrow(UnsupportedError);
    expect(() => readZip(readFileSync(bzip2), 'py-bzip2.zip')).toThrow(/compressed with bzip2.*import the two files directly/);
  });

  it('refuses a damaged Deflate stream with a FormatError naming the entry', () => {
    const path = join(dir, 'py-damaged.zip');
    const script = `
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], 'w', compression=zipfile.ZIP_DEFLATED) as z:
    z.writestr('big.txt', 'a line of text that repeats\\n' * 2000)
`;
    execFileSync(PYTHON!, ['-c', script, path]);
    const bad = new Uint8Array(readFileSync(path));
    bad[30 + 'big.txt'.length + 5] ^= 0x5a; // inside the compressed data of the only entry
    expectFormatError(bad, /entry "big\.txt" (does not decompress|decompresses to \d+ bytes|fails its CRC-32 check)/, 'damaged.zip');
  });
});

describe('readZip refusals', () => {
  const good = writeZip(FILES.slice(0, 2));

  it('refuses a file that is not a zip', () => {
    expectFormatError(enc.encode('{"peft_type": "LORA"} but this is plainly not a zip archive'), /not a zip archive/);
    expectFormatError(new Uint8Array(5), /too short/);
  });

  it('refuses a zip cut short', () => {
    expectFormatError(good.subarray(0, good.length - 30), /cut short/);
    expectFormatError(good.subarray(0, 1000), /cut short/);
  });

  it('refuses a flipped data byte by its CRC', () => {
    const bad = good.slice();
    bad[30 + 'adapter_config.json'.length + 3] ^= 0x01;
    expectFormatError(bad, /entry "adapter_config\.json" fails its CRC-32 check/);
  });

  it('refuses a central directory that points at nothing', () => {
    const bad = good.slice();
    const view = new DataView(bad.buffer);
    const cd = view.getUint32(bad.length - 22 + 16, true);
    view.setUint32(cd + 42, 7, true); // the first entry's local header offset
    expectFormatError(bad, /no local file header/);
  });

  it('refuses sizes that run past the data', () => {
    const bad = good.slice();
    const view = new DataView(bad.buffer);
    const cd = view.getUint32(bad.length - 22 + 16, true);
    view.setUint32(cd + 20, 1_000_000, true);
    view.setUint32(cd + 24, 1_000_000, true);
    expectFormatError(bad, /runs into the central directory/);
  });

  it('refuses an encrypted entry', () => {
    const bad = good.slice();
    const view = new DataView(bad.buffer);
    const cd = view.getUint32(bad.length - 22 + 16, true);
    view.setUint16(cd + 8, view.getUint16(cd + 8, true) | 1, true);
    expect(() => readZip(bad, 'locked.zip')).toThrow(/locked\.zip: entry "adapter_config\.json" is encrypted/);
  });
});
