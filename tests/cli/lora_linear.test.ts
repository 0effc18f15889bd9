// `npm run cli -- lora-linear FILE.json`: the worked examples end to end through the real CLI process,
// and bad inputs refused with a message that names the offending field and a non-zero exit.

import { describe, expect, it } from 'vitest';
import { cli as runCli } from './run_cli';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cli = (args: string[]) => runCli(args, 60_000);

const dir = mkdtempSync(join(tmpdir(), 'lora-cli-'));
function file(name: string, content: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

describe('cli lora-linear', () => {
  it('computes the identity worked example', async () => {
    const r = await cli(['lora-linear', 'examples/lora-linear-identity.json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.y).toEqual([9, 14, 11, 16]);
    expect(out.scale).toBe(2);
    expect(out.deltaW).toEqual([[2, 0, 2, 0], [0, 2, 0, 2], [2, 0, 2, 0], [0, 2, 0, 2]]);
    expect(out.params).toEqual({ lora: 16, full: 16 });
  });

  it('computes the rank-1 worked example: ΔW = B·A when α = r', async () => {
    const r = await cli(['lora-linear', 'examples/lora-linear-rank1.json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.deltaW).toEqual([[2, -1, 3], [0, 0, 0], [-2, 1, -3], [4, -2, 6]]);
    // x = I₃, so y's rows are the columns of W + ΔW = [[3,1,6],[4,5,6],[5,9,6],[14,9,18]].
    expect(out.y).toEqual([[3, 4, 5, 14], [1, 5, 9, 9], [6, 6, 6, 18]]);
    expect(out.params).toEqual({ lora: 7, full: 12 });
  });

  const good = { W: [[1, 0], [0, 1], [1, 1]], A: [[1, 2]], B: [[1], [0], [2]], x: [1, 2], alpha: 2 };
  const bad: [string, unknown, RegExp][] = [
    ['ragged W', { ...good, W: [[1, 0], [0]] }, /"W" is ragged: row 1 has 1 numbers but row 0 has 2/],
    ['ragged A', { ...good, A: [[1, 2], [3]] }, /"A" is ragged/],
    ['r = 0', { ...good, A: [], B: [[], [], []] }, /r = 0: LoRA needs r ≥ 1/],
    ['A wrong width', { ...good, A: [[1, 2, 3]] }, /"A" has 3 columns but W has 2 \(in_features\)/],
    ['B wrong height', { ...good, B: [[1], [0]] }, /"B" has 2 rows but W has 3 \(out_features\)/],
    ['B wrong rank', { ...good, B: [[1, 1], [0, 1], [2, 1]] }, /"B" has 2 columns but A has 1 rows \(the rank r\)/],
    ['x wrong length', { ...good, x: [1, 2, 3] }, /"x" has 3 numbers but W has 2 columns/],
    ['x rows wrong width', { ...good, x: [[1, 2, 3]] }, /"x" rows have 3 numbers/],
    ['non-number', { ...good, B: [[1], ['two'], [2]] }, /"B"\[1\]\[0\] is "two", not a finite number/],
    ['null in W', { ...good, W: [[1, null], [0, 1], [1, 1]] }, /"W"\[0\]\[1\] is null/],
    ['missing alpha', { ...good, alpha: undefined }, /"alpha" must be a finite number/],
    ['string alpha', { ...good, alpha: '4' }, /"alpha" must be a finite number \(got "4"\)/],
    ['missing W', { ...good, W: undefined }, /"W" is missing/],
    ['W not an array', { ...good, W: 3 }, /"W" must be/],
    ['bias wrong length', { ...good, bias: [1] }, /"bias" has 1 numbers but W has 3 rows/],
    ['unknown field', { ...good, beta: 1 }, /unknown field "beta"/],
    ['not an object', [1, 2], /expected a JSON object/],
  ];
  for (const [name, content, message] of bad) {
    it(`refuses ${name}`, async () => {
      const p = file(`${name.replace(/\W+/g, '_')}.json`, content);
      const r = await cli(['lora-linear', p]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(p);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe('');
    });
  }

  it('refuses a file that is not JSON', async () => {
    const p = file('broken.json', '{"W": [[1,2]');
    const r = await cli(['lora-linear', p]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not valid JSON/);
  });

  it('refuses a missing file and an unknown command', async () => {
    const r = await cli(['lora-linear', join(dir, 'nope.json')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nope\.json: cannot read it/);
    const u = await cli(['frobnicate']);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/unknown command "frobnicate"/);
  });
});
