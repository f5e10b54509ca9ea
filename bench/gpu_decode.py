"""Batch-1 chat decode against the memory-bandwidth bound: HF generate(), today's static-cache loop, the fused decoder.

The bound: at batch 1 every token reads every weight once, so tok/s <= copy bandwidth / parameter bytes. Measured in
the same run, every rate through `Backend.stream` (the chat path: worker thread, host loop, detokenising included):
  hf_generate_base / hf_generate_adapter   eager HF generate (fast=False), base / unmerged peft adapter active
  static_base / static_adapter             the static-cache loop over HF's forward (decoder="static-cache")
  fused_base / fused_adapter_a0 / _a1      the fused decoder (decoder="fused"), adapters fused on switch
  fused_base_long                          the fused decoder with a long conversation (cache of 2048 positions)
  *_step_alone                             the step replayed back to back, no host loop: what a loop could reach
plus compile times, switch times, whether the base answers token for token the same after the switches (and with no
switch), peak GPU memory, and --variant runs of the fused step under other settings (a fresh decoder on the same
model each). Each as tok/s, fraction of the bound, and ratio to HF generate and to the static-cache loop.

    python bench/gpu_decode.py --model DIR [--adapters 2] [--new-tokens 128] [--json OUT] [--budget-s 300]
                               [--device cuda|cpu] [--no-compile] [--variant NAME ...]

Fixed length: the repetition-loop detector is off here (random weights loop at once and would stop the reply early),
and eos is an id past the vocabulary (random weights practically never emit eos anyway; a trained model does). Adapters: random r=64 LoRA on every linear layer (peft,
init_lora_weights=False, B scaled by 0.01). A failed measurement prints its error and the rest goes on; once
--budget-s is spent, the rest is skipped and the JSON says so. CPU check: --model <tiny world> --device cpu --no-compile.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_decode_lib import Bench, bandwidth_gbs, first_diff, make_adapters, report, spy_ids, sync  # noqa: E402

PROMPT = [{"role": "user", "content": "你是谁"}]  # under llama2_chat the tiny world loops on it: fixed length on CPU
#: fused-step variants: (inductor options, matvec), tried on the same model after the main measurements
VARIANTS = {
    "cd": ({"coordinate_descent_tuning": True}, "cublas"),  # what coordinate descent tuning buys
    "no-cd": ({}, "cublas"),  # inductor's defaults (the default since the 2026-12-03 run)
    "reduce": ({"coordinate_descent_tuning": True}, "reduce"),  # inductor's own matvec kernels, fused with the norms
    "reduce-no-cd": ({}, "reduce"),
}


class _NeverLoops:
    def __call__(self, seq) -> bool:
        return False


def decode_rate(be, fmt, settings, device: str, messages=PROMPT) -> dict:
    """One chat reply through the stream (the chat path): tokens, seconds, tok/s."""
    sync(device)
    t = time.perf_counter()
    reply = be.stream(messages, fmt, settings).wait()
    sync(device)
    dt = time.perf_counter() - t
    return {"tokens": reply.tokens, "s": round(dt, 4), "tok_s": round(reply.tokens / dt, 1)}


def long_conversation(tokenizer, n_tokens: int) -> list[dict]:
    """A conversation of about `n_tokens` prompt tokens (earlier turns of filler)."""
    filler = "The quick brown fox jumps over the lazy dog. 天空是蓝色的。"
    per = max(1, len(tokenizer.encode(filler, add_special_tokens=False)))
    return [{"role": "user", "content": filler * max(1, n_tokens // per)}, {"role": "assistant", "content": "OK."},
            *PROMPT]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="model folder (workbench demo --random-model ... --out)")
    ap.add_argument("--adapters", type=int, default=2, help="random r=64 adapters to make (2 for the switch)")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--hf-tokens", type=int, default=32, help="new tokens for the slow HF generate baselines")
    ap.add_argument("--long-prompt", type=int, default=1200, help="prompt tokens of the long-conversation run")
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("--budget-s", type=float, default=300.0, help="skip what would not finish within this")
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto")
    ap.add_argument("--no-compile", action="store_true", help="fast paths without torch.compile (eager step)")
    ap.add_argument("--no-static", action="store_true", help="skip the static-cache loop (today's path)")
    ap.add_argument("--variant", action="append", default=[], choices=sorted(VARIANTS))
    args = ap.parse_args()
    if args.model.exists() and not (args.model / "config.json").is_file():
        sys.exit(f"--model {args.model}: not a model folder (no config.json)")

    import torch
    import transformers

    import workbench.models.hf as hf
    from workbench import atomic
    from workbench.models import fused_decoder
    from workbench.models.base import GenerationSettings
    from workbench.models.hf import TransformersBackend
    from workbench.models.loading import pick_device_dtype
    from workbench.models.templates import get_format

    hf.LoopDetector = _NeverLoops  # fixed-length replies (see the docstring)
    # ... and no eos either (an id past the vocabulary): a trained model may end its reply on the CPU check
    TransformersBackend.stop_ids = lambda self, template: ([int(self.base_config["vocab_size"])], [])
    device, _ = pick_device_dtype(args.device)
    cuda = device.startswith("cuda")
    rates: dict[str, dict] = {}

    def save() -> None:  # the JSON so far after every step: a call cut short keeps what it measured
        if args.json:
            atomic.write_json(args.json, {**b.res, "rates": rates})

    b = Bench(args.budget_s, save)
    res = b.res
    res.update(model=str(args.model), device=device, torch=torch.__version__, transformers=transformers.__version__,
               new_tokens=args.new_tokens, gpu=torch.cuda.get_device_name() if cuda else None)
    fmt = get_format("llama2_chat")
    settings = GenerationSettings(max_new_tokens=args.new_tokens)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_decode_"))
    compile_ = not args.no_compile

    def free(be) -> None:
        be.close()
        if cuda:
            torch.cuda.empty_cache()

    try:
        res["bandwidth_gbs"] = b.step("bandwidth", 5, lambda: round(bandwidth_gbs(device), 1))
        adapters = b.step("make adapters", 10 + 5 * args.adapters,
                          lambda: make_adapters(args.model, tmp, args.adapters, device)) or []

        # HF generate (fast=False): the path chat took before the fast loop; adapters unmerged through peft
        slow = b.step("load eager backend", 10, lambda: TransformersBackend(args.model, device=device, fast=False))
        if slow is not None:
            res["param_bytes"] = sum(p.numel() * p.element_size() for p in slow.model.parameters())
            res["dtype"] = str(slow.dtype).replace("torch.", "")
            short = GenerationSettings(max_new_tokens=args.hf_tokens)
            b.step("warm eager", 10, lambda: decode_rate(slow, fmt, GenerationSettings(max_new_tokens=4), device))
            rates["hf_generate_base"] = b.step("hf generate base", args.hf_tokens / 8 + 5,
                                               lambda: decode_rate(slow, fmt, short, device))
            if adapters:
                def eager_adapter():
                    slow.add_adapter("a0", adapters[0])
                    slow.set_active("a0")
                    return decode_rate(slow, fmt, short, device)

                rates["hf_generate_adapter"] = b.step("hf generate adapter", args.hf_tokens / 4 + 5, eager_adapter)
            free(slow)

        def fast_run(prefix: str, decoder: str, need_compile_s: float, extra=None, keep=False):
            be = b.step(f"load {decoder}", 15, lambda: TransformersBackend(args.model, device=device, fast=True,
                                                                           compile=compile_, decoder=decoder))
            if be is None:
                return None
            res.setdefault("param_bytes", sum(p.numel() * p.element_size() for p in be.model.parameters()))
            for i, p in enumerate(adapters):
                b.step(f"{prefix}: add adapter a{i}", 10, lambda i=i, p=p: be.add_adapter(f"a{i}", p))
            ids = spy_ids(be)
            if cuda:
                torch.cuda.reset_peak_memory_stats()

            def first_call():  # compile (and graph capture) happen in the first reply
                t = time.perf_counter()
                decode_rate(be, fmt, settings, device)
                return time.perf_counter() - t

            warm = b.step(f"{prefix}: warm-up (compile)", need_compile_s if compile_ else 10, first_call)
            if warm is None:  # skipped (budget) or failed: a timed reply would compile inside the figure
                free(be)
                return None
            res[f"{prefix}_decode"] = be.describe().get("decode")
            rates[f"{prefix}_base"] = r = b.step(f"{prefix} base", 10, lambda: decode_rate(be, fmt, settings, device))
            if warm and r:
                res[f"{prefix}_compile_s"] = round(max(0.0, warm - r["s"]), 1)
            if r and getattr(be._loop, "stats", None):  # host time to the first token, prefill included
                r["first_token_ms"] = round(1000 * be._loop.stats["first_token_s"], 2)
            base_ids = list(ids)
            if extra:
                extra(be, ids, base_ids)
            elif adapters:
                be.set_active("a0")
                rates[f"{prefix}_adapter"] = b.step(f"{prefix} adapter a0", 10,
                                                    lambda: decode_rate(be, fmt, settings, device))
            if be._loop is not None:
                per = b.step(f"{prefix} step alone", 10, lambda: be._loop.time_steps(64))
                if per:
                    rates[f"{prefix}_step_alone"] = {"tok_s": round(1 / per, 1), "ms_per_step": round(1000 * per, 3)}
            if cuda:
                res[f"{prefix}_peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            if keep:
                return be
            free(be)
            return None

        if not args.no_static:  # today's path, measured in the same run
            fast_run("static", "static-cache", 90)

        def fused_extra(be, ids, base_ids):
            res["base_same_tokens_repeat"] = b.step("fused base repeat", 10, lambda: (
                decode_rate(be, fmt, settings, device), ids == base_ids)[1])
            switch_ms = {}
            for key, name in (("fused_adapter_a0", "a0"), ("fused_adapter_a1", "a1")):
                if name not in be.adapters():
                    continue

                def switched(name=name):
                    sync(device)
                    t = time.perf_counter()
                    be.set_active(name)
                    sync(device)
                    switch_ms[name] = round(1000 * (time.perf_counter() - t), 2)
                    first = decode_rate(be, fmt, settings, device)  # a recompile would show here
                    r = decode_rate(be, fmt, settings, device)
                    r["first_call_s"] = first["s"]
                    return r

                rates[key] = b.step(f"fused adapter {name}", 15, switched)

            def back_to_base():
                t = time.perf_counter()
                be.set_active(None)
                sync(device)
                switch_ms["base"] = round(1000 * (time.perf_counter() - t), 2)
                decode_rate(be, fmt, settings, device)
                if be._fused is not None:
                    res["base_weights_bit_exact_after_switches"] = all(
                        torch.equal(be._fused.linears[m].weight, w) for m, w in be._fused.originals.items())
                res["base_first_diff_at"] = first_diff(ids, base_ids)
                return ids == base_ids

            if be.adapters():
                res["base_same_tokens_after_switches"] = b.step("fused base again", 10, back_to_base)
            res["switch_ms"] = switch_ms

        main = fast_run("fused", "fused", 100, fused_extra, keep=True)

        for name in args.variant:  # the fused step under other settings, on a fresh model
            options, matvec = VARIANTS[name]
            saved = dict(fused_decoder.INDUCTOR_OPTIONS), fused_decoder.MATVEC
            fused_decoder.INDUCTOR_OPTIONS.clear()
            fused_decoder.INDUCTOR_OPTIONS.update(options)
            fused_decoder.MATVEC = matvec
            try:
                fast_run(f"variant_{name}", "fused", 90, lambda be, ids, base_ids: None)
            finally:
                fused_decoder.INDUCTOR_OPTIONS.clear()
                fused_decoder.INDUCTOR_OPTIONS.update(saved[0])
                fused_decoder.MATVEC = saved[1]

        if main is not None and args.long_prompt:  # last: a longer cache compiles and captures again
            msgs = long_conversation(main.tokenizer, args.long_prompt)
            res["long_prompt_tokens"] = len(main.encode(msgs, fmt))

            def long_run():
                decode_rate(main, fmt, settings, device, msgs)
                r = decode_rate(main, fmt, settings, device, msgs)
                stats = getattr(main._loop, "stats", None) or {}
                r["first_token_ms"] = round(1000 * stats.get("first_token_s", 0), 2)
                return r

            rates["fused_base_long"] = b.step("fused base, long conversation", 80 if compile_ else 10, long_run)
            if main._loop is not None:
                res["long_cache_len"] = main._loop.cache_len
        if main is not None:
            free(main)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report(res, rates, b)
    save()


if __name__ == "__main__":
    main()
