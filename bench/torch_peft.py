#!/usr/bin/env python3
"""The PyTorch side of LoRA Studio's bench: the same models, shapes and settings as `npm run bench`
(bench/models.json, read by both), with transformers + PEFT, PyTorch's default scaled-dot-product attention
(SDPA; --attn eager for the explicit softmax), fp32 and TF32 off, printing
the same JSON line per model so the two benches can run on one machine in one sitting.

    python3 bench/torch_peft.py [--model smollm2-135m|qwen2.5-0.5b|tinyllama-1.1b|qwen3-0.6b|all] [--batch 8] [--seq 256]
                                [--steps 10] [--warmup 2] [--matmul-size 4096] [--quick] [--device cuda|cpu]
                                [--attn sdpa|eager]

Numbers (bench/README.md says more):
  first_step_ms       building the optimizer and the first step (CUDA context, cuBLAS handles, allocator warm-up)
  ms_per_step_*       wall clock of forward + backward + AdamW step + loss.item() (the one sync per step,
                      as the WebGPU trainer reads its loss every step); median and p90 over --steps steps
  peak_gpu_bytes      torch.cuda.max_memory_allocated() (0 on the CPU)
  matmul              cuBLAS fp32 TFLOP/s of P·Qᵀ at size³ and the model's shapes (matmul_fast is null: PyTorch
                      has one kernel library)
Without transformers or peft (e.g. Debian's python3-torch alone) a small plain-PyTorch Llama with LoRA on
q_proj/v_proj stands in, and "impl" says so: good for --quick on a CPU, not for comparing speeds.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = json.load(open(os.path.join(HERE, "models.json")))


def logits_chunk_width(n, v, c, max_bytes=64 * 1024 * 1024):
    """Vocabulary columns per LM-head chunk, as src/autograd/lm_head.ts logitsChunkWidth: the matmul shape the
    WebGPU bench reports as lm_head, so both benches time the same GEMM."""
    cols = max_bytes // (4 * n)
    if cols >= v:
        return v
    align = 256 // math.gcd(256, 4 * c)
    return max(align, cols - cols % align)


def quantile(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def sig(x, digits=4):
    return float(f"{x:.{digits - 1}e}")


# ---- models ------------------------------------------------------------------------------------------------

ATTN = {"impl": "sdpa"}  # set by --attn before any model is built


def hf_model(cfg):
    """transformers' own model from the config (its random init, std 0.02), with PEFT's LoRA."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model

    kw = {k: v for k, v in cfg.items() if k not in ("architectures", "model_type")}
    config = AutoConfig.for_model(cfg["model_type"], architectures=cfg["architectures"], **kw)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=ATTN["impl"]).float()
    lora = BENCH["lora"]
    peft_config = LoraConfig(r=lora["r"], lora_alpha=lora["lora_alpha"], lora_dropout=lora["lora_dropout"],
                             target_modules=lora["target_modules"], task_type="CAUSAL_LM")
    return get_peft_model(model, peft_config), "transformers+peft"


class LoraLinear(torch.nn.Module):
    """y = x·Wᵀ + b + (α/r)·(x·Aᵀ)·Bᵀ, W frozen; PEFT's init (A kaiming-uniform, B = 0)."""

    def __init__(self, inf, outf, bias, r=None, alpha=None):
        super().__init__()
        self.base = torch.nn.Linear(inf, outf, bias=bias)
        self.base.requires_grad_(False)
        self.r = r
        if r:
            self.A = torch.nn.Parameter(torch.empty(r, inf).uniform_(-1 / math.sqrt(inf), 1 / math.sqrt(inf)))
            self.B = torch.nn.Parameter(torch.zeros(outf, r))
            self.scale = alpha / r

    def forward(self, x):
        y = self.base(x)
        return y + self.scale * (x @ self.A.t()) @ self.B.t() if self.r else y


