// src/io/tokenizer.ts against Hugging Face's reference implementations:
//   ids    every tokenizer.json we ship or test with (the fixtures in each supported family's layout, and the
//          default model's), on samples from the empty string to a page of Moby-Dick, against the ids the
//          Rust `tokenizers` crate gives (expected.json, written by make_expected.mjs; when the npm binding of
//          that crate is installed, as a devDependency it is, also against it live);
//   chat   the public chat templates of SmolLM2-Instruct, Qwen2.5-Instruct, TinyLlama-Chat and Llama 3.2
//          Instruct, against Python Jinja2 set up as transformers sets it up (chat_templates/expected.json),
//          and the loss mask dataset.ts builds from them;
//   errors templates that do not parse, fail, refuse a conversation or cannot be masked.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadTokenizer, type ChatMessage, type LoraTokenizer } from '../../src/io/tokenizer';
import { parseDataset, IGNORE_INDEX, type Row } from '../../src/io/dataset';
import { ConfigError, FormatError, LoraStudioError, UnsupportedError } from '../../src/io/errors';
import { fixtureText, type FixtureTokenizer } from '../fixtures/tokenizer/tiny_repo';
import { mulberry32 } from '../reference/rng';

interface Case {
  text: string;
  ids: number[];
  ids_special: number[];
  decoded: string;
  decoded_skip_special: string;
}
interface Expected {
  tokenizer: string;
  vocab_size: number;
  cases: Case[];
}

const root = new URL('../../', import.meta.url);
const repoText = (path: string) => readFileSync(new URL(path, root), 'utf8');

// The npm binding of the Rust crate (a devDependency); the fixtures alone still check parity without it.
type RustTokenizers = typeof import('tokenizers');
const rust: RustTokenizers | undefined = await import('tokenizers').catch(() => undefined);

const VARIANTS = ['bytelevel', 'qwen', 'llama', 'metaspace', 'llama3', 'moby-llama'] as const;

function loadVariant(variant: (typeof VARIANTS)[number]): { expected: Expected; tok: LoraTokenizer } {
  const expected: Expected = JSON.parse(repoText(`tests/fixtures/tokenizer/${variant}/expected.json`));
  const dir = expected.tokenizer.replace(/tokenizer\.json$/, '');
  return { expected, tok: loadTokenizer(repoText(expected.tokenizer), repoText(`${dir}tokenizer_config.json`)) };
}

const show = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);

/** Seeded random strings from pieces that tokenizers treat differently, for the live comparison. */
function randomTexts(seed: number, count: number, specials: string[]): string[] {
  const pieces = [
    'the', ' The', 'quick', ' brown', 'Hello', ' world', "'s", "'LL", ' ', '  ', '\t', '\n', '\r\n', '\n\n', '0', '42', '1234567', '3.14',
    '!', '...', '?!', '"', '(', ')', '-', '_', '/', 'caf\u00e9', 'e\u0301', '\u00c5', '\u1100\u1161', '\u65e5\u672c', '\u0395\u03bb',
    '\u0627\u0644', '\u{1F642}', '\u{1F44D}\u{1F3FD}', '\u200d', '\u00a0', '\u2581', '\u0000', ...specials,
  ];
  const rng = mulberry32(seed);
  return Array.from({ length: count }, () => Array.from({ length: 1 + Math.floor(rng() * 12) }, () => pieces[Math.floor(rng() * pieces.length)]).join(''));
}

