// src/io/dataset.ts: every format turned into (ids, targets) rows, checked token by token against the
// tokenizer: shifted targets, loss masks (prompt and non-assistant tokens), EOS, packing, padding,
// truncation, the seeded validation split, stats and preview; then the CLI training and evaluating on
// {"text"} and {"prompt", "completion"} rows end to end.

import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IGNORE_INDEX, parseDataset, type DatasetOptions, type Row } from '../../src/io/dataset';
import { loadTokenizer } from '../../src/io/tokenizer';
import { fixtureText, TOKENIZER_VOCAB } from '../fixtures/tokenizer/tiny_repo';
import { writeTinyModel } from '../cli/tiny-model';

const tok = loadTokenizer(fixtureText('bytelevel', 'tokenizer.json'), fixtureText('bytelevel', 'tokenizer_config.json'));
const EOS = tok.eosId!;
const opts = (o: Partial<DatasetOptions> = {}): DatasetOptions => ({ seqLen: 16, pack: false, validationShare: 0, seed: 0, ...o });
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

/** The tokens that carry loss, in order, across rows. */
const trained = (rows: Row[]) => rows.flatMap((r) => [...r.targets].filter((t) => t !== IGNORE_INDEX));

/** Every row: targets[i] is ids[i + 1] or the next row's first id, or −100. */
function expectShifted(rows: Row[], stream?: number[]) {
  for (const r of rows) {
    expect(r.ids.length).toBe(r.targets.length);
    for (let i = 0; i + 1 < r.ids.length; i++) if (r.targets[i] !== IGNORE_INDEX) expect(r.targets[i]).toBe(r.ids[i + 1]);
  }
  if (stream) {
    const T = rows[0].ids.length;
    rows.forEach((r, k) => expect([...r.ids].slice(0, Math.min(T, stream.length - k * T))).toEqual(stream.slice(k * T, k * T + T)));
  }
}

describe('plain text', () => {
  const text = 'The quick brown fox jumps over the lazy dog.\nHello world! '.repeat(4);
  const ids = tok.encode(text);

  it('is cut into blocks of seqLen whose targets are the next tokens, every token after the first predicted once', () => {
    const d = parseDataset(text, 'notes.txt', tok, opts({ seqLen: 16 }));
    expect(d.format).toBe('text');
    expect(d.train).toHaveLength(Math.ceil((ids.length - 1) / 16));
    expectShifted(d.train, ids);
    expect(trained(d.train)).toEqual(ids.slice(1));
    // Block k's last target is block k+1's first id: no prediction is lost between blocks.
    expect(d.train[0].targets[15]).toBe(d.train[1].ids[0]);
    const last = d.train[d.train.length - 1];
    const used = (ids.length - 1) % 16 || 16;
    expect([...last.targets].slice(used)).toEqual(new Array(16 - used).fill(IGNORE_INDEX));
    expect([...last.ids].slice(used + 1).every((id) => id === tok.padId)).toBe(true);
    expect(d.stats).toEqual({ rows: 1, tokens: ids.length, trainableTokens: ids.length - 1, truncated: 0, skipped: 0 });
    expect(d.preview).toEqual([{ line: 1, text: text.slice(0, 199) + '…', tokens: ids.length, trainableTokens: ids.length - 1 }]);
  });

  it('splits blocks into a validation set by seed, the same way every time', () => {
    const a = parseDataset(text, 'notes.txt', tok, opts({ seqLen: 4, validationShare: 0.25, seed: 7 }));
    const b = parseDataset(text, 'notes.txt', tok, opts({ seqLen: 4, validationShare: 0.25, seed: 7 }));
    const c = parseDataset(text, 'notes.txt', tok, opts({ seqLen: 4, validationShare: 0.25, seed: 8 }));
    const all = parseDataset(text, 'notes.txt', tok, opts({ seqLen: 4 })).train;
    expect(a.validation.length).toBe(Math.round(all.length / 4));
    expect(a.train.length + a.validation.length).toBe(all.length);
    expect(a.validation).toEqual(b.validation);
    expect(a.train).toEqual(b.train);
    expect(c.validation).not.toEqual(a.validation);
    const key = (r: Row) => [...r.ids, ...r.targets].join(',');
    expect(new Set([...a.train, ...a.validation].map(key))).toEqual(new Set(all.map(key)));
  });
});

