// The tokenizer: a model's tokenizer.json + tokenizer_config.json (the files transformers reads) through
// @huggingface/tokenizers, plus the chat formats we can render without a Jinja engine.
//
// Chat templates: tokenizer_config.json's "chat_template" is Jinja, and neither @huggingface/tokenizers nor
// anything else installed runs Jinja (@huggingface/jinja is not a dependency). So we recognise the two
// template families our supported models use and render them in TS, with the same text transformers'
// apply_chat_template produces:
//   ChatML (Qwen2/2.5, SmolLM2):  <|im_start|>{role}\n{content}<|im_end|>\n   (+ the template's default
//                                 system prompt when the first message is not a system message)
//   Zephyr (TinyLlama-Chat):      <|{role}|>\n{content}{eos}\n
// Any other template is refused for chat data (with the reason); plain text and prompt/completion still work.
//
// This file does not split data into training rows (dataset.ts) and does not read files (callers pass text).

import { Tokenizer } from '@huggingface/tokenizers';
import { FormatError, LoraStudioError, UnsupportedError } from './errors.ts';

export interface TokenizerFileNames {
  tokenizer: string;
  config: string;
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

export type ChatFormat = 'chatml' | 'zephyr';

export interface LoraTokenizer {
  /** 1 + the largest id the tokenizer can produce; must not exceed the model's vocab_size. */
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  /** Padding id: tokenizer_config's pad_token, else EOS, else 0. Padded positions never carry loss. */
  readonly padId: number;
  /** The chat format we render, or undefined with `chatProblem` saying why chat data cannot be used. */
  readonly chatFormat?: ChatFormat;
  readonly chatProblem?: string;
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string;
  tokenId(token: string): number | undefined;
  /** The chat as the model's template renders it; undefined when chatFormat is. */
  applyChatTemplate?(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
  /** The same text cut into pieces that do or do not carry the loss. */
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
  const eosText = tokenText(config.eos_token);

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

  const chat = chatFormatOf(options.chatTemplate ?? templateText(config.chat_template), (t) => tok.token_to_id(t) !== undefined, eosText, cFile);
  const base: LoraTokenizer = { vocabSize, bosId, eosId, padId, encode, decode, tokenId: (t) => tok.token_to_id(t) };
  if (chat.format === undefined) return { ...base, chatProblem: chat.problem };
  const segments = (messages: ChatMessage[]) => renderChat(chat.format!, messages, chat.defaultSystem, eosText ?? '');
  return {
    ...base,
    chatFormat: chat.format,
    chatSegments: segments,
    applyChatTemplate: (messages, opts = {}) =>
      segments(messages).map((s) => s.text).join('') + (opts.addGenerationPrompt ? generationPrompt(chat.format!) : ''),
  };
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

function chatFormatOf(
  template: string | undefined,
  hasToken: (t: string) => boolean,
  eosText: string | undefined,
  cFile: string,
): { format?: ChatFormat; defaultSystem?: string; problem?: string } {
  const chatml = hasToken('<|im_start|>') && hasToken('<|im_end|>');
  if (template === undefined) {
    if (chatml) return { format: 'chatml' };
    return { problem: `${cFile} has no chat_template and the vocabulary has no ChatML tokens, so chat rows cannot be rendered; use prompt/completion rows.` };
  }
  if (template.includes('<|im_start|>')) {
    if (!chatml) return { problem: `${cFile}'s chat_template uses <|im_start|>/<|im_end|>, which are not in the vocabulary.` };
    // The literal default system turn, as Qwen2.5 and SmolLM2 write it: '<|im_start|>system\n…<|im_end|>\n'.
    const m = /<\|im_start\|>system(?:\\n|\n)([^'"{}<]+)<\|im_end\|>/.exec(template);
    return { format: 'chatml', defaultSystem: m?.[1] };
  }
  if (template.includes('<|user|>') && template.includes('<|assistant|>')) {
    if (eosText === undefined) return { problem: `${cFile}'s chat_template ends each turn with eos_token, but eos_token is not set.` };
    return { format: 'zephyr' };
  }
  return {
    problem:
      `${cFile}'s chat_template is neither ChatML nor Zephyr, the two chat formats LoRA Studio renders without a Jinja ` +
      'engine; use prompt/completion rows for this model.',
  };
}

function renderChat(format: ChatFormat, messages: ChatMessage[], defaultSystem: string | undefined, eos: string): ChatSegment[] {
  const out: ChatSegment[] = [];
  const turn = (role: string, content: string, trainable: boolean) => {
    if (format === 'chatml') {
      out.push({ text: `<|im_start|>${role}\n`, trainable: false }, { text: `${content}<|im_end|>`, trainable }, { text: '\n', trainable: false });
    } else {
      out.push({ text: `<|${role}|>\n`, trainable: false }, { text: `${content}${eos}`, trainable }, { text: '\n', trainable: false });
    }
  };
  if (format === 'chatml' && defaultSystem !== undefined && messages[0]?.role !== 'system') turn('system', defaultSystem, false);
  for (const m of messages) {
    if (!CHAT_ROLES.includes(m.role)) throw new LoraStudioError('bad-input', `chat role ${show(m.role)} is not one of ${CHAT_ROLES.join(', ')}.`);
    turn(m.role, m.content, m.role === 'assistant');
  }
  return out;
}

function generationPrompt(format: ChatFormat): string {
  return format === 'chatml' ? '<|im_start|>assistant\n' : '<|assistant|>';
}