for (const variant of VARIANTS) {
  describe(`${variant} tokenizer vs Rust tokenizers`, () => {
    const { expected, tok } = loadVariant(variant);
    const tokenizerJson = JSON.parse(repoText(expected.tokenizer));

    it('has samples of every kind: empty, long, and each added token', () => {
      const texts = expected.cases.map((c) => c.text);
      expect(texts.length).toBeGreaterThanOrEqual(45);
      expect(texts).toContain('');
      expect(Math.max(...texts.map((t) => t.length))).toBeGreaterThan(2000);
      for (const { content } of tokenizerJson.added_tokens) expect(texts.some((t) => t.includes(`abc${content}def`)), content).toBe(true);
      expect(tok.vocabSize).toBe(expected.vocab_size);
    });

    it('gives the Rust ids, with and without special tokens, and decodes them as Rust does', () => {
      // All samples in one test, so a failure lists every sample that differs, not just the first.
      const differences: string[] = [];
      for (const c of expected.cases) {
        const got = {
          ids: tok.encode(c.text, { addSpecialTokens: false }),
          ids_special: tok.encode(c.text, { addSpecialTokens: true }),
          decoded: tok.decode(c.ids),
          decoded_skip_special: tok.decode(c.ids_special, { skipSpecialTokens: true }),
        };
        for (const key of ['ids', 'ids_special', 'decoded', 'decoded_skip_special'] as const) {
          if (JSON.stringify(got[key]) !== JSON.stringify(c[key])) {
            differences.push(`${show(c.text)} ${key}: got ${JSON.stringify(got[key]).slice(0, 200)}, Rust ${JSON.stringify(c[key]).slice(0, 200)}`);
          }
        }
      }
      expect(differences).toEqual([]);
    });

    it.skipIf(rust === undefined)('matches the Rust crate live, on the samples and 300 random strings, and the fixture is up to date', async () => {
      const ref = rust!.Tokenizer.fromFile(new URL(expected.tokenizer, root).pathname);
      const differences: string[] = [];
      for (const c of expected.cases) {
        const ids = (await ref.encode(c.text, null, { addSpecialTokens: false })).getIds();
        const idsSpecial = (await ref.encode(c.text, null, { addSpecialTokens: true })).getIds();
        if (JSON.stringify(ids) !== JSON.stringify(c.ids) || JSON.stringify(idsSpecial) !== JSON.stringify(c.ids_special)) {
          differences.push(`${show(c.text)}: the fixture is stale (run make_expected.mjs)`);
        }
        if (JSON.stringify(tok.encode(c.text, { addSpecialTokens: false })) !== JSON.stringify(ids)) differences.push(`${show(c.text)}: ids differ`);
        if (JSON.stringify(tok.encode(c.text, { addSpecialTokens: true })) !== JSON.stringify(idsSpecial)) differences.push(`${show(c.text)}: ids_special differ`);
        if (tok.decode(ids) !== (await ref.decode(ids, false))) differences.push(`${show(c.text)}: decode differs`);
      }
      for (const text of randomTexts(VARIANTS.indexOf(variant) + 1, 300, tokenizerJson.added_tokens.map((t: { content: string }) => t.content))) {
        const ids = (await ref.encode(text, null, { addSpecialTokens: true })).getIds();
        if (JSON.stringify(tok.encode(text, { addSpecialTokens: true })) !== JSON.stringify(ids)) differences.push(`random ${show(text)}: ids differ`);
        if (tok.decode(ids) !== (await ref.decode(ids, false))) differences.push(`random ${show(text)}: decode differs`);
      }
      expect(differences).toEqual([]);
    });
  });
}

describe('special tokens from tokenizer_config.json', () => {
  it('reads BOS, EOS and padding, falling back to EOS for padding', () => {
    const byVariant = (v: FixtureTokenizer) => loadTokenizer(fixtureText(v, 'tokenizer.json'), fixtureText(v, 'tokenizer_config.json'));
    const smol = byVariant('bytelevel'), llama = byVariant('llama'), llama3 = byVariant('llama3');
    expect([smol.bosId, smol.eosId, smol.padId]).toEqual(['<|im_start|>', '<|im_end|>', '<|im_end|>'].map((t) => smol.tokenId(t)));
    expect([llama.bosId, llama.eosId, llama.padId]).toEqual([1, 2, 2]);
    expect([llama3.bosId, llama3.eosId, llama3.padId]).toEqual(['<|begin_of_text|>', '<|eot_id|>', '<|eot_id|>'].map((t) => llama3.tokenId(t)));
  });

  it('reads AddedToken dicts and a null bos_token', () => {
    const cfg = JSON.stringify({ eos_token: { content: '<|endoftext|>', special: true }, bos_token: null });
    const t = loadTokenizer(fixtureText('bytelevel', 'tokenizer.json'), cfg);
    expect(t.eosId).toBe(t.tokenId('<|endoftext|>'));
    expect(t.bosId).toBeUndefined();
  });

  it('refuses a tokenizer.json that does not parse, naming the file', () => {
    const names = { tokenizer: 'm/tokenizer.json', config: 'm/tokenizer_config.json' };
    expect(() => loadTokenizer('{"model": ', undefined, names)).toThrow(FormatError);
    expect(() => loadTokenizer('{"model": ', undefined, names)).toThrow(/^m\/tokenizer\.json: not valid JSON/);
  });
});

