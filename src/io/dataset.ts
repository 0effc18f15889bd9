// A user's training data → fixed-length rows of (ids, targets) for the Trainer and Evaluator.
//
// Formats (one per file):
//   plain text             one document, tokenized whole and cut into blocks
//   {"text": ...}          JSONL documents; loss on every token, EOS appended
//   {"prompt", "completion"}  loss on the completion and its EOS only
//   {"messages": [{"role", "content"}, ...]}  rendered with the model's chat template; loss on assistant turns only
//   {"input_ids": [...]}   already tokenized; passed through, loss on every token
//
// Rows: a block of T = seqLen positions from a token stream s with per-token "may be a target" flags:
//   ids[i] = s[p + i],   targets[i] = s[p + i + 1] if that token is trainable, else −100
// so a block covers seqLen + 1 tokens, and consecutive blocks overlap by one token: every token after
// the first is predicted exactly once. An example's first token is never a target; nor is padding.
// With packing, the examples form one stream (EOS between them) cut into full blocks, long ones carried
// over into the next block; without, each example is its own block, padded with the pad id (targets −100)
// and truncated to seqLen + 1 tokens (an example longer than the model's whole context is refused instead:
// cutting it would drop most of it silently). Plain text is always a stream. Packed examples can attend to the
// example before them (no block-diagonal mask), as in transformers' run_clm.
//
// Masked boundaries come from tokenizing the prefix before each boundary and matching it against the whole
// text's tokens (as TRL does), so they are exact even when a tokenizer merges across the boundary. For chat
// rows the character boundaries come from the tokenizer (chatSegments: what each assistant turn adds to
// the rendered conversation), so they hold for any chat template, not only ones we know.
//
// The validation split shuffles examples (blocks for plain text) with a seeded generator, so the same
// seed gives the same split, and no example is split between training and validation.
//
// This file does not read files or touch the GPU.

import { refuseBinaryText } from './binary.ts';
import { FormatError, LoraStudioError, throwerFor } from './errors.ts';
import { CHAT_ROLES, type ChatMessage, type ChatSegment, type LoraTokenizer } from './tokenizer.ts';
import { mulberry32 } from '../util/random';

/** PyTorch's ignore_index, as src/autograd/cross_entropy.ts reads it (not imported: src/io stays GPU-free). */
export const IGNORE_INDEX = -100;

export type DatasetFormat = 'text' | 'text-rows' | 'prompt-completion' | 'chat' | 'input_ids';

/** One training row: (T) ids and (T) next-token targets, −100 where no loss is taken. */
export interface Row {
  ids: Int32Array;
  targets: Int32Array;
}

export interface DatasetOptions {
  /** T: positions per row. */
  seqLen: number;
  format?: 'auto' | 'text' | 'jsonl';
  pack: boolean;
  /** Share of examples held out for validation, in [0, 1). */
  validationShare: number;
  seed: number;
  /** The model's max_position_embeddings: seqLen and unpacked examples must fit in it. */
  contextLength?: number;
  /** The model's vocab_size: input_ids must be below it. */
  vocabSize?: number;
}

export interface PreviewRow {
  /** 1-based line in the file (1 for plain text). */
  line: number;
  /** The example as the model sees it (chat rendered with the template), shortened. */
  text: string;
  tokens: number;
  trainableTokens: number;
}

export interface DatasetStats {
  /** Examples read: JSONL rows, or 1 for a plain-text document. */
  rows: number;
  /** Tokens in all examples, before truncation. */
  tokens: number;
  /** Targets that carry loss, over every training and validation row. */
  trainableTokens: number;
  /** Examples cut to fit seqLen (unpacked only). */
  truncated: number;
  /** Examples with nothing to learn (e.g. an empty completion and no EOS), left out. */
  skipped: number;
}

export interface Dataset {
  format: DatasetFormat;
  train: Row[];
  validation: Row[];
  stats: DatasetStats;
  preview: PreviewRow[];
}

/** One tokenized example: ids, and whether each token may be a target (index 0 never is). */
interface Example {
  line: number;
  ids: number[];
  trainable: Uint8Array;
  text: string;
}

const SHAPES =
  'accepted rows are {"text": "..."}, {"prompt": "...", "completion": "..."}, ' +
  '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]} and {"input_ids": [1, 2, ...]}';

