#!/usr/bin/env python3
"""Combines one sitting's measurements on a GPU machine (run.sh) into one JSON report, with the ratios
engine/PyTorch per model. Standard library only: it runs where PyTorch runs, before or without it.

    python3 gpu_report.py --engine engine.jsonl [--engine-plain plain.jsonl] --dry-run dry_run.jsonl --torch torch.jsonl
                          [--meta meta.json] [--out report.json]

Inputs are the JSON lines the benches print (`bench --model all --profile`, `bench --dry-run --model all`,
`torch_peft.py --model all`); a missing or empty file, or a model absent from one, is reported under "missing",
never guessed. Ratios are engine / PyTorch, so below 1 is the engine ahead for times and memory:
  ms_per_step          median step time ratio; issue 14's goals: ≤ 0.5 for smollm2-135m, ≤ 0.8 for tinyllama-1.1b
  peak_gpu_bytes       peak memory ratio; goal < 1
  tokens_per_s         throughput ratio (above 1 is the engine ahead)
  matmul               engine fast-kernel TFLOP/s / cuBLAS TFLOP/s, per shape (above 1 is the engine ahead)
and, for a model also run with `--subgroups off` (--engine-plain), subgroups_vs_plain: the step time with the
subgroup reductions / without them (below 1: the subgroup kernels pay on this GPU).
A JSON line that is not valid JSON (a crash's message, a warning) is skipped and listed under "unparsed".
"""

import argparse
import json
import os
import sys

GOALS = {"smollm2-135m": {"ms_per_step": 0.5}, "tinyllama-1.1b": {"ms_per_step": 0.8}}


def read_lines(path, unparsed):
    """{model: record} from a JSON-lines file; later lines for the same model win."""
    out = {}
    if not path or not os.path.exists(path):
        return out
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                unparsed.append(f"{os.path.basename(path)}:{n}: {line[:200]}")
                continue
            if isinstance(rec, dict) and "model" in rec:
                out[rec["model"]] = rec
    return out


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return None
    return float(f"{a / b:.4g}")


def combine(engine, dry, torch, meta=None, plain=None):
    """The report: per model, the three records and the engine/PyTorch ratios."""
    models = sorted(set(engine) | set(dry) | set(torch))
    report = {"meta": meta or {}, "models": {}, "missing": []}
    for m in models:
        e, d, t = engine.get(m), dry.get(m), torch.get(m)
        for what, rec in (("engine", e), ("dry_run", d), ("torch", t)):
            if rec is None:
                report["missing"].append(f"{m}: no {what} result")
        entry = {"engine": e, "dry_run": d, "torch": t}
        p = (plain or {}).get(m)
        if p:
            entry["engine_subgroups_off"] = p
            if e and e.get("subgroups") and not p.get("subgroups"):
                entry["subgroups_vs_plain"] = ratio(e.get("ms_per_step_median"), p.get("ms_per_step_median"))
        if e and "swiftshader" in str(e.get("device", "")).lower():
            report["missing"].append(f"{m}: the engine ran on SwiftShader (CPU), not the GPU: Vulkan found no GPU driver")
        if e and t:
            r = {
                "ms_per_step": ratio(e.get("ms_per_step_median"), t.get("ms_per_step_median")),
                "peak_gpu_bytes": ratio(e.get("peak_gpu_bytes"), t.get("peak_gpu_bytes")),
                "tokens_per_s": ratio(e.get("tokens_per_s"), t.get("tokens_per_s")),
                "matmul": {k: ratio(v, (t.get("matmul") or {}).get(k)) for k, v in (e.get("matmul_fast") or {}).items()},
            }
            entry["ratios"] = r
            goals = GOALS.get(m)
            if goals:
                entry["goals"] = {k: {"at_most": g, "met": r[k] is not None and r[k] <= g} for k, g in goals.items()}
            if (e.get("batch"), e.get("seq")) != (t.get("batch"), t.get("seq")):
                report["missing"].append(f"{m}: engine and PyTorch ran different shapes, ratios not comparable")
        report["models"][m] = entry
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine")
    ap.add_argument("--engine-plain", dest="plain", help="the engine bench with --subgroups off")
    ap.add_argument("--dry-run", dest="dry")
    ap.add_argument("--torch")
    ap.add_argument("--meta", help="a JSON object to copy in as meta (date, GPU, driver, durations)")
    ap.add_argument("--out", help="write the report here (default: stdout)")
    a = ap.parse_args(argv)
    unparsed = []
    meta = json.load(open(a.meta)) if a.meta and os.path.exists(a.meta) else {}
    report = combine(read_lines(a.engine, unparsed), read_lines(a.dry, unparsed), read_lines(a.torch, unparsed), meta,
                     read_lines(a.plain, unparsed))
    report["unparsed"] = unparsed
    text = json.dumps(report, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