// ── Chat templates ──────────────────────────────────────────────────────────────────────────────────────

interface ChatCase {
  variant: FixtureTokenizer;
  template: string;
  add_generation_prompt: boolean;
  messages: ChatMessage[];
  text: string;
}
const chatCases: ChatCase[] = JSON.parse(fixtureText('chat_templates', 'expected.json')).cases;
const tokenizers = new Map<FixtureTokenizer, LoraTokenizer>();
const fixtureTokenizer = (v: FixtureTokenizer): LoraTokenizer => {
  if (!tokenizers.has(v)) tokenizers.set(v, loadTokenizer(fixtureText(v, 'tokenizer.json'), fixtureText(v, 'tokenizer_config.json')));
  return tokenizers.get(v)!;
};

/** Each template's end-of-turn marker, and whether it trims the reply (Llama 3.2's `| trim`). */
const TURN_END: Partial<Record<FixtureTokenizer, { end: string; trim: boolean }>> = {
  bytelevel: { end: '<|im_end|>', trim: false },
  qwen: { end: '<|im_end|>', trim: false },
  llama: { end: '</s>', trim: false },
  llama3: { end: '<|eot_id|>', trim: true },
};

describe('chat templates, against Python Jinja2 as transformers runs it', () => {
  // make_expected.py pins strftime_now to this moment (Llama 3.2 prints the date); so does this.
  beforeAll(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date(2024, 6, 26, 12, 0));
  });
  afterAll(() => vi.useRealTimers());

  it('covers the four templates, with and without the generation prompt', () => {
    expect(new Set(chatCases.map((c) => c.template))).toEqual(new Set(['smollm2-instruct', 'qwen2.5-instruct', 'tinyllama-chat', 'llama-3.2-instruct']));
    expect(chatCases.length).toBeGreaterThanOrEqual(40);
  });

  for (const c of chatCases) {
    const roles = c.messages.map((m) => m.role[0]).join('');
    it(`renders ${c.template} [${roles}]${c.add_generation_prompt ? ' + generation prompt' : ''} as transformers does`, () => {
      const tok = fixtureTokenizer(c.variant);
      expect(tok.chatFormat).toBe('template');
      expect(tok.applyChatTemplate!(c.messages, { addGenerationPrompt: c.add_generation_prompt })).toBe(c.text);
      if (!c.add_generation_prompt) expect(tok.chatSegments!(c.messages).map((s) => s.text).join('')).toBe(c.text);
    });
  }

  it("prints today's date where Llama 3.2's template asks strftime_now for it, in English whatever the locale", () => {
    const text = fixtureTokenizer('llama3').applyChatTemplate!([{ role: 'user', content: 'Hi' }]);
    expect(text).toContain('Today Date: 26 Jul 2024\n');
  });
});

/** The targets that carry loss, in order. */
const trained = (rows: Row[]) => rows.flatMap((r) => [...r.targets].filter((t) => t !== IGNORE_INDEX));

