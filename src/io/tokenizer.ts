// The tokenizer: a model's tokenizer.json + tokenizer_config.json (the files transformers reads) through
// @huggingface/tokenizers, and its chat template through @huggingface/jinja.
//
// Ids: tests/io/tokenizer.test.ts checks @huggingface/tokenizers against Hugging Face's Rust `tokenizers`
// (what transformers runs) on tokenizers in each supported family's layout; they agree on every sample.
//
// Chat: tokenizer_config.json's "chat_template" (or chat_template.jinja beside it) is rendered as
// transformers' apply_chat_template renders it: Jinja with trim_blocks and lstrip_blocks, given messages,
// add_generation_prompt, tools = documents = None, the special tokens (bos_token, eos_token, ...) and the
// raise_exception and strftime_now functions. Only a tokenizer without any template falls back to plain
// ChatML, and only when its vocabulary has ChatML's tokens. The public templates of SmolLM2, Qwen2.5,
// TinyLlama-Chat and Llama 3.2 render exactly as Python's Jinja2 does (tests/io/tokenizer.test.ts).
// @huggingface/jinja differs from Python where a template prints a non-string value itself: `{{ x is none }}`
// prints "true" (Python: "True"), None prints "" ("None"), a list prints as JSON (Python's repr). Real chat
// templates print strings, and tojson for the rest.
//
// Loss masking (chatSegments): which characters of the rendered chat are an assistant's turn is found by
// rendering prefixes of the conversation, not by knowing the template: assistant turn i is what
// render(messages[..i]) adds to render(messages[..i-1], add_generation_prompt=True), i.e. the reply as
// the model must generate it after the prompt it is given at inference, ending with the turn's end
// marker (whitespace after that marker is left out: generation stops at the marker).
//
// This file does not split data into training rows (dataset.ts) and does not read files (callers pass text).

import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { ConfigError, FormatError, LoraStudioError, UnsupportedError } from './errors.ts';

export interface TokenizerFileNames {
  tokenizer: string;
  config: string;
  /** Where options.chatTemplate came from, for messages (default chat_template.jinja). */
  chatTemplate?: string;
}

export type ChatRole = 'system' | 'user' | 'assistant';
export const CHAT_ROLES: readonly ChatRole[] = ['system', 'user', 'assistant'];

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/** A piece of rendered chat text; `trainable` pieces (assistant replies and their end marker) carry the loss. */
export interface ChatSegment {
  text: string;
  trainable: boolean;
}

/** 'template': the model's own chat_template; 'chatml': no template, so plain ChatML (the vocabulary has its tokens). */
export type ChatFormat = 'template' | 'chatml';

