// src/io/tokenizer.ts against tests/fixtures/tokenizer/: two byte-level BPE tokenizers (GPT-2/SmolLM2 style
// and Qwen2 style with NFC and a BOS post-processor) whose expected ids come from an independent Python
// reference implementation (make_tokenizer.py; regenerate with Python `tokenizers` where available, see
// the README). Also: decoding round trips, special tokens from tokenizer_config.json, and chat rendering.

import { describe, expect, it } from 'vitest';
import { loadTokenizer, type ChatMessage } from '../../src/io/tokenizer';
import { FormatError } from '../../src/io/errors';
import { fixtureText } from '../fixtures/tokenizer/tiny_repo';

interface Expected {
  vocab_size: number;
  cases: { text: string; ids: number[]; ids_special: number[] }[];
}

for (const variant of ['bytelevel', 'qwen'] as const) {
  describe(`${variant} tokenizer`, () => {
    const tok = loadTokenizer(fixtureText(variant, 'tokenizer.json'), fixtureText(variant, 'tokenizer_config.json'));
    const expected: Expected = JSON.parse(fixtureText(variant, 'expected.json'));

    it('has the fixture vocabulary size and special tokens', () => {
      expect(expected.cases.length).toBeGreaterThanOrEqual(20);
      expect(tok.vocabSize).toBe(expected.vocab_size);
      expect(tok.eosId).toBe(tok.tokenId('<|im_end|>'));
      expect(tok.padId).toBe(tok.eosId);
      expect(tok.bosId).toBe(tok.tokenId(variant === 'qwen' ? '<|endoftext|>' : '<|im_start|>'));
    });

    for (const c of expected.cases) {
      it(`gives the reference ids for ${JSON.stringify(c.text).slice(0, 50)}`, () => {
        expect(tok.encode(c.text, { addSpecialTokens: false })).toEqual(c.ids);
        expect(tok.encode(c.text, { addSpecialTokens: true })).toEqual(c.ids_special);
        // Byte-level BPE is lossless (up to NFC for the Qwen-style normalizer).
        const want = variant === 'qwen' ? c.text.normalize('NFC') : c.text;
        expect(tok.decode(c.ids)).toBe(want);
      });
    }
  });
}

describe('chat templates', () => {
  const tok = loadTokenizer(fixtureText('bytelevel', 'tokenizer.json'), fixtureText('bytelevel', 'tokenizer_config.json'));
  const chat: ChatMessage[] = [
    { role: 'user', content: 'Hi!' },
    { role: 'assistant', content: 'Hello.' },
  ];

  it("renders SmolLM2's ChatML template with its default system prompt, as transformers does", () => {
    expect(tok.chatFormat).toBe('chatml');
    expect(tok.applyChatTemplate!(chat, { addGenerationPrompt: false })).toBe(
      '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' +
        '<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n',
    );
    const withSystem = tok.applyChatTemplate!([{ role: 'system', content: 'Be brief.' }, chat[0]], { addGenerationPrompt: true });
    expect(withSystem).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n');
  });

  it('marks only assistant replies and their end marker as trainable', () => {
    const segments = tok.chatSegments!(chat);
    expect(segments.filter((s) => s.trainable).map((s) => s.text)).toEqual(['Hello.<|im_end|>']);
  });

  it("renders TinyLlama's Zephyr template", () => {
    const zephyr =
      "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n" +
      "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n" +
      "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
    const cfg = JSON.stringify({ eos_token: '<|endoftext|>', chat_template: zephyr });
    const z = loadTokenizer(fixtureText('bytelevel', 'tokenizer.json'), cfg);
    expect(z.chatFormat).toBe('zephyr');
    expect(z.applyChatTemplate!(chat)).toBe('<|user|>\nHi!<|endoftext|>\n<|assistant|>\nHello.<|endoftext|>\n');
  });

  it('falls back to ChatML without a template when the vocabulary has its tokens, and explains other templates', () => {
    const none = loadTokenizer(fixtureText('bytelevel', 'tokenizer.json'), '{}');
    expect(none.chatFormat).toBe('chatml');
    expect(none.applyChatTemplate!(chat)).toBe('<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n');
    const llama3 = loadTokenizer(fixtureText('bytelevel', 'tokenizer.json'), JSON.stringify({ chat_template: '{{ bos_token }}<|start_header_id|>...' }));
    expect(llama3.chatFormat).toBeUndefined();
    expect(llama3.applyChatTemplate).toBeUndefined();
    expect(llama3.chatProblem).toMatch(/neither ChatML nor Zephyr/);
  });

  it('reads AddedToken dicts for special tokens and a chat_template.jinja override', () => {
    const cfg = JSON.stringify({ eos_token: { content: '<|endoftext|>', special: true }, bos_token: null });
    const t = loadTokenizer(fixtureText('bytelevel', 'tokenizer.json'), cfg, undefined, { chatTemplate: '<|im_start|>' });
    expect(t.eosId).toBe(t.tokenId('<|endoftext|>'));
    expect(t.bosId).toBeUndefined();
    expect(t.chatFormat).toBe('chatml');
  });

  it('refuses a tokenizer.json that does not parse, naming the file', () => {
    expect(() => loadTokenizer('{"model": ', undefined, { tokenizer: 'm/tokenizer.json', config: 'm/tokenizer_config.json' })).toThrow(FormatError);
    expect(() => loadTokenizer('{"model": ', undefined, { tokenizer: 'm/tokenizer.json', config: 'm/tokenizer_config.json' })).toThrow(
      /^m\/tokenizer\.json: not valid JSON/,
    );
  });
});