class TinyLlama(torch.nn.Module):
    """A plain-PyTorch Llama/Qwen2/Qwen3 decoder (SDPA or eager attention, as --attn), used only when transformers/peft are missing."""

    def __init__(self, cfg):
        super().__init__()
        C, H, KV, I, V = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"], cfg["vocab_size"]
        D = cfg.get("head_dim", C // H)
        bias = cfg["model_type"] == "qwen2"
        self.qk_norm = cfg["model_type"] == "qwen3"  # per-head RMSNorm of q and k over D, before RoPE
        lora = BENCH["lora"]
        lr = lambda t: (lora["r"], lora["lora_alpha"]) if t in lora["target_modules"] else (None, None)
        self.H, self.KV, self.D, self.eps, self.theta = H, KV, D, cfg["rms_norm_eps"], cfg["rope_theta"]
        self.embed = torch.nn.Embedding(V, C)
        self.layers = torch.nn.ModuleList()
        for _ in range(cfg["num_hidden_layers"]):
            layer = torch.nn.Module()
            layer.q, layer.k, layer.v = (LoraLinear(C, n, bias, *lr(t)) for t, n in (("q_proj", H * D), ("k_proj", KV * D), ("v_proj", KV * D)))
            layer.o = LoraLinear(H * D, C, False)
            layer.gate, layer.up, layer.down = LoraLinear(C, I, False), LoraLinear(C, I, False), LoraLinear(I, C, False)
            layer.n1, layer.n2 = torch.nn.Parameter(torch.ones(C)), torch.nn.Parameter(torch.ones(C))
            if self.qk_norm:
                layer.qn, layer.kn = torch.nn.Parameter(torch.ones(D)), torch.nn.Parameter(torch.ones(D))
            self.layers.append(layer)
        self.norm = torch.nn.Parameter(torch.ones(C))
        self.head = None if cfg["tie_word_embeddings"] else torch.nn.Linear(C, V, bias=False)
        for name, p in self.named_parameters():
            if not (name.endswith(".A") or name.endswith(".B")):
                p.requires_grad_(False)
                if p.dim() == 2:
                    torch.nn.init.normal_(p, std=0.02)

    def rms(self, x, w):
        return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def rope(self, x):  # x (B, heads, T, D), rotate_half convention as transformers
        T, D = x.shape[2], self.D
        inv = 1.0 / (self.theta ** (torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D))
        f = torch.outer(torch.arange(T, device=x.device, dtype=torch.float32), inv)
        cos, sin = torch.cat([f, f], -1).cos(), torch.cat([f, f], -1).sin()
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def forward(self, input_ids, labels):
        Bn, T = input_ids.shape
        x = self.embed(input_ids)
        mask = torch.full((T, T), float("-inf"), device=x.device).triu(1)
        for l in self.layers:
            h = self.rms(x, l.n1)
            q, k = l.q(h).view(Bn, T, self.H, self.D), l.k(h).view(Bn, T, self.KV, self.D)
            if self.qk_norm:
                q, k = self.rms(q, l.qn), self.rms(k, l.kn)
            q = self.rope(q.transpose(1, 2))
            k = self.rope(k.transpose(1, 2)).repeat_interleave(self.H // self.KV, 1)
            v = l.v(h).view(Bn, T, self.KV, self.D).transpose(1, 2).repeat_interleave(self.H // self.KV, 1)
            if ATTN["impl"] == "sdpa":
                a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.D) + mask, -1) @ v
            x = x + l.o(a.transpose(1, 2).reshape(Bn, T, -1))
            h = self.rms(x, l.n2)
            x = x + l.down(torch.nn.functional.silu(l.gate(h)) * l.up(h))
        x = self.rms(x, self.norm)
        logits = x @ (self.embed.weight if self.head is None else self.head.weight).t()
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        return type("Out", (), {"loss": loss})


def build_model(cfg):
    try:
        return hf_model(cfg)
    except ImportError:
        return TinyLlama(cfg), "plain-torch (no transformers/peft)"


# ---- measurements ------------------------------------------------------------------------------------------

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(device, M, N, K, quick):
    """P (M, K)·Q (N, K)ᵀ repeated k times, k so that the run lasts ~300 ms (20 ms with --quick)."""
    p = torch.randn(M, K, device=device)
    q = torch.randn(N, K, device=device)
    c = torch.empty(M, N, device=device)

    def run(k):
        sync(device)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(k):
                torch.matmul(p, q.t(), out=c)
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        for _ in range(k):
            torch.matmul(p, q.t(), out=c)
        return (time.perf_counter() - t0) * 1000

    run(1)
    once = run(1)
    k = max(1, min(1000, math.ceil((20 if quick else 300) / max(once, 1e-3))))
    return sig(2 * M * N * K * k / (run(k) / 1000) / 1e12)


def bench_model(name, a, device):
    cfg = BENCH["models"][name]
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # Built on the device where torch allows it: initialising a 1B model's random weights on the GPU takes
    # seconds less than on the CPU, which keeps run.sh's PyTorch phase inside its time limit.
    if hasattr(torch.device, "__enter__"):
        with device:
            model, impl = build_model(cfg)
    else:
        model, impl = build_model(cfg)
    model.to(device)
    base = [p for p in model.parameters() if not p.requires_grad]
    weights_bytes = sum(p.numel() * p.element_size() for p in base)
    trainable = [p for p in model.parameters() if p.requires_grad]
    B, T, V = a.batch, a.seq, cfg["vocab_size"]
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, V, (B, T), generator=g).to(device) for _ in range(4)]
    o = BENCH["optimizer"]

    def step(ids):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()  # the sync, as the WebGPU trainer's loss read-back

    sync(device)
    t0 = time.perf_counter()
    opt = torch.optim.AdamW(trainable, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"], weight_decay=o["weight_decay"])
    loss_first = step(batches[0])
    first_ms = (time.perf_counter() - t0) * 1000
    for i in range(a.warmup):
        step(batches[(1 + i) % 4])
    times, loss_last = [], loss_first
    for i in range(a.steps):
        t = time.perf_counter()
        loss_last = step(batches[i % 4])
        times.append((time.perf_counter() - t) * 1000)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    del model, opt, batches

    N, C = B * T, cfg["hidden_size"]
    H, D = cfg["num_attention_heads"], cfg.get("head_dim", C // cfg["num_attention_heads"])
    shapes = {
        f"{a.matmul_size}^3": [a.matmul_size] * 3,
        "q_proj": [N, H * D, C],
        "mlp_up": [N, cfg["intermediate_size"], C],
        "lm_head": [N, logits_chunk_width(N, V, C), C],
    }
    med = statistics.median(times)
    return {
        "model": name, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch": B, "seq": T, "steps": a.steps,
        "ms_per_step_median": sig(med), "ms_per_step_p90": sig(quantile(times, 0.9)), "tokens_per_s": sig(B * T / (med / 1000)),
        "peak_gpu_bytes": peak, "weights_bytes": weights_bytes, "first_step_ms": sig(first_ms),
        "loss_first": loss_first, "loss_last": loss_last, "timing": "cuda-event" if device.type == "cuda" else "wall-clock",
        "matmul": {k: matmul_tflops(device, *s, a.quick) for k, s in shapes.items()}, "matmul_fast": None,
        "matmul_shapes": shapes, "impl": impl, "attn": ATTN["impl"], "torch": torch.__version__,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    models = [m for m in BENCH["models"] if m != "quick"]
    ap.add_argument("--model", default=None, choices=models + ["all", "quick"])
    for flag in ("batch", "seq", "steps", "warmup", "matmul-size"):
        ap.add_argument(f"--{flag}", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="the tiny CI model, batch 2 × 32, 3 steps, matmul 256³")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                    help="attention: sdpa (PyTorch's default, the fair comparison) or eager (explicit softmax)")
    a = ap.parse_args(argv)
    ATTN["impl"] = a.attn
    base = BENCH["quick"] if a.quick else BENCH["defaults"]
    for k in ("batch", "seq", "steps", "warmup", "matmul_size"):
        if getattr(a, k) is None:
            setattr(a, k, base[k])
    # fp32 throughout: no TF32 in cuBLAS or cuDNN, as the WebGPU engine computes in plain fp32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if hasattr(torch, "set_float32_matmul_precision"):
        torch.set_float32_matmul_precision("highest")
    device = torch.device(a.device)
    which = a.model or ("quick" if a.quick else "all")
    for name in models if which == "all" else [which]:
        print(json.dumps(bench_model(name, a, device)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