export interface LoraTokenizer {
  /** 1 + the largest id the tokenizer can produce; must not exceed the model's vocab_size. */
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  /** Padding id: tokenizer_config's pad_token, else EOS, else 0. Padded positions never carry loss. */
  readonly padId: number;
  /** How chat is rendered, or undefined with `chatError` saying why chat data cannot be used. */
  readonly chatFormat?: ChatFormat;
  /** Why chats cannot be rendered, naming the file to fix (tokenizer_config.json or chat_template.jinja). */
  readonly chatError?: LoraStudioError;
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string;
  tokenId(token: string): number | undefined;
  /**
   * The chat as the model's template renders it; undefined when chatFormat is. Throws a LoraStudioError
   * naming the template's file when the template fails ('bad-config') or refuses the messages through
   * raise_exception ('bad-input').
   */
  applyChatTemplate?(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
  /** applyChatTemplate(messages) cut into pieces that do or do not carry the loss; throws as it does. */
  chatSegments?(messages: ChatMessage[]): ChatSegment[];
}

const MODEL_TYPES = ['BPE', 'WordPiece', 'Unigram'];

const DEFAULT_NAMES: TokenizerFileNames = { tokenizer: 'tokenizer.json', config: 'tokenizer_config.json' };

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** tokenizer_config.json writes special tokens as a string or as an AddedToken dict {"content": ...}. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

export function loadTokenizer(
  tokenizerJsonText: string,
  tokenizerConfigText?: string,
  fileNames: TokenizerFileNames = DEFAULT_NAMES,
  options: { chatTemplate?: string } = {},
): LoraTokenizer {
  const tFile = fileNames.tokenizer, cFile = fileNames.config;
  const bad = (file: string, problem: string, cause?: unknown): never => {
    throw new FormatError(file, `${file}: ${problem}`, cause);
  };

  let json: unknown;
  try {
    json = JSON.parse(tokenizerJsonText);
  } catch (e) {
    return bad(tFile, `not valid JSON (${(e as Error).message}). Download the model's tokenizer.json again.`, e);
  }
  if (!isObject(json)) return bad(tFile, `must be a JSON object with a "model" section (got ${show(json)}).`);
  if (!isObject(json.model)) return bad(tFile, `has no "model" section (the vocabulary and merges), so it is not a tokenizer.json.`);
  const type = json.model.type;
  if (type !== undefined && !(typeof type === 'string' && MODEL_TYPES.includes(type))) {
    throw new UnsupportedError(tFile, `${tFile}: the tokenizer model type ${show(type)} is not one LoRA Studio can run (supported: ${MODEL_TYPES.join(', ')}).`);
  }
  if (json.added_tokens !== undefined && !Array.isArray(json.added_tokens)) {
    return bad(tFile, `"added_tokens" must be a list (got ${show(json.added_tokens)}).`);
  }
  const vocab = json.model.vocab;
  if (!isObject(vocab) && !Array.isArray(vocab)) return bad(tFile, `"model.vocab" is missing or not an object of token → id.`);
  if (isObject(vocab)) {
    for (const [token, id] of Object.entries(vocab)) {
      if (!Number.isSafeInteger(id) || (id as number) < 0) bad(tFile, `"model.vocab" gives token ${show(token)} the id ${show(id)}, not a whole number ≥ 0.`);
    }
  }

  let config: Record<string, unknown> = {};
  if (tokenizerConfigText !== undefined) {
    let raw: unknown;
    try {
      raw = JSON.parse(tokenizerConfigText, (key, value) => {
        if (key === '__proto__') throw new Error('a "__proto__" key, which no real tokenizer config has');
        return value;
      });
    } catch (e) {
      return bad(cFile, `not valid JSON (${(e as Error).message}). Download the model's tokenizer_config.json again.`, e);
    }
    if (!isObject(raw)) return bad(cFile, `must be a JSON object of tokenizer settings (got ${show(raw)}).`);
    config = raw;
  }
  // @huggingface/tokenizers reads special tokens as strings; transformers also writes AddedToken dicts.
  const libConfig: Record<string, unknown> = { ...config };
  for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
    const v = config[key];
    if (v === undefined || v === null) continue;
    const text = tokenText(v);
    if (text === undefined) bad(cFile, `"${key}" must be a token string or {"content": ...} (got ${show(v)}).`);
    libConfig[key] = text;
  }

