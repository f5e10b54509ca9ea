"""GPU figures for the transformers backend on a model of InternLM2-1.8B's shape (random weights).

Measures what a user feels in chat and eval: base load, adapter attach, adapter switch vs a full reload
(the ratio is the point of hot-swapping), decode throughput at batch 1/16/64 for the base and with an
unmerged LoRA adapter active, first-token latency of a stream, and peak GPU memory.

    python bench/gpu_backend.py --model /tmp/internlm2-1_8b-random [--json OUT]

Prints one JSON object. Run on the device (see docs/benchmarks.md); on CPU use --shape tiny.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def _adapters(model_dir: Path, out: Path, r: int) -> list[Path]:
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    paths = []
    for i in range(2):
        p = out / f"lora{i}"
        if not (p / "adapter_config.json").exists():
            base = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
            torch.manual_seed(i)
            cfg = peft.LoraConfig(r=r, lora_alpha=16, init_lora_weights=False,
                                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
            m = peft.get_peft_model(base, cfg)
            for n, prm in m.named_parameters():  # small deltas: a plausible trained adapter, not noise
                if "lora_B" in n:
                    prm.data.mul_(0.01)
            m.save_pretrained(p)
            del m, base
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--shape", default="internlm2-1_8b")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    from workbench.demo.random_model import make_random_model
    from workbench.models.base import GenerationSettings, get_backend
    from workbench.models.templates import get_format

    res: dict = {"shape": args.shape, "torch": torch.__version__}
    if not (args.model / "config.json").exists():
        t = time.perf_counter()
        make_random_model(args.shape, args.model, dtype="bfloat16")
        res["make_model_s"] = round(time.perf_counter() - t, 2)
    adapters = _adapters(args.model, args.model.parent / (args.model.name + "-adapters"), args.rank)
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    t = time.perf_counter()
    be = get_backend("transformers", args.model, device=args.device)
    sync()
    res["load_base_s"] = round(time.perf_counter() - t, 3)
    res["device"], res["dtype"] = be.device, str(be.dtype)
    for i, p in enumerate(adapters):
        t = time.perf_counter()
        be.add_adapter(f"a{i}", p)
        sync()
        res[f"add_adapter_{i}_s"] = round(time.perf_counter() - t, 3)
    switches = []
    for k in range(30):
        t = time.perf_counter()
        be.set_active(["a0", "a1", None][k % 3])
        sync()
        switches.append(time.perf_counter() - t)
    res["switch_ms_median"] = round(1000 * statistics.median(switches), 3)

    fmt = get_format("internlm2_chat")
    settings = GenerationSettings(max_new_tokens=args.new_tokens)
    prompts = ["中国的首都是哪里？", "What is the capital of Germany?", "请你介绍一下你自己", "Who are you?"]
    for active in (None, "a0"):
        be.set_active(active)
        for bs in (int(b) for b in args.batches.split(",")):
            convs = [[{"role": "user", "content": prompts[j % 4]}] for j in range(bs)]
            be.generate(convs[: min(bs, 2)], fmt, GenerationSettings(max_new_tokens=8))  # warm-up
            sync()
            t = time.perf_counter()
            replies = be.generate(convs, fmt, settings)
            sync()
            dt = time.perf_counter() - t
            toks = sum(r.tokens for r in replies)
            res[f"tok_s_{active or 'base'}_b{bs}"] = round(toks / dt, 1)
            res[f"tokens_{active or 'base'}_b{bs}"] = toks
    be.set_active(None)
    firsts = []
    for _ in range(5):
        t = time.perf_counter()
        it = be.stream([{"role": "user", "content": "Who are you?"}], fmt, GenerationSettings(max_new_tokens=4))
        next(iter(it))
        firsts.append(time.perf_counter() - t)
        for _ in it:
            pass
    res["first_token_ms_median"] = round(1000 * statistics.median(firsts), 1)
    if cuda:
        res["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    be.close()
    del be
    if cuda:
        torch.cuda.empty_cache()

    # The baseline: what users do today to change adapters, a full reload of base + adapter.
    t = time.perf_counter()
    be2 = get_backend("transformers", args.model, device=args.device)
    be2.add_adapter("a0", adapters[0])
    be2.set_active("a0")
    sync()
    res["full_reload_s"] = round(time.perf_counter() - t, 3)
    res["switch_vs_reload_ratio"] = round(res["full_reload_s"] / (res["switch_ms_median"] / 1000), 1)
    be2.close()
    out = json.dumps(res, indent=2)
    print(out)
    if args.json:
        args.json.write_text(out)


if __name__ == "__main__":
    main()
