"""Chat on a GPU answers as it should: the fast path (adapters fused into the weights, compiled static-cache loop
with CUDA graphs) against `generate()` on peft's wrappers, token for token, on a model that knows things (the tiny
world and real checkpoints of its identity run), with adapters switched back and forth.

The CPU tests check the fast loop without torch.compile; this is the same check with what only a GPU runs (the
compiled step, CUDA graphs, bf16). Prints one JSON object (and writes it with --json):

    python bench/gpu_switch_check.py --model TINY_WORLD --adapter iter_80=RUN/iter_80.pth \\
        --adapter iter_300=RUN/iter_300.pth --adapter iter_300_hf=PEFT_DIR [--dtype float32|bfloat16] [--json OUT]

For each dtype and each fast loop (`--decoder`: the fused decoder and today's static-cache loop over HF's forward,
by default both, their answers also compared with each other visit by visit): the backends load the model on the GPU
with the same adapters; the fast one visits
base, a, b, c, base, b, a, base (every switch fuses or restores weights); at each visit it answers N prompts
(identity and general questions of the shipped eval sets) one at a time, greedy, and the answers are compared with
(1) the reference backend's `generate()` for the same adapter and (2) the fast backend's own answers at the
variant's first visit. Also: the fused weights after returning to the base are bit-exact with the originals, and
the CPU (fp32, eager) gives the same answers as the GPU in fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ORDER_TAIL = ("base", "b", "a", "base")  # after the first visit of every variant


def prompts(n: int) -> list[str]:
    from workbench.paths import evalsets_dir

    root = evalsets_dir()
    out: list[str] = []
    for name, take in (("identity.jsonl", n // 2), ("general.jsonl", n - n // 2)):
        lines = [json.loads(x) for x in (root / name).read_text(encoding="utf-8").splitlines() if x.strip()]
        step = max(1, len(lines) // take)
        out += [r["prompt"] for r in lines[::step][:take]]
    return out


def answers(backend, names: list[str | None], qs: list[str], fmt, settings) -> dict:
    out = {}
    for name in names:
        backend.set_active(name)
        out[name or "base"] = [backend.generate([[{"role": "user", "content": q}]], fmt, settings)[0].text for q in qs]
    return out


def check(model: str, adapters: list[tuple[str, str]], dtype: str, device: str, n: int, max_new: int,
          decoders: list[str]) -> dict:
    import torch

    from workbench.models.base import GenerationSettings, get_backend
    from workbench.models.templates import get_format

    fmt = get_format("internlm2_chat")
    settings = GenerationSettings(max_new_tokens=max_new)
    qs = prompts(n)
    names = [a for a, _ in adapters]
    res: dict = {"dtype": dtype, "device": device, "prompts": len(qs), "max_new_tokens": max_new}

    t = time.perf_counter()
    ref = get_backend("transformers", model, device=device, dtype=dtype, fast=False)
    for a, p in adapters:
        ref.add_adapter(a, p)
    expected = answers(ref, [None, *names], qs, fmt, settings)
    res["reference_s"] = round(time.perf_counter() - t, 1)
    ref.close()
    del ref
    if device.startswith("cuda"):
        torch.cuda.empty_cache()

    res["decoders"] = {}
    for decoder in decoders:
        res["decoders"][decoder] = run_fast(model, adapters, dtype, device, decoder, names, qs, fmt, settings,
                                            expected)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    if len(decoders) > 1:  # the fused decoder against today's static-cache loop, visit by visit
        a, b = (res["decoders"][d].pop("_answers") for d in decoders[:2])
        res[f"{decoders[0]}_differs_from_{decoders[1]}"] = sum(x != y for va, vb in zip(a, b, strict=True)
                                                               for x, y in zip(va, vb, strict=True))
    for r in res["decoders"].values():
        r.pop("_answers", None)
    return res, expected


def run_fast(model, adapters, dtype, device, decoder, names, qs, fmt, settings, expected) -> dict:
    import torch

    from workbench.models.base import get_backend

    res: dict = {}
    t = time.perf_counter()
    fast = get_backend("transformers", model, device=device, dtype=dtype, fast=True, decoder=decoder)
    for a, p in adapters:
        fast.add_adapter(a, p)
    res["fast_mode"] = fast.describe().get("decode")
    alias = dict(zip("abc", names, strict=False))
    visits = ["base", *names] + [alias.get(v, v) for v in ORDER_TAIL]
    first: dict[str, list[str]] = {}
    mismatches, unstable, rows, every = [], [], [], []
    for i, v in enumerate(visits):
        t1 = time.perf_counter()
        got = answers(fast, [None if v == "base" else v], qs, fmt, settings)[v]
        every.append(got)
        rows.append({"visit": i, "variant": v, "s": round(time.perf_counter() - t1, 2),
                     "same_as_reference": sum(g == e for g, e in zip(got, expected[v], strict=True))})
        for q, g, e in zip(qs, got, expected[v], strict=True):
            if g != e:
                mismatches.append({"visit": i, "variant": v, "prompt": q, "fast": g, "reference": e})
        if v in first:
            unstable += [{"visit": i, "variant": v, "prompt": q} for q, g, f in zip(qs, got, first[v], strict=True)
                         if g != f]
        else:
            first[v] = got
    res["fast_s"] = round(time.perf_counter() - t, 1)
    res["fast_mode_after"] = fast.describe().get("decode")  # a failed compile falls back (and says so)
    fused = getattr(fast, "_fused", None)
    if fused is not None and fast.active is None:
        res["base_weights_bit_exact_after_switches"] = all(
            torch.equal(fused.linears[m].weight.cpu(), w.cpu()) for m, w in fused.originals.items())
    res["visits"] = rows
    res["answers_compared"] = len(visits) * len(qs)
    res["fast_differs_from_reference"] = len(mismatches)
    res["fast_differs_from_its_first_visit"] = len(unstable)
    res["mismatch_examples"] = mismatches[:6]
    res["distinct_answer_sets"] = len({tuple(v) for v in first.values()})  # a .pth and its conversion: one set
    res["example"] = {v: first[v][0] for v in first}
    res["_answers"] = every
    fast.close()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH", help="three, for a/b/c")
    ap.add_argument("--dtype", action="append", default=[], help="float32 and/or bfloat16 (default both)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--cpu-reference", action="store_true", help="also answer on the CPU (fp32) and compare")
    ap.add_argument("--decoder", action="append", default=[], choices=["fused", "static-cache"],
                    help="fast loops to check (default both: fused, then static-cache, compared visit by visit)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    adapters = [tuple(a.split("=", 1)) for a in args.adapter]
    out: dict = {"checks": []}
    try:
        import torch

        out["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
        out["torch"] = torch.__version__
        import transformers

        out["transformers"] = transformers.__version__
    except Exception as exc:  # noqa: BLE001
        out["env_error"] = repr(exc)
    gpu_fp32 = None
    for dtype in args.dtype or ["float32", "bfloat16"]:
        try:
            res, expected = check(args.model, adapters, dtype, args.device, args.prompts, args.max_new_tokens,
                                  args.decoder or ["fused", "static-cache"])
            if dtype == "float32":
                gpu_fp32 = expected
        except Exception as exc:  # noqa: BLE001 - report and go on
            import traceback

            traceback.print_exc()
            res = {"dtype": dtype, "error": f"{type(exc).__name__}: {exc}"}
        out["checks"].append(res)
        print(json.dumps(res, ensure_ascii=False), flush=True)
    if args.cpu_reference and gpu_fp32 is not None:
        from workbench.models.base import GenerationSettings, get_backend
        from workbench.models.templates import get_format

        cpu = get_backend("transformers", args.model, device="cpu", dtype="float32", fast=False)
        for a, p in adapters:
            cpu.add_adapter(a, p)
        got = answers(cpu, [None, *[a for a, _ in adapters]], prompts(args.prompts), get_format("internlm2_chat"),
                      GenerationSettings(max_new_tokens=args.max_new_tokens))
        out["cpu_fp32_differs_from_gpu_fp32"] = sum(g != e for v in got for g, e in zip(got[v], gpu_fp32[v],
                                                                                         strict=True))
        cpu.close()
    text = json.dumps(out, ensure_ascii=False, indent=1)
    if args.json:
        args.json.write_text(text, encoding="utf-8")
    print(text)
    return 0 if all("error" not in c for c in out["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