describe('loss masks with real chat templates', () => {
  const opts = { seqLen: 256, pack: false, validationShare: 0, seed: 0 };
  const conversations = [...new Map(chatCases.filter((c) => c.messages.some((m) => m.role === 'assistant')).map((c) => [JSON.stringify(c.messages), c.messages])).values()];

  for (const [variant, { end, trim }] of Object.entries(TURN_END) as [FixtureTokenizer, { end: string; trim: boolean }][]) {
    it(`${variant}: loss on each assistant reply and its ${end}, nothing else`, () => {
      const tok = fixtureTokenizer(variant);
      for (const messages of conversations) {
        const d = parseDataset(JSON.stringify({ messages }), 'chat.jsonl', tok, opts);
        const ids = tok.encode(tok.applyChatTemplate!(messages), { addSpecialTokens: false });
        expect([...d.train[0].ids].slice(0, ids.length)).toEqual(ids);
        // Each target is the next token of the rendered text, so the mask selects from the real sequence.
        d.train[0].targets.forEach((t, i) => t !== IGNORE_INDEX && expect(t).toBe(ids[i + 1]));
        const turns = messages.filter((m) => m.role === 'assistant').map((m) => (trim ? m.content.trim() : m.content) + end);
        expect(tok.chatSegments!(messages).filter((s) => s.trainable).map((s) => s.text)).toEqual(turns);
        // Llama's decoder (Strip, start 1) drops the first space of whatever it decodes: SentencePiece's word mark.
        const want = turns.join('').replace(variant === 'llama' ? /^ / : /^$/, '');
        expect(tok.decode(trained(d.train)), JSON.stringify(messages)).toBe(want);
      }
    });
  }

  it('trains on what the model must generate after the generation prompt: TinyLlama\'s prompt ends with "\\n", so the reply starts after it', () => {
    const tok = fixtureTokenizer('llama');
    const messages: ChatMessage[] = [{ role: 'user', content: 'Hi!' }, { role: 'assistant', content: 'Hello.' }];
    const prompt = tok.applyChatTemplate!(messages.slice(0, 1), { addGenerationPrompt: true });
    expect(prompt.endsWith('<|assistant|>\n')).toBe(true);
    expect(tok.chatSegments!(messages).filter((s) => s.trainable).map((s) => s.text)).toEqual(['Hello.</s>']);
  });
});