describe('JSONL rows', () => {
  it('{"text"}: loss on every token and the appended EOS; padded with the pad id, −100 targets', () => {
    const d = parseDataset(jsonl([{ text: 'Hello world' }, { text: 'the dog' }]), 'd.jsonl', tok, opts());
    expect(d.format).toBe('text-rows');
    const ids = [...tok.encode('Hello world'), EOS];
    expect([...d.train[0].ids]).toEqual([...ids, ...new Array(16 - ids.length).fill(tok.padId)]);
    expect([...d.train[0].targets]).toEqual([...ids.slice(1), ...new Array(17 - ids.length).fill(IGNORE_INDEX)]);
    expect(d.stats.trainableTokens).toBe(ids.length - 1 + tok.encode('the dog').length);
  });

  it('{"prompt", "completion"}: loss only on the completion and EOS', () => {
    const rows = [{ prompt: 'Q: 2+2?\nA:', completion: ' 4' }, { prompt: 'Say hello:', completion: ' Hello there, how are you?' }];
    const d = parseDataset(jsonl(rows), 'qa.jsonl', tok, opts({ seqLen: 32 }));
    expect(d.format).toBe('prompt-completion');
    expectShifted(d.train);
    d.train.forEach((r, k) => expect(tok.decode([...r.targets].filter((t) => t !== IGNORE_INDEX))).toBe(rows[k].completion + '<|im_end|>'));
    expect(d.preview.map((p) => p.trainableTokens)).toEqual(rows.map((r) => tok.encode(r.completion).length + 1));
  });

  it('{"messages"}: rendered with the chat template, loss only on assistant turns and their end marker', () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi!' },
      { role: 'assistant', content: 'Hello.' },
      { role: 'user', content: 'Numbers?' },
      { role: 'assistant', content: '1 2 3' },
    ];
    const d = parseDataset(jsonl([{ messages }]), 'chat.jsonl', tok, opts({ seqLen: 96 }));
    expect(d.format).toBe('chat');
    const text = tok.applyChatTemplate!(messages as never);
    const ids = tok.encode(text, { addSpecialTokens: false });
    expect([...d.train[0].ids].slice(0, ids.length)).toEqual(ids);
    expectShifted(d.train);
    expect(tok.decode(trained(d.train))).toBe('Hello.<|im_end|>1 2 3<|im_end|>');
    expect(d.preview[0].text).toBe(text);
  });

  it('{"input_ids"}: passed through without a tokenizer, loss on every next token, padded with 0', () => {
    const d = parseDataset(jsonl([{ input_ids: [5, 6, 7, 8] }, { input_ids: [9, 10] }]), 't.jsonl', undefined, opts({ seqLen: 6, vocabSize: 32 }));
    expect(d.format).toBe('input_ids');
    expect([...d.train[0].ids]).toEqual([5, 6, 7, 8, 0, 0]);
    expect([...d.train[0].targets]).toEqual([6, 7, 8, -100, -100, -100]);
    expect([...d.train[1].targets]).toEqual([10, -100, -100, -100, -100, -100]);
    expect(d.stats).toMatchObject({ rows: 2, tokens: 6, trainableTokens: 4 });
  });

  it('truncates unpacked rows longer than seqLen + 1 tokens and counts them', () => {
    const d = parseDataset(jsonl([{ input_ids: [1, 2, 3, 4, 5, 6, 7, 8] }, { input_ids: [1, 2] }]), 't.jsonl', undefined, opts({ seqLen: 4 }));
    expect([...d.train[0].ids]).toEqual([1, 2, 3, 4]);
    expect([...d.train[0].targets]).toEqual([2, 3, 4, 5]);
    expect(d.stats.truncated).toBe(1);
  });

  it('packs short rows into full blocks with EOS separators, keeping the loss masks', () => {
    const rows = [{ prompt: 'A:', completion: ' one' }, { prompt: 'B:', completion: ' two' }, { prompt: 'C:', completion: ' three' }];
    const d = parseDataset(jsonl(rows), 'qa.jsonl', tok, opts({ seqLen: 8, pack: true }));
    const stream = rows.flatMap((r) => [...tok.encode(r.prompt + r.completion), EOS]);
    expect(d.train).toHaveLength(Math.ceil((stream.length - 1) / 8));
    expectShifted(d.train, stream);
    expect(tok.decode(trained(d.train))).toBe(' one<|im_end|> two<|im_end|> three<|im_end|>');
    // Packed chat rows get an EOS (never a target) between them, since they end in "<|im_end|>\n".
    const chat = { messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: 'y' }] };
    const c = parseDataset(jsonl([chat, chat]), 'c.jsonl', tok, opts({ seqLen: 200, pack: true }));
    expect(c.train).toHaveLength(1);
    expect(tok.decode(trained(c.train))).toBe('y<|im_end|>y<|im_end|>');
    const one = tok.encode(tok.applyChatTemplate!(chat.messages as never), { addSpecialTokens: false });
    expect([...c.train[0].ids].slice(0, 2 * one.length + 1)).toEqual([...one, EOS, ...one]);
  });

  it('splits rows (not blocks) into validation by seed, and keeps file order', () => {
    const rows = Array.from({ length: 20 }, (_, i) => ({ text: `row ${i}` }));
    const d = parseDataset(jsonl(rows), 'r.jsonl', tok, opts({ validationShare: 0.2, seed: 3 }));
    const again = parseDataset(jsonl(rows), 'r.jsonl', tok, opts({ validationShare: 0.2, seed: 3 }));
    expect(d.validation).toHaveLength(4);
    expect(d.train).toHaveLength(16);
    expect(again).toEqual(d);
    const texts = (list: Row[]) => list.map((r) => tok.decode([...r.ids].filter((id) => id !== tok.padId)));
    const all = texts([...d.train, ...d.validation]).sort();
    expect(all).toEqual(rows.map((r) => r.text).sort());
    const order = texts(d.train).map((t) => Number(t.split(' ')[1]));
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });

  it('previews the first rows with line numbers and token counts, skipping blank lines and CRLF', () => {
    const text = '{"text": "a"}\r\n\r\n{"text": "Hello world"}\r\n' + jsonl(Array.from({ length: 6 }, () => ({ text: 'x' })));
    const d = parseDataset(text, 'p.jsonl', tok, opts());
    expect(d.preview).toHaveLength(5);
    expect(d.preview[0]).toEqual({ line: 1, text: 'a', tokens: 2, trainableTokens: 1 });
    expect(d.preview[1]).toEqual({ line: 3, text: 'Hello world', tokens: tok.encode('Hello world').length + 1, trainableTokens: tok.encode('Hello world').length });
    expect(d.stats.rows).toBe(8);
  });

  it('detects the format from the extension, else from the first line', () => {
    expect(parseDataset('{"text": "a b"}\n', 'data', tok, opts()).format).toBe('text-rows');
    expect(parseDataset('{not json} just text\n', 'data', tok, opts()).format).toBe('text');
    expect(parseDataset('{"text": "a b"}\n', 'data.txt', tok, opts()).format).toBe('text');
    expect(parseDataset('{"text": "a b"}\n', 'data.txt', tok, opts({ format: 'jsonl' })).format).toBe('text-rows');
  });

  it('leaves out rows with nothing to learn and counts them', () => {
    const noEos = loadTokenizer(fixtureText('bytelevel', 'tokenizer.json'), '{}');
    const d = parseDataset(jsonl([{ prompt: 'a', completion: '' }, { prompt: 'a', completion: ' b' }]), 'q.jsonl', noEos, opts());
    expect(d.train).toHaveLength(1);
    expect(d.stats.skipped).toBe(1);
  });
});