const PREVIEW_ROWS = 5;

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function shorten(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function commonPrefix(a: number[], b: number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

function checkOptions(o: DatasetOptions, fileName: string): void {
  const bad = (message: string): never => {
    throw new LoraStudioError('bad-input', `${fileName}: ${message}`, { file: fileName });
  };
  if (!Number.isSafeInteger(o.seqLen) || o.seqLen < 1) bad(`the sequence length must be a positive whole number of tokens (got ${show(o.seqLen)}).`);
  if (o.contextLength !== undefined && o.seqLen > o.contextLength) {
    bad(`the sequence length ${o.seqLen} is longer than the model's context (max_position_embeddings = ${o.contextLength}); choose at most ${o.contextLength}.`);
  }
  if (typeof o.validationShare !== 'number' || !(o.validationShare >= 0 && o.validationShare < 1)) {
    bad(`the validation share must be a number from 0 up to (not including) 1 (got ${show(o.validationShare)}).`);
  }
  if (!Number.isInteger(o.seed)) bad(`the seed must be a whole number (got ${show(o.seed)}).`);
}

function isJsonlName(name: string): boolean | undefined {
  const ext = /\.([A-Za-z0-9]+)$/.exec(name)?.[1]?.toLowerCase();
  if (ext === 'jsonl' || ext === 'ndjson' || ext === 'json') return true;
  if (ext === 'txt' || ext === 'text' || ext === 'md') return false;
  return undefined;
}

function looksLikeJsonl(text: string): boolean {
  const first = text.split('\n').find((l) => l.trim() !== '');
  if (first === undefined || !first.trimStart().startsWith('{')) return false;
  try {
    const v = JSON.parse(first);
    return typeof v === 'object' && v !== null && !Array.isArray(v);
  } catch {
    return false;
  }
}

export function parseDataset(text: string, fileName: string, tokenizer: LoraTokenizer | undefined, options: DatasetOptions): Dataset {
  checkOptions(options, fileName);
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  // The studio sends text its File.text() decoded; a .png or .docx still shows through (src/io/binary.ts).
  refuseBinaryText(text, fileName);
  if (text.trim() === '') {
    throw new FormatError(fileName, `${fileName}: the dataset is empty. Give plain text, or one JSON object per line (${SHAPES}).`);
  }
  const mode = options.format ?? 'auto';
  const jsonl = mode === 'jsonl' || (mode === 'auto' && (isJsonlName(fileName) ?? looksLikeJsonl(text)));
  const needTokenizer = (what: string): LoraTokenizer => {
    if (tokenizer === undefined) {
      throw new FormatError(fileName, `${fileName}: ${what} needs the model's tokenizer (tokenizer.json in the model folder), and this model has none.`);
    }
    return tokenizer;
  };

  if (!jsonl) {
    const tok = needTokenizer('plain text');
    const ids = tok.encode(text, { addSpecialTokens: true });
    const example: Example = { line: 1, ids, trainable: trainableFrom(ids.length, 1), text };
    const blocks = packBlocks([example], options.seqLen, undefined, tok.padId);
    const { train, validation } = splitUnits(blocks, options, fileName);
    return finish('text', [example], train, validation, 0, 0);
  }

  const { format, examples } = readJsonl(text, fileName, options, needTokenizer);
  const useful = examples.filter((e) => e.trainable.some((f) => f === 1));
  const skipped = examples.length - useful.length;
  const { train, validation } = splitUnits(useful, options, fileName);
  let truncated = 0;
  const toRows = (list: Example[]): Row[] => {
    if (options.pack) return packBlocks(list, options.seqLen, tokenizer?.eosId, tokenizer?.padId ?? 0);
    return list.map((e) => {
      if (options.contextLength !== undefined && e.ids.length > options.contextLength) {
        throw new FormatError(
          fileName,
          `${fileName}:${e.line}: ${e.ids.length} tokens, longer than the model's context (max_position_embeddings = ${options.contextLength}). ` +
            'Split the row into shorter ones, or turn on packing, which carries long rows over several blocks.',
        );
      }
      if (e.ids.length > options.seqLen + 1) truncated++;
      return block(e.ids, e.trainable, 0, options.seqLen, tokenizer?.padId ?? 0);
    });
  };
  const trainRows = toRows(train), validationRows = toRows(validation);
  return finish(format, examples, trainRows, validationRows, truncated, skipped);

  function finish(f: DatasetFormat, all: Example[], tr: Row[], va: Row[], trunc: number, skip: number): Dataset {
    const rows = [...tr, ...va];
    if (rows.length === 0) {
      throw new FormatError(fileName, `${fileName}: nothing to learn from: no row has a token that carries loss (is every completion or assistant reply empty?).`);
    }
    let trainableTokens = 0;
    for (const r of rows) for (const t of r.targets) if (t !== IGNORE_INDEX) trainableTokens++;
    return {
      format: f,
      train: tr,
      validation: va,
      stats: { rows: all.length, tokens: all.reduce((n, e) => n + e.ids.length, 0), trainableTokens, truncated: trunc, skipped: skip },
      preview: all.slice(0, PREVIEW_ROWS).map((e) => ({
        line: e.line,
        text: shorten(e.text),
        tokens: e.ids.length,
        trainableTokens: e.trainable.reduce((n, f) => n + f, 0),
      })),
    };
  }
}

function trainableFrom(n: number, from: number): Uint8Array {
  const t = new Uint8Array(n);
  t.fill(1, Math.max(1, from));
  return t;
}

/** One row from s[p .. p + seqLen] (fewer at the end: padded). */
function block(ids: number[], trainable: Uint8Array, p: number, seqLen: number, padId: number): Row {
  const row: Row = { ids: new Int32Array(seqLen).fill(padId), targets: new Int32Array(seqLen).fill(IGNORE_INDEX) };
  for (let i = 0; i < seqLen && p + i < ids.length; i++) {
    row.ids[i] = ids[p + i];
    if (p + i + 1 < ids.length && trainable[p + i + 1]) row.targets[i] = ids[p + i + 1];
  }
  return row;
}

/** The examples as one stream (an EOS, never a target, between examples that do not end in one), cut into blocks. */
function packBlocks(examples: Example[], seqLen: number, eosId: number | undefined, padId: number): Row[] {
  const ids: number[] = [];
  const flags: number[] = [];
  examples.forEach((e, k) => {
    if (k > 0 && eosId !== undefined && ids[ids.length - 1] !== eosId) {
      ids.push(eosId);
      flags.push(0);
    }
    for (let i = 0; i < e.ids.length; i++) {
      ids.push(e.ids[i]);
      flags.push(e.trainable[i]);
    }
  });
  const trainable = Uint8Array.from(flags);
  const rows: Row[] = [];
  for (let p = 0; p + 1 < ids.length; p += seqLen) {
    const row = block(ids, trainable, p, seqLen, padId);
    if (row.targets.some((t) => t !== IGNORE_INDEX)) rows.push(row);
  }
  return rows;
}

/** Seeded split of units into (train, validation), each kept in file order. */
function splitUnits<T>(units: T[], o: DatasetOptions, fileName: string): { train: T[]; validation: T[] } {
  if (o.validationShare === 0 || units.length === 0) return { train: units, validation: [] };
  let n = Math.round(o.validationShare * units.length);
  if (n === 0) n = 1;
  if (n >= units.length) {
    throw new LoraStudioError(
      'bad-input',
      `${fileName}: a validation share of ${o.validationShare} of ${units.length} row(s) leaves nothing to train on; lower it or add data.`,
      { file: fileName },
    );
  }
  const order = units.map((_, i) => i);
  const random = mulberry32(o.seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const held = new Set(order.slice(0, n));
  return { train: units.filter((_, i) => !held.has(i)), validation: units.filter((_, i) => held.has(i)) };
}

function shapeOf(row: Record<string, unknown>): DatasetFormat | undefined {
  const has = (k: string) => Object.hasOwn(row, k);
  if (has('messages')) return 'chat';
  if (has('prompt') || has('completion')) return 'prompt-completion';
  if (has('text')) return 'text-rows';
  if (has('input_ids')) return 'input_ids';
  return undefined;
}

const SHAPE_NAMES: Record<DatasetFormat, string> = {
  text: 'plain text',
  'text-rows': 'a {"text"} row',
  'prompt-completion': 'a {"prompt", "completion"} row',
  chat: 'a {"messages"} row',
  input_ids: 'an {"input_ids"} row',
};

function readJsonl(
  text: string,
  fileName: string,
  o: DatasetOptions,
  needTokenizer: (what: string) => LoraTokenizer,
): { format: DatasetFormat; examples: Example[] } {
  const examples: Example[] = [];
  let format: DatasetFormat | undefined;
  let firstLine = 0;
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = i + 1;
    const src = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (src.trim() === '') return;
    const at = `${fileName}:${line}`;
    const bad = throwerFor(FormatError, fileName, at);
    let row: unknown;
    try {
      row = JSON.parse(src);
    } catch (e) {
      const hint = line === 1 && src.trimStart().startsWith('[') ? ' The file looks like one JSON array; write one object per line instead.' : '';
      bad(`not valid JSON (${(e as Error).message}).${hint} Each line must be one JSON object.`);
    }
    if (typeof row !== 'object' || row === null || Array.isArray(row)) bad(`must be a JSON object (got ${show(row)}); ${SHAPES}.`);
    const obj = row as Record<string, unknown>;
    const shape = shapeOf(obj);
    if (shape === undefined) bad(`unknown row shape with keys [${Object.keys(obj).map((k) => JSON.stringify(k)).join(', ')}]; ${SHAPES}.`);
    if (format === undefined) {
      format = shape;
      firstLine = line;
    } else if (shape !== format) {
      bad(`is ${SHAPE_NAMES[shape!]} but line ${firstLine} is ${SHAPE_NAMES[format]}; use one row shape per file.`);
    }
    examples.push(readRow(shape!, obj, line, at, bad, o, needTokenizer));
  });
  if (format === undefined) throw new FormatError(fileName, `${fileName}: the dataset is empty: no rows. ${SHAPES}.`);
  return { format, examples };
}

function readRow(
  shape: DatasetFormat,
  obj: Record<string, unknown>,
  line: number,
  at: string,
  bad: (problem: string) => never,
  o: DatasetOptions,
  needTokenizer: (what: string) => LoraTokenizer,
): Example {
  const str = (key: string): string => {
    const v = obj[key];
    if (typeof v !== 'string') bad(`"${key}" must be a string (got ${show(v)}).`);
    return v as string;
  };
  const withEos = (ids: number[], eos: number | undefined) => (eos === undefined ? ids : [...ids, eos]);

  switch (shape) {
    case 'input_ids': {
      const ids = obj.input_ids;
      if (!Array.isArray(ids) || ids.length < 2) bad('"input_ids" must be an array of at least 2 token ids.');
      for (const id of ids as unknown[]) {
        if (!Number.isSafeInteger(id) || (id as number) < 0 || (o.vocabSize !== undefined && (id as number) >= o.vocabSize)) {
          bad(`token id ${show(id)} is not an integer in [0, ${o.vocabSize ?? '∞'}) (the model's vocabulary).`);
        }
      }
      const list = ids as number[];
      return { line, ids: list, trainable: trainableFrom(list.length, 1), text: `[${list.slice(0, 40).join(', ')}${list.length > 40 ? ', …' : ''}]` };
    }
    case 'text-rows': {
      const tok = needTokenizer('{"text"} rows');
      const text = str('text');
      const ids = withEos(tok.encode(text, { addSpecialTokens: true }), tok.eosId);
      return { line, ids, trainable: trainableFrom(ids.length, 1), text };
    }
    case 'prompt-completion': {
      const tok = needTokenizer('{"prompt", "completion"} rows');
      const prompt = str('prompt'), completion = str('completion');
      const full = tok.encode(prompt + completion, { addSpecialTokens: true });
      const start = commonPrefix(tok.encode(prompt, { addSpecialTokens: true }), full);
      const ids = withEos(full, tok.eosId);
      return { line, ids, trainable: trainableFrom(ids.length, start), text: prompt + completion };
    }
    case 'chat': {
      const tok = needTokenizer('chat {"messages"} rows');
      const messages = readMessages(obj.messages, bad);
      // No usable template is the tokenizer's problem, not this row's: its error names the file to fix.
      if (tok.chatSegments === undefined) throw tok.chatError ?? new LoraStudioError('unsupported', 'This tokenizer cannot render chats.');
      let segments: ChatSegment[];
      try {
        segments = tok.chatSegments(messages);
      } catch (e) {
        if (!(e instanceof LoraStudioError)) throw e;
        // The template refusing this conversation (raise_exception) is fixed in the data; anything else in the template.
        if (e.code === 'bad-input') bad(e.message);
        throw new LoraStudioError(e.code, `${at}: ${e.message}`, { file: e.file, cause: e });
      }
      const text = segments.map((s) => s.text).join('');
      const ids = tok.encode(text, { addSpecialTokens: false });
      // Token k is trainable when it starts inside a trainable segment; boundaries from prefix tokenization.
      const trainable = new Uint8Array(ids.length);
      let offset = 0, prev = false, from = 0;
      const mark = (end: number) => trainable.fill(1, Math.max(1, from), end);
      for (const s of segments) {
        if (s.trainable !== prev) {
          const boundary = commonPrefix(tok.encode(text.slice(0, offset), { addSpecialTokens: false }), ids);
          if (prev) mark(boundary);
          else from = boundary;
          prev = s.trainable;
        }
        offset += s.text.length;
      }
      if (prev) mark(ids.length);
      return { line, ids, trainable, text };
    }
    default:
      return bad(`unknown row shape; ${SHAPES}.`);
  }
}

function readMessages(v: unknown, bad: (problem: string) => never): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) bad('"messages" must be a non-empty list of {"role", "content"} objects.');
  const messages = (v as unknown[]).map((m, i) => {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) bad(`message ${i + 1} must be an object {"role", "content"} (got ${show(m)}).`);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== 'string' || !(CHAT_ROLES as readonly string[]).includes(role)) {
      bad(`message ${i + 1} has role ${show(role)}; roles are ${CHAT_ROLES.join(', ')}.`);
    }
    if (typeof content !== 'string') bad(`message ${i + 1} has content ${show(content)}, not a string.`);
    return { role, content } as ChatMessage;
  });
  if (!messages.some((m) => m.role === 'assistant')) bad('has no assistant message, so there is nothing to learn from it.');
  return messages;
}