describe('chat without a template, and templates that cannot be used', () => {
  const json = fixtureText('bytelevel', 'tokenizer.json');
  const chat: ChatMessage[] = [{ role: 'user', content: 'Hi!' }, { role: 'assistant', content: 'Hello.' }];
  const row = JSON.stringify({ messages: chat });
  const opts = { seqLen: 64, pack: false, validationShare: 0, seed: 0 };
  const caught = (f: () => unknown): LoraStudioError => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(LoraStudioError);
      return e as LoraStudioError;
    }
    throw new Error('expected an error');
  };

  it('falls back to plain ChatML only when there is no template and the vocabulary has its tokens', () => {
    const none = loadTokenizer(json, '{}');
    expect(none.chatFormat).toBe('chatml');
    expect(none.applyChatTemplate!(chat, { addGenerationPrompt: true })).toBe('<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>assistant\n');
    const llama = loadTokenizer(fixtureText('llama', 'tokenizer.json'), '{}', { tokenizer: 'tl/tokenizer.json', config: 'tl/tokenizer_config.json' });
    expect(llama.chatFormat).toBeUndefined();
    expect(llama.chatError).toBeInstanceOf(UnsupportedError);
    expect(llama.chatError!.file).toBe('tl/tokenizer_config.json');
    expect(llama.chatError!.message).toMatch(/^tl\/tokenizer_config\.json has no chat_template/);
    expect(caught(() => parseDataset(row, 'c.jsonl', llama, opts))).toBe(llama.chatError);
  });

  it('renders a chat_template.jinja given beside the config instead of the config\'s template, naming that file in errors', () => {
    const t = loadTokenizer(json, fixtureText('bytelevel', 'tokenizer_config.json'), undefined, { chatTemplate: '{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}' });
    expect(t.applyChatTemplate!(chat)).toBe('[user] Hi!\n[assistant] Hello.\n');
    const broken = loadTokenizer(json, undefined, undefined, { chatTemplate: '{{ 1 + }}' });
    expect(broken.chatError!.file).toBe('chat_template.jinja');
  });

  it('gives templates the globals Jinja and transformers give them: range, namespace, none, True', () => {
    const src =
      '{% set ns = namespace(n=0) %}{% for i in range(messages|length) %}{% set ns.n = ns.n + i %}{% endfor %}' +
      '{{ ns.n }} {{ range(5, 0, -2)|join(",") }}{% if tools is none %} no tools{% endif %}{% if True and not False %} T{% endif %}' +
      '{% if bos_token is not defined %} no BOS{% endif %}';
    const t = loadTokenizer(json, '{}', undefined, { chatTemplate: src });
    expect(t.applyChatTemplate!([...chat, ...chat])).toBe('6 5,3,1 no tools T no BOS');
  });

  it('refuses a template that does not parse with a ConfigError naming tokenizer_config.json, and keeps the tokenizer usable', () => {
    const cfg = JSON.stringify({ eos_token: '<|im_end|>', chat_template: "{% for m in messages %}{{ m['content'] }}" });
    const t = loadTokenizer(json, cfg, { tokenizer: 'm/tokenizer.json', config: 'm/tokenizer_config.json' });
    expect(t.applyChatTemplate).toBeUndefined();
    expect(t.chatError).toBeInstanceOf(ConfigError);
    expect(t.chatError!.file).toBe('m/tokenizer_config.json');
    expect(t.chatError!.message).toMatch(/^m\/tokenizer_config\.json: the chat_template is not a template .* can parse/);
    expect(t.encode('Hello world')).toEqual(loadTokenizer(json).encode('Hello world'));
    expect(caught(() => parseDataset(row, 'c.jsonl', t, opts))).toBe(t.chatError);
    expect(parseDataset(JSON.stringify({ prompt: 'Hi', completion: ' there' }), 'p.jsonl', t, opts).format).toBe('prompt-completion');
  });

  it('reports a template that fails while rendering as a ConfigError naming the file and the dataset line', () => {
    const cfg = JSON.stringify({ chat_template: '{% for m in messages %}{{ m.content | no_such_filter }}{% endfor %}' });
    const t = loadTokenizer(json, cfg);
    const direct = caught(() => t.applyChatTemplate!(chat));
    expect(direct).toBeInstanceOf(ConfigError);
    expect(direct.message).toMatch(/^tokenizer_config\.json: the chat_template failed while rendering/);
    const viaData = caught(() => parseDataset(`{"text": "x"}\n`.replace('{"text": "x"}', row), 'c.jsonl', t, opts));
    expect(viaData.code).toBe('bad-config');
    expect(viaData.file).toBe('tokenizer_config.json');
    expect(viaData.message).toMatch(/^c\.jsonl:1: tokenizer_config\.json: the chat_template failed/);
  });

  it("reports a conversation the template refuses (raise_exception) against the dataset line, with the template's reason", () => {
    const strict =
      "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
      "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
      "{{ '[' + m['role'] + '] ' + m['content'] + eos_token }}{% endfor %}";
    const t = loadTokenizer(json, JSON.stringify({ eos_token: '<|im_end|>', chat_template: strict }));
    expect(t.applyChatTemplate!(chat)).toBe('[user] Hi!<|im_end|>[assistant] Hello.<|im_end|>');
    const data = [row, JSON.stringify({ messages: [chat[1], chat[0], chat[1]] })].join('\n');
    const e = caught(() => parseDataset(data, 'c.jsonl', t, opts));
    expect(e).toBeInstanceOf(FormatError);
    expect(e.file).toBe('c.jsonl');
    expect(e.message).toBe('c.jsonl:2: tokenizer_config.json: the chat_template refuses this conversation: Conversation roles must alternate user/assistant/user/assistant/...');
  });

  it('refuses to mask a template that renders earlier turns differently once later turns follow', () => {
    const cfg = JSON.stringify({ chat_template: '{% for m in messages %}{% if loop.last %}{{ m.content }}{% else %}[{{ m.content }}]{% endif %}{% endfor %}' });
    const t = loadTokenizer(json, cfg);
    const long: ChatMessage[] = [...chat, { role: 'user', content: 'More?' }];
    expect(t.applyChatTemplate!(long)).toBe('[Hi!][Hello.]More?');
    const e = caught(() => t.chatSegments!(long));
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e.message).toMatch(/^tokenizer_config\.json: the chat_template renders assistant turn 2 differently once later messages follow it/);
  });
});