  // The library requires these keys to exist; tokenizer.json writers may leave unused stages out.
  const libJson: Record<string, unknown> = { added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json };
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(libJson, libConfig);
    tok.encode('Hello 123\n', { add_special_tokens: true });
  } catch (e) {
    return bad(tFile, `cannot be used as a tokenizer (${(e as Error).message}). Download the model's tokenizer.json again.`, e);
  }

  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  if (vocabSize === 0) bad(tFile, 'has an empty vocabulary.');

  const special = (key: string): number | undefined => {
    const text = tokenText(config[key]);
    if (text === undefined) return undefined;
    const id = tok.token_to_id(text);
    if (id === undefined) {
      bad(cFile, `${key} ${show(text)} is not in ${tFile}'s vocabulary: the two files belong to different tokenizers.`);
    }
    return id;
  };
  const bosId = special('bos_token');
  const eosId = special('eos_token');
  const padId = special('pad_token') ?? eosId ?? 0;

  const encode = (text: string, opts: { addSpecialTokens?: boolean } = {}): number[] => {
    const { ids, tokens } = tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true });
    const missing = ids.findIndex((id) => id === undefined || id === null);
    if (missing >= 0) {
      throw new LoraStudioError('bad-input', `${tFile}: the tokenizer has no id for ${show(tokens[missing])} and no unk_token; this text cannot be tokenized with it.`, { file: tFile });
    }
    return ids;
  };
  const decode = (ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string =>
    ids.length === 0 ? '' : tok.decode(Array.from(ids), { skip_special_tokens: opts.skipSpecialTokens ?? false });
  const base: LoraTokenizer = { vocabSize, bosId, eosId, padId, encode, decode, tokenId: (t) => tok.token_to_id(t) };

  const fromOverride = options.chatTemplate !== undefined;
  const templateFile = fromOverride ? (fileNames.chatTemplate ?? 'chat_template.jinja') : cFile;
  const source = fromOverride ? options.chatTemplate : templateText(config.chat_template);
  let format: ChatFormat = 'template';
  let template: Template;
  if (source === undefined) {
    if (tok.token_to_id('<|im_start|>') === undefined || tok.token_to_id('<|im_end|>') === undefined) {
      const chatError = new UnsupportedError(
        cFile,
        `${cFile} has no chat_template, so chat {"messages"} rows cannot be rendered for this model; ` +
          'use {"prompt", "completion"} or {"text"} rows, or add the chat_template of the model this one was tuned from.',
      );
      return { ...base, chatError };
    }
    format = 'chatml';
    template = new Template(CHATML_TEMPLATE);
  } else {
    try {
      template = new Template(source);
    } catch (e) {
      const chatError = new ConfigError(
        templateFile,
        `${templateFile}: the chat_template is not a template LoRA Studio's Jinja engine (@huggingface/jinja) can parse ` +
          `(${(e as Error).message}). The model and its tokenizer are loaded; only chat {"messages"} rows need the template: ` +
          'fix it, or use {"prompt", "completion"} rows.',
        e,
      );
      return { ...base, chatError };
    }
  }

  // transformers passes every special token tokenizer_config.json sets, as text.
  const variables: Record<string, unknown> = { tools: null, documents: null };
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
    const text = tokenText(config[key]);
    if (text !== undefined) variables[key] = text;
  }
  if (Array.isArray(config.additional_special_tokens)) {
    variables.additional_special_tokens = config.additional_special_tokens.map(tokenText).filter((t) => t !== undefined);
  }
  const render = (messages: ChatMessage[], addGenerationPrompt: boolean, now: Date): string => {
    for (const m of messages) {
      if (!CHAT_ROLES.includes(m.role)) throw new LoraStudioError('bad-input', `chat role ${show(m.role)} is not one of ${CHAT_ROLES.join(', ')}.`);
    }
    try {
      return renderJinja(template, {
        ...variables,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: addGenerationPrompt,
        raise_exception: (message: unknown) => {
          throw new TemplateRefusal(String(message));
        },
        strftime_now: (fmt: unknown) => strftime(now, String(fmt)),
      });
    } catch (e) {
      if (e instanceof TemplateRefusal) {
        throw new LoraStudioError('bad-input', `${templateFile}: the chat_template refuses this conversation: ${e.message}`, { file: templateFile, cause: e });
      }
      throw new ConfigError(
        templateFile,
        `${templateFile}: the chat_template failed while rendering a conversation of ${messages.length} message(s) ` +
          `(${(e as Error).message}). Fix the template, or use {"prompt", "completion"} rows.`,
        e,
      );
    }
  };
  const specials = addedSpecialTexts(json);
  return {
    ...base,
    chatFormat: format,
    applyChatTemplate: (messages, opts = {}) => render(messages, opts.addGenerationPrompt ?? false, new Date()),
    chatSegments: (messages) => {
      const now = new Date(); // one date for every prefix, so a template that prints it renders them alike
      return assistantSegments(messages, (m, gen) => render(m, gen, now), specials, templateFile);
    },
  };
}

/** ChatML, for a tokenizer without a chat template whose vocabulary has <|im_start|> and <|im_end|>. */
const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** What a template's raise_exception(...) throws, told apart from the template's own failures. */
class TemplateRefusal extends Error {}

