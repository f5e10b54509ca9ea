"""Batch-1 chat decode against the memory-bandwidth bound: today's generate() path versus the fast path.

The bound: at batch 1 every token reads every weight once, so tok/s <= copy bandwidth / parameter bytes. Measured in
the same run: bandwidth (a large device-to-device copy, read + write counted), then batch-1 chat decode (through
`Backend.stream`, the chat path) for
  (a) eager HF generate, base            (b) eager generate, unmerged peft adapter active (the old default)
  (c) fast path, base                    (d) fast path, adapter A        (e) fast path, adapter B after a switch
plus the fast step alone (no host work), the compile time and the compile mode that won, adapter switch times, and
whether the base answers token for token the same after the switches. Each as tok/s and as a fraction of the bound.

    python bench/gpu_decode.py --model DIR [--adapters 2] [--new-tokens 128] [--json OUT] [--budget-s 150]
                               [--device cuda|cpu] [--no-compile]

Fixed length: the repetition-loop detector is switched off here (random weights loop at once, and would stop the
reply early); random weights practically never emit eos. Adapters: random r=64 LoRA on every linear layer
(peft, init_lora_weights=False). A failed measurement prints its error and the rest goes on; once --budget-s is
spent, the rest is skipped and the JSON says so. CPU check: --model <tiny world> --device cpu --no-compile.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = [{"role": "user", "content": "你是谁"}]  # under llama2_chat the tiny world loops on it: fixed length on CPU


class _NeverLoops:
    def __call__(self, seq) -> bool:
        return False


class Bench:
    def __init__(self, budget_s: float):
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.res: dict = {"skipped": [], "errors": {}}

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def step(self, name: str, need_s: float, fn):
        """Run one measurement if `need_s` seconds are left; print and record a failure, never raise."""
        if self.left() < need_s:
            print(f"skip {name}: {self.left():.0f}s of the budget left, about {need_s:.0f}s needed", flush=True)
            self.res["skipped"].append(name)
            return None
        t = time.perf_counter()
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - a bench reports and goes on
            print(f"FAILED {name}: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc(limit=3)
            self.res["errors"][name] = f"{type(exc).__name__}: {str(exc)[:300]}"
            return None
        print(f"{name}: {time.perf_counter() - t:.1f}s", flush=True)
        return out


def bandwidth_gbs(device: str) -> float:
    import torch

    n = (2 << 30) if device.startswith("cuda") else (256 << 20)
    x = torch.empty(n, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    sync(device)
    reps = 10
    t = time.perf_counter()
    for _ in range(reps):
        y.copy_(x)
    sync(device)
    dt = time.perf_counter() - t
    del x, y
    return 2 * n * reps / dt / 1e9  # each copy reads n bytes and writes n bytes


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_adapters(model_dir: Path, out: Path, n: int, device: str, r: int = 64) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from workbench.models.adapters import linear_names

    base = AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=torch.float32 if device == "cpu"
                                                else torch.bfloat16).to(device)
    cfg = LoraConfig(r=r, lora_alpha=16, init_lora_weights=False, target_modules=linear_names(base))
    paths = []
    torch.manual_seed(0)
    model = get_peft_model(base, cfg, adapter_name="a0")
    for i in range(n):
        name = f"a{i}"
        if i:
            model.add_adapter(name, cfg)
        for pname, prm in model.named_parameters():  # small deltas: a plausible trained adapter, not noise
            if f"lora_B.{name}." in pname:
                prm.data.mul_(0.01)
        model.save_pretrained(str(out), selected_adapters=[name])
        paths.append(out / name)  # peft writes an adapter not named "default" into a subfolder of its name
    del model, base
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return paths


def first_diff(a: list[int], b: list[int]) -> int | None:
    """Index of the first token where two replies differ (None when equal)."""
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return None if a == b else i


def decode_rate(be, fmt, settings, device: str) -> dict:
    """One chat reply through the stream (the chat path): tokens, seconds, tok/s."""
    sync(device)
    t = time.perf_counter()
    stream = be.stream(PROMPT, fmt, settings)
    reply = stream.wait()
    sync(device)
    dt = time.perf_counter() - t
    return {"tokens": reply.tokens, "s": round(dt, 4), "tok_s": round(reply.tokens / dt, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="model folder (workbench demo --random-model ... --out)")
    ap.add_argument("--adapters", type=int, default=2, help="random r=64 adapters to make (2 for the switch)")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("--budget-s", type=float, default=150.0, help="skip what would not finish within this")
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto")
    ap.add_argument("--no-compile", action="store_true", help="fast path without torch.compile (eager step)")
    ap.add_argument("--shape", default="internlm2-1_8b",
                    help="when --model does not exist: make a random model of this shape there first (not timed)")
    args = ap.parse_args()
    if args.adapters < 0:
        sys.exit("--adapters: must be 0 or more")
    if args.model.exists() and not (args.model / "config.json").is_file():
        sys.exit(f"--model {args.model}: not a model folder (no config.json)")

    import torch

    made_s = None
    if not args.model.exists():  # as `workbench demo --random-model SHAPE --out DIR` does (needs the tiny world)
        from workbench.demo.random_model import make_random_model

        t = time.perf_counter()
        make_random_model(args.shape, args.model, dtype="bfloat16")
        made_s = round(time.perf_counter() - t, 1)
        print(f"made a random {args.shape} model in {args.model}: {made_s}s (before the budget)", flush=True)

    import workbench.models.hf as hf
    from workbench import atomic
    from workbench.models.base import GenerationSettings
    from workbench.models.hf import TransformersBackend, pick_device_dtype
    from workbench.models.templates import get_format

    hf.LoopDetector = _NeverLoops  # fixed-length replies (see the docstring)
    device, _ = pick_device_dtype(args.device)
    b = Bench(args.budget_s)
    res = b.res
    res.update(model=str(args.model), made_model_s=made_s, device=device, torch=torch.__version__, new_tokens=args.new_tokens,
               gpu=torch.cuda.get_device_name() if device.startswith("cuda") else None)
    import transformers

    res["transformers"] = transformers.__version__
    fmt = get_format("llama2_chat")
    settings = GenerationSettings(max_new_tokens=args.new_tokens)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_decode_"))
    rates: dict[str, dict] = {}
    try:
        res["bandwidth_gbs"] = b.step("bandwidth", 5, lambda: round(bandwidth_gbs(device), 1))
        adapters = b.step("make adapters", 10 + 5 * args.adapters,
                          lambda: make_adapters(args.model, tmp, args.adapters, device)) or []
        res["adapters"] = len(adapters)

        # today's path: generate(), adapters unmerged through peft
        slow = b.step("load eager backend", 10, lambda: TransformersBackend(args.model, device=device, fast=False))
        if slow is not None:
            res["param_bytes"] = sum(p.numel() * p.element_size() for p in slow.model.parameters())
            res["dtype"] = str(slow.dtype).replace("torch.", "")
            b.step("warm eager", 10, lambda: decode_rate(slow, fmt, GenerationSettings(max_new_tokens=4), device))
            eager_need = args.new_tokens / 20 + 5  # eager generate ran at about 33 tok/s on the H100
            rates["a_eager_base"] = b.step("(a) eager base", eager_need, lambda: decode_rate(slow, fmt, settings, device))
            if adapters:
                def eager_adapter():
                    slow.add_adapter("a0", adapters[0])
                    slow.set_active("a0")
                    return decode_rate(slow, fmt, settings, device)

                rates["b_eager_adapter"] = b.step("(b) eager unmerged adapter", 2 * eager_need, eager_adapter)
            slow.close()
            del slow
            if device.startswith("cuda"):
                torch.cuda.empty_cache()

        # the fast path: fused adapters, the compiled static-cache loop
        compile_ = not args.no_compile
        fast = b.step("load fast backend", 15, lambda: TransformersBackend(args.model, device=device, fast=True,
                                                                          compile=compile_))
        if fast is not None:
            res.setdefault("param_bytes", sum(p.numel() * p.element_size() for p in fast.model.parameters()))
            for i, p in enumerate(adapters):
                b.step(f"fuse adapter a{i}", 10, lambda i=i, p=p: fast.add_adapter(f"a{i}", p))
            seen_ids: list[int] = []  # the last fast reply's token ids (random weights' ids mostly have no text)
            if fast._loop is not None:
                decode = fast._loop.decode

                def spy(prompt, settings, on_token):
                    seen_ids.clear()
                    return decode(prompt, settings, lambda t: seen_ids.append(t) or on_token(t))

                fast._loop.decode = spy
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()

            def first_call():  # compile (and CUDA-graph capture) happen in the first reply
                t = time.perf_counter()
                r = decode_rate(fast, fmt, settings, device)
                return {"s": round(time.perf_counter() - t, 2), "tokens": r["tokens"]}

            warm = b.step("fast warm-up (compile)", 60 if compile_ else 10, first_call)
            warm_ids = list(seen_ids)
            res["fast_mode"] = fast._loop.mode if fast._loop is not None else "generate (fast loop off)"
            rates["c_fast_base"] = b.step("(c) fast base", 10, lambda: decode_rate(fast, fmt, settings, device))
            base_ids = list(seen_ids)
            if base_ids:  # run-to-run determinism of the base with no switch in between (tells noise from a switch)
                res["base_same_tokens_as_warmup"] = warm_ids == base_ids

                def repeat():
                    decode_rate(fast, fmt, settings, device)
                    return seen_ids == base_ids

                res["base_same_tokens_repeat"] = b.step("(c) base repeat", 10, repeat)
            if rates["c_fast_base"]:
                if warm:
                    res["compile_s"] = round(max(0.0, warm["s"] - rates["c_fast_base"]["s"]), 2)
            switch_ms = {}
            for key, name in (("d_fast_adapter_a", "a0"), ("e_fast_adapter_b", "a1")):
                if name not in fast.adapters():
                    continue

                def switched(name=name):
                    sync(device)
                    t = time.perf_counter()
                    fast.set_active(name)
                    sync(device)
                    switch_ms[name] = round(1000 * (time.perf_counter() - t), 2)
                    first = decode_rate(fast, fmt, settings, device)  # a recompile would show here
                    r = decode_rate(fast, fmt, settings, device)
                    r["first_call_s"] = first["s"]
                    return r

                rates[key] = b.step(f"({key[0]}) fast adapter {name}", 15, switched)
            res["switch_ms"] = switch_ms

            def back_to_base():
                sync(device)
                t = time.perf_counter()
                fast.set_active(None)
                sync(device)
                switch_ms["base"] = round(1000 * (time.perf_counter() - t), 2)
                decode_rate(fast, fmt, settings, device)
                if fast._fused is not None:  # every adapted weight equal to the copy taken before any switch
                    res["base_weights_bit_exact_after_switches"] = all(
                        torch.equal(fast._fused.linears[m].weight, w) for m, w in fast._fused.originals.items())
                res["base_first_diff_at"] = first_diff(seen_ids, base_ids)
                return seen_ids == base_ids

            if base_ids and fast.adapters():
                res["base_same_tokens_after_switches"] = b.step("base again", 10, back_to_base)
            if fast._loop is not None:
                per = b.step("fast step alone", 10, lambda: fast._loop.time_steps(64))
                if per:
                    rates["fast_step_alone"] = {"tok_s": round(1 / per, 1), "ms_per_step": round(1000 * per, 3)}
            if device.startswith("cuda"):
                res["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            res["describe"] = fast.describe()
            fast.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    bound = None
    if res.get("bandwidth_gbs") and res.get("param_bytes"):
        bound = res["bandwidth_gbs"] * 1e9 / res["param_bytes"]
        res["bound_tok_s"] = round(bound, 1)
    print(f"\n{device} {res.get('gpu') or ''}  bandwidth {res.get('bandwidth_gbs')} GB/s  "
          f"weights {(res.get('param_bytes') or 0) / 1e9:.3f} GB  bound {res.get('bound_tok_s')} tok/s  "
          f"compile mode: {res.get('fast_mode')}  compile {res.get('compile_s')} s")
    for key, r in rates.items():
        if not r:
            continue
        r.pop("ids", None)
        if bound:
            r["fraction_of_bound"] = round(r["tok_s"] / bound, 3)
        print(f"  {key:22s} {r['tok_s']:9.1f} tok/s  {r.get('fraction_of_bound', '-')!s:>6} of bound"
              + (f"  ({r['tokens']} tokens)" if "tokens" in r else ""))
    res["rates"] = rates
    print(f"  switch ms: {res.get('switch_ms')}  base same after switches: "
          f"{res.get('base_same_tokens_after_switches')} (first diff at {res.get('base_first_diff_at')}, weights "
          f"bit-exact {res.get('base_weights_bit_exact_after_switches')}; no switch: same as warm-up "
          f"{res.get('base_same_tokens_as_warmup')}, repeat {res.get('base_same_tokens_repeat')})  "
          f"skipped: {res['skipped'] or 'none'}  "
          f"errors: {list(res['errors']) or 'none'}  total {time.perf_counter() - b.t0:.1f}s")
    if args.json:
        atomic.write_json(args.json, res)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
