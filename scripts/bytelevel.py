"""GPT-2's byte-level alphabet, shared by the scripts that write byte-level BPE tokenizers
(scripts/default-model/make_default_model.py and tests/fixtures/tokenizer/make_tokenizer.py).

Hugging Face's ByteLevel pre-tokenizer shows each byte of UTF-8 as one printable character: the printable
Latin-1 bytes as themselves, the other 68 bytes as the code points 256, 257, ... in byte order.
"""


def bytes_to_unicode():
    """The map from each of the 256 bytes to its printable character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(chars.items()))