/**
 * Template.render, with our raise_exception and strftime_now: render() declares the library's own (which
 * throw a plain Error, and format months in the browser's locale) and refuses to redeclare them. So this
 * declares the other globals render() declares (@huggingface/jinja 0.5: the constants and range) itself.
 */
function renderJinja(template: Template, variables: Record<string, unknown>): string {
  const env = new Environment();
  const globals = { true: true, false: false, none: null, True: true, False: false, None: null, range: pythonRange };
  for (const [name, value] of Object.entries({ ...globals, ...variables })) env.set(name, value);
  return String(new Interpreter(env).run(template.parsed).value);
}

/** Python's range(stop) / range(start, stop[, step]). */
function pythonRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() arg 3 must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

/** The text of tokenizer.json's added tokens marked special (turn-end markers among them). */
function addedSpecialTexts(json: Record<string, unknown>): string[] {
  const added = Array.isArray(json.added_tokens) ? json.added_tokens : [];
  return added.filter((t) => isObject(t) && t.special === true && typeof t.content === 'string' && t.content !== '').map((t) => (t as { content: string }).content);
}

/**
 * The rendered chat cut at its assistant turns: turn i spans from where render(messages[..i]) departs from
 * render(messages[..i-1]) + generation prompt to its end (less whitespace after a final special token).
 * Refuses templates whose rendering of earlier turns changes once later turns follow.
 */
function assistantSegments(
  messages: ChatMessage[],
  render: (messages: ChatMessage[], addGenerationPrompt: boolean) => string,
  specials: string[],
  templateFile: string,
): ChatSegment[] {
  const full = render(messages, false);
  const spans: [number, number][] = [];
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const through = render(messages.slice(0, i + 1), false);
    if (!full.startsWith(through)) {
      throw new UnsupportedError(
        templateFile,
        `${templateFile}: the chat_template renders assistant turn ${i + 1} differently once later messages follow it ` +
          '(as templates that drop earlier reasoning do), so LoRA Studio cannot tell which tokens are that turn. ' +
          'Give each row only one assistant turn, as its last message.',
      );
    }
    const prompt = render(messages.slice(0, i), true);
    let start = 0;
    while (start < prompt.length && start < through.length && prompt[start] === through[start]) start++;
    let end = through.length;
    const trimmed = through.slice(start).trimEnd();
    if (specials.some((s) => trimmed.endsWith(s))) end = start + trimmed.length;
    const previous = spans.at(-1)?.[1] ?? 0;
    if (end > start && start >= previous) spans.push([start, end]);
  });
  const out: ChatSegment[] = [];
  let at = 0;
  for (const [start, end] of spans) {
    if (start > at) out.push({ text: full.slice(at, start), trainable: false });
    out.push({ text: full.slice(start, end), trainable: true });
    at = end;
  }
  if (at < full.length) out.push({ text: full.slice(at), trainable: false });
  return out;
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/**
 * Python's datetime.strftime for the codes chat templates use (Llama 3.x prints "%d %b %Y"), with the
 * C locale's English names as Python gives them, whatever the browser's locale.
 */
function strftime(d: Date, format: string): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  const codes: Record<string, () => string> = {
    Y: () => String(d.getFullYear()),
    y: () => pad(d.getFullYear() % 100),
    m: () => pad(d.getMonth() + 1),
    d: () => pad(d.getDate()),
    B: () => MONTHS[d.getMonth()],
    b: () => MONTHS[d.getMonth()].slice(0, 3),
    A: () => DAYS[d.getDay()],
    a: () => DAYS[d.getDay()].slice(0, 3),
    H: () => pad(d.getHours()),
    M: () => pad(d.getMinutes()),
    S: () => pad(d.getSeconds()),
    '%': () => '%',
  };
  return format.replace(/%(.)/g, (whole, c: string) => codes[c]?.() ?? whole);
}

/** chat_template is a string, or a list of named templates of which "default" is the chat one. */
function templateText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v.find((t) => isObject(t) && t.name === 'default' && typeof t.template === 'string') as { template: string } | undefined;
    return named?.template;
  }
  return undefined;
}
