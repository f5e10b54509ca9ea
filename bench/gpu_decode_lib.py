"""Helpers shared by the GPU decode benches (bench/gpu_decode.py, bench/gpu_4bit.py): a budgeted step runner, the
copy bandwidth, random adapters, a token spy, and the report that puts every rate next to its baselines."""

from __future__ import annotations

import time
import traceback
from pathlib import Path


class Bench:
    def __init__(self, budget_s: float, after_step=None):
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.res: dict = {"skipped": [], "errors": {}}
        self.after_step = after_step  # called after every step (the benches write their JSON so far)

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
            traceback.print_exc(limit=4)
            self.res["errors"][name] = f"{type(exc).__name__}: {str(exc)[:300]}"
            return None
        shown = f"  -> {out}" if isinstance(out, dict | float | int | bool) else ""
        print(f"{name}: {time.perf_counter() - t:.1f}s{shown}", flush=True)
        if self.after_step is not None:
            self.after_step()
        return out


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bandwidth_gbs(device: str) -> float:
    """A large device-to-device copy, bytes read + written per second (the ceiling of a memory-bound step)."""
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
    return 2 * n * reps / dt / 1e9


def make_adapters(model_dir: Path, out: Path, n: int, device: str, r: int = 64) -> list[Path]:
    """`n` random peft LoRA adapters (r=64, every linear layer; B scaled by 0.01: a plausible trained delta)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from workbench.models.adapters import linear_names

    if n <= 0:
        return []
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
        for pname, prm in model.named_parameters():
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


def spy_ids(backend) -> list[int]:
    """The token ids of the backend's fast loop's last reply (random weights' ids mostly have no text)."""
    seen: list[int] = []
    if backend._loop is None:
        return seen
    decode = backend._loop.decode

    def spy(prompt, settings, on_token):
        seen.clear()
        return decode(prompt, settings, lambda t: seen.append(t) or on_token(t))

    backend._loop.decode = spy
    return seen


def _sig(x: float) -> float:
    """Three significant digits (a ratio of 0.004 must not print as 0)."""
    return float(f"{x:.3g}")


def report(res: dict, rates: dict[str, dict], b: Bench) -> None:
    """Print every rate with its fraction of the bound and its ratio to the baselines of the same run."""
    bound = None
    if res.get("bandwidth_gbs") and res.get("param_bytes"):
        bound = res["bandwidth_gbs"] * 1e9 / res["param_bytes"]
        res["bound_tok_s"] = round(bound, 1)
    base_hf = (rates.get("hf_generate_base") or {}).get("tok_s")
    base_static = (rates.get("static_base") or {}).get("tok_s")
    print(f"\n{res.get('device')} {res.get('gpu') or ''}  bandwidth {res.get('bandwidth_gbs')} GB/s  weights "
          f"{(res.get('param_bytes') or 0) / 1e9:.3f} GB  bound {res.get('bound_tok_s')} tok/s")
    print(f"  {'path':28s} {'tok/s':>8s} {'of bound':>9s} {'x HF gen':>9s} {'x static':>9s}")
    for key, r in rates.items():
        if not r:
            continue
        if bound:
            r["fraction_of_bound"] = _sig(r["tok_s"] / bound)
        if base_hf:
            r["x_hf_generate"] = _sig(r["tok_s"] / base_hf)
        if base_static:
            r["x_static_cache"] = _sig(r["tok_s"] / base_static)
        print(f"  {key:28s} {r['tok_s']:8.1f} {r.get('fraction_of_bound', '-')!s:>9} "
              f"{r.get('x_hf_generate', '-')!s:>9} {r.get('x_static_cache', '-')!s:>9}")
    res["rates"] = rates
    extra = {k: v for k, v in res.items() if k not in ("rates", "skipped", "errors")}
    print("  " + "  ".join(f"{k}={v}" for k, v in extra.items() if k.endswith(("_s", "_ms", "_gib", "_decode",
                                                                              "same_tokens_repeat",
                                                                              "after_switches", "diff_at",
                                                                              "cache_len", "prompt_tokens"))))
    print(f"  skipped: {res['skipped'] or 'none'}  errors: {list(res['errors']) or 'none'}  "
          f"total {time.perf_counter() - b.t0:.1f}s")
