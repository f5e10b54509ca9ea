"""4-bit (bitsandbytes nf4, double quant) against bf16 on a GPU: peak memory, chat decode, eval throughput.

For each load, in one process, one model at a time: GPU memory after loading (allocated) and the peak while
answering; batch-1 chat decode through `Backend.stream` (the chat path); an eval batch through `Backend.generate`
(N prompts at once, what `workbench eval` runs). Loads, in order (memory ratios against bf16-hf):
  bf16-hf     bf16 with fast=False: chat through HF `generate()`, the path 4-bit chat takes
  nf4         --load-in-4bit: weights quantized at load, chat and eval through HF `generate()` (no fast path: deltas
              cannot be fused into 4-bit weights)
  bf16        the default on a GPU: fused weights and the fused decoder for chat (compiles first), batched
              `generate()` for eval

    python bench/gpu_4bit.py --model DIR [--new-tokens 64] [--eval-prompts 64] [--json OUT] [--budget-s 240]

Fixed-length replies (the loop detector is off; random weights never emit eos). Needs bitsandbytes >= 0.48 (the
first with CUDA 13 libraries) importable.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_decode_lib import Bench, sync  # noqa: E402

LOADS = {"bf16-hf": {"fast": False}, "nf4": {"load_in_4bit": True}, "bf16": {"fast": True}}


class _NeverLoops:
    def __call__(self, seq) -> bool:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--new-tokens", type=int, default=64, help="new tokens of a chat reply and of each eval reply")
    ap.add_argument("--eval-prompts", type=int, default=64)
    ap.add_argument("--load", action="append", default=[], choices=sorted(LOADS))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--budget-s", type=float, default=240.0)
    args = ap.parse_args()

    import torch

    import workbench.models.hf as hf
    from workbench import atomic
    from workbench.models.base import GenerationSettings
    from workbench.models.hf import TransformersBackend
    from workbench.models.templates import get_format

    hf.LoopDetector = _NeverLoops
    b = Bench(args.budget_s)
    res = b.res
    res.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, new_tokens=args.new_tokens,
               eval_prompts=args.eval_prompts, loads={})
    try:
        import bitsandbytes

        res["bitsandbytes"] = bitsandbytes.__version__
    except Exception as exc:  # noqa: BLE001 - the bf16 rows still mean something
        res["bitsandbytes"] = f"not importable: {type(exc).__name__}: {exc}"
    fmt = get_format("llama2_chat")
    settings = GenerationSettings(max_new_tokens=args.new_tokens)
    convs = [[{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}] for i in range(args.eval_prompts)]
    gib = 2**30

    def one(name: str) -> dict:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        t = time.perf_counter()
        be = TransformersBackend(args.model, device="cuda", dtype="bfloat16", **LOADS[name])
        row = {"load_s": round(time.perf_counter() - t, 1), "decode": be.describe()["decode"],
               "weights_gib": round((torch.cuda.memory_allocated() - before) / gib, 3),
               "load_peak_gib": round((torch.cuda.max_memory_allocated() - before) / gib, 3)}
        try:
            t = time.perf_counter()
            be.stream([{"role": "user", "content": "hi"}], fmt, GenerationSettings(max_new_tokens=4)).wait()
            row["first_reply_s"] = round(time.perf_counter() - t, 1)  # includes the fast path's compile
            torch.cuda.reset_peak_memory_stats()
            rates = []
            for _ in range(2):
                sync("cuda")
                t = time.perf_counter()
                reply = be.stream([{"role": "user", "content": "你是谁"}], fmt, settings).wait()
                sync("cuda")
                rates.append(reply.tokens / (time.perf_counter() - t))
            row["chat_tok_s"] = round(max(rates), 1)
            row["chat_peak_gib"] = round((torch.cuda.max_memory_allocated() - before) / gib, 3)
            be.generate(convs[:8], fmt, GenerationSettings(max_new_tokens=4))  # warm: kernels for batched shapes
            torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            replies = be.generate(convs, fmt, settings)
            dt = time.perf_counter() - t
            row["eval_tok_s"] = round(sum(r.tokens for r in replies) / dt, 1)
            row["eval_s"] = round(dt, 2)
            row["eval_peak_gib"] = round((torch.cuda.max_memory_allocated() - before) / gib, 3)
        finally:
            be.close()
            del be
        return row

    for name in args.load or list(LOADS):
        row = b.step(name, 40, lambda name=name: one(name))
        if row:
            res["loads"][name] = row
            print(name, row, flush=True)
    base = res["loads"].get("bf16-hf") or res["loads"].get("bf16") or {}
    print(f"\n{res['gpu']}  bitsandbytes {res['bitsandbytes']}  {args.new_tokens} new tokens, eval batch "
          f"{args.eval_prompts}")
    print(f"  {'load':8s} {'weights GiB':>11s} {'chat peak':>9s} {'eval peak':>9s} {'chat tok/s':>10s} "
          f"{'eval tok/s':>10s}  memory vs bf16")
    for name, r in res["loads"].items():
        ratio = round(r["eval_peak_gib"] / base["eval_peak_gib"], 2) if base.get("eval_peak_gib") and \
            r.get("eval_peak_gib") else "-"
        print(f"  {name:8s} {r['weights_gib']:11.2f} {r.get('chat_peak_gib', 0):9.2f} {r.get('eval_peak_gib', 0):9.2f} "
              f"{r.get('chat_tok_s', 0):10.1f} {r.get('eval_tok_s', 0):10.1f}  {ratio}  ({r['decode']})")
    print(f"  skipped: {res['skipped'] or 'none'}  errors: {list(res['errors']) or 'none'}")
    if args.json:
        atomic.write_json(args.json, res)
    return 0 if not res["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