describe('cli train / eval on text rows', () => {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile('node', ['scripts/cli.mjs', ...args], { cwd: root, timeout: 600_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
    });
  const model = writeTinyModel(4, { vocab_size: TOKENIZER_VOCAB });
  writeFileSync(join(model, 'tokenizer.json'), fixtureText('bytelevel', 'tokenizer.json'));
  writeFileSync(join(model, 'tokenizer_config.json'), fixtureText('bytelevel', 'tokenizer_config.json'));
  const work = mkdtempSync(join(tmpdir(), 'lora-text-'));

  it('trains on {"text"} rows with --seq-len and writes the adapter', async () => {
    const data = join(work, 'text.jsonl');
    writeFileSync(data, jsonl([{ text: 'The quick brown fox jumps over the lazy dog.' }, { text: 'Hello world! Hello there.' }]));
    const out = join(work, 'adapter');
    const r = await cli(['train', '--model', model, '--data', data, '--seq-len', '12', '--steps', '3', '--batch-size', '2', '--lr', '0.01', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const losses = r.stdout.trim().split('\n').map((l) => JSON.parse(l).loss);
    expect(losses).toHaveLength(3);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')).r).toBe(8);
  });

  it('evaluates {"prompt", "completion"} rows on completion tokens only', async () => {
    const rows = [{ prompt: 'Q: 2+2?\nA:', completion: ' 4' }, { prompt: 'Say hello:', completion: ' Hello there' }];
    const data = join(work, 'qa.jsonl');
    writeFileSync(data, jsonl(rows));
    const r = await cli(['eval', '--model', model, '--data', data, '--seq-len', '16']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens).toBe(rows.reduce((n, row) => n + tok.encode(row.completion).length + 1, 0));
    expect(Number.isFinite(out.loss)).toBe(true);
  });

  it('refuses text rows for a model folder without tokenizer.json, and --seq-len past the context', async () => {
    const bare = writeTinyModel(5, { vocab_size: TOKENIZER_VOCAB });
    const data = join(work, 'text2.jsonl');
    writeFileSync(data, jsonl([{ text: 'hello' }]));
    const r = await cli(['eval', '--model', bare, '--data', data]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/text2\.jsonl: \{"text"\} rows needs the model's tokenizer \(tokenizer\.json in the model folder\)/);
    const long = await cli(['train', '--model', model, '--data', data, '--seq-len', '65', '--out', join(work, 'never')]);
    expect(long.code).toBe(1);
    expect(long.stderr).toMatch(/sequence length 65 is longer than the model's context \(max_position_embeddings = 64\)/);
    expect(existsSync(join(work, 'never'))).toBe(false);
  });
});
