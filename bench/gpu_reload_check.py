"""Does the fast path stay fast when a process loads models more than once? (The TUI opens a new chat session when
the user picks other models; `--merged` loads a second model beside the base.) On the GPU:

    python bench/gpu_reload_check.py --model DIR [--adapter NAME=PATH] [--json OUT]

Scenarios, each in this one process, in order: (1) load, answer, close; (2) load again, same dtype; (3) another
dtype; (4) two backends alive at once, answering in turn. For each backend: the decode mode it ended in
(`fast (reduce-overhead)` is CUDA graphs; a fallback to `default` or `eager` is what this looks for), the first
reply's seconds (the compile), a later reply's tokens per second, and whether its answers equal the first
backend's of the same dtype. Run with WORKBENCH_DEBUG=1 for the full traceback of any fallback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QS = ["Who are you?", "你是谁", "What is the capital of France?", "中国的首都是哪里？"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from workbench.models.base import GenerationSettings, get_backend
    from workbench.models.templates import get_format

    fmt = get_format("internlm2_chat")
    short, long_ = GenerationSettings(max_new_tokens=32), GenerationSettings(max_new_tokens=96)
    adapters = [tuple(a.split("=", 1)) for a in args.adapter]
    first_answers: dict[str, list[str]] = {}
    rows = []

    def load(dtype: str):
        b = get_backend("transformers", args.model, device=args.device, dtype=dtype, fast=True)
        for name, path in adapters:
            b.add_adapter(name, path)
        if adapters:
            b.set_active(adapters[-1][0])
        return b

    def exercise(label: str, b, dtype: str) -> dict:
        t = time.perf_counter()
        answers = [b.generate([[{"role": "user", "content": q}]], fmt, short)[0].text for q in QS]
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        reply = b.generate([[{"role": "user", "content": "Tell me a long story about the sea."}]], fmt, long_)[0]
        rate = reply.tokens / (time.perf_counter() - t)
        first_answers.setdefault(dtype, answers)
        row = {"scenario": label, "dtype": dtype, "decode": b.describe().get("decode"),
               "first_replies_s": round(first_s, 2), "tok_s": round(rate, 1), "tokens": reply.tokens,
               "same_answers_as_first_of_dtype": answers == first_answers[dtype]}
        print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)
        return row

    for label, dtype in (("first load", "float32"), ("reload, same dtype", "float32"), ("other dtype", "bfloat16")):
        b = load(dtype)
        try:
            exercise(label, b, dtype)
        except Exception as exc:  # noqa: BLE001 - report and go on
            rows.append({"scenario": label, "dtype": dtype, "error": f"{type(exc).__name__}: {exc}"})
        b.close()
        del b
    one, two = load("bfloat16"), load("bfloat16")
    try:
        exercise("two alive: first", one, "bfloat16")
        exercise("two alive: second", two, "bfloat16")
        exercise("two alive: first again", one, "bfloat16")
    except Exception as exc:  # noqa: BLE001
        rows.append({"scenario": "two alive", "error": f"{type(exc).__name__}: {exc}"})
    one.close()
    two.close()
    # CUDA graphs: "fast (fused, compiled, CUDA graph)" (the fused decoder) or "fast (reduce-overhead)" (the
    # static-cache loop's cudagraph trees)
    out = {"rows": rows, "all_cuda_graphs": all(any(m in (r.get("decode") or "") for m in ("CUDA graph",
                                                                                            "reduce-overhead"))
                                                for r in rows)}
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
