"""Adapter switch time vs full reload time, on the tiny world (CPU is fine).

What the seeds did: reload the 2-4 GB base for every `xtuner chat` with another adapter. What workbench does:
load the base once and switch the active adapter. Both are measured here in the same run, with the same
model and adapters, and the ratio printed:

    python bench/bench_adapter_switch.py [--model DIR] [--repeats 20] [--json]

- switch: `Backend.set_active(name)` between two attached LoRA adapters (median of --repeats);
- switch + answer: the switch plus one greedy reply of 16 tokens;
- full reload: a new backend (base load) + attaching the adapter (median of --repeats // 4, at least 3);
- full reload + answer: the same plus the reply.
Adapters are random LoRA weights (r=8 on every linear layer) written with peft: timing does not depend on
what they learned.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_adapters(model_dir: Path, out: Path, n: int = 2) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for i in range(n):
        torch.manual_seed(i)
        base = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
        cfg = LoraConfig(r=8, lora_alpha=16, init_lora_weights=False,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        path = out / f"adapter_{i}"
        get_peft_model(base, cfg).save_pretrained(path)
        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="base model folder (default: the tiny world, built if needed)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    args = ap.parse_args()

    from workbench.models.base import GenerationSettings, get_backend
    from workbench.models.templates import get_format

    if args.model:
        model = Path(args.model)
    else:
        from workbench.demo.world import ensure_world

        model = ensure_world(progress=lambda *a: None).path
    fmt = get_format("internlm2_chat")
    msgs = [[{"role": "user", "content": "Who are you?"}]]
    reply = GenerationSettings(max_new_tokens=16)
    with tempfile.TemporaryDirectory() as tmp:
        a0, a1 = make_adapters(model, Path(tmp))

        backend = get_backend("transformers", model, device=args.device)
        backend.add_adapter("a0", a0)
        backend.add_adapter("a1", a1)
        backend.generate(msgs, fmt, reply)  # warm up
        switch, switch_answer = [], []
        for i in range(args.repeats):
            name = "a1" if i % 2 == 0 else "a0"
            t0 = time.perf_counter()
            backend.set_active(name)
            switch.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            backend.set_active("a0" if name == "a1" else "a1")
            backend.generate(msgs, fmt, reply)
            switch_answer.append(time.perf_counter() - t0)
        backend.close()
        del backend

        reload_, reload_answer = [], []
        for i in range(max(3, args.repeats // 4)):
            t0 = time.perf_counter()
            b = get_backend("transformers", model, device=args.device)
            b.add_adapter("a_new", a0 if i % 2 else a1)
            b.set_active("a_new")
            reload_.append(time.perf_counter() - t0)
            b.generate(msgs, fmt, reply)
            reload_answer.append(time.perf_counter() - t0)
            b.close()
            del b

    med = statistics.median
    result = {
        "model": str(model),
        "device": args.device,
        "switch_ms": round(med(switch) * 1000, 3),
        "switch_and_answer_ms": round(med(switch_answer) * 1000, 1),
        "full_reload_ms": round(med(reload_) * 1000, 1),
        "full_reload_and_answer_ms": round(med(reload_answer) * 1000, 1),
        "reload_over_switch": round(med(reload_) / med(switch), 1),
        "reload_and_answer_over_switch_and_answer": round(med(reload_answer) / med(switch_answer), 2),
        "repeats": args.repeats,
    }
    if not args.json:
        print(f"adapter switch:        {result['switch_ms']:.3f} ms", file=sys.stderr)
        print(f"full reload:           {result['full_reload_ms']:.1f} ms  ({result['reload_over_switch']}x)",
              file=sys.stderr)
        print(f"switch + answer:       {result['switch_and_answer_ms']:.1f} ms", file=sys.stderr)
        print(f"reload + answer:       {result['full_reload_and_answer_ms']:.1f} ms  "
              f"({result['reload_and_answer_over_switch_and_answer']}x)", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
