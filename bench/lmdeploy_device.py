"""The lmdeploy backend on a GPU box: start the real `lmdeploy serve api_server` through workbench's
`LmdeployBackend` on MODEL with two adapters, and measure what a user feels. Prints one JSON object.

    python bench/lmdeploy_device.py --model DIR --lmdeploy-python ~/lmdeploy-env/bin/python \\
        [--adapter a=PEFT_DIR --adapter b=PEFT_DIR | --make-adapters] [--batch 64] [--max-new-tokens 128]

Measured (greedy, ``ignore_eos`` so every request generates exactly --max-new-tokens):
- start_s: from process start to a healthy server that lists the adapters (engine build, CUDA graphs);
- first_token_ms: median time to the first streamed piece of a short prompt, base and each adapter;
- batch1_tok_s: one request at a time, generated tokens / wall time, base and adapter;
- batchN_tok_s: --batch requests in flight, base only, adapter only, and mixed over base + both adapters;
- switch: first-token latency of a request for another adapter than the previous one vs the same one
  (the adapter is chosen per request by model name: there is no reload to pay).
`--entry workbench.models.openai_server` runs the same script against the local CPU test server (a dry run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = [{"role": "user", "content": "Please introduce yourself and tell me a long story about the sea."}]


def make_adapters(model: Path, out: Path, r: int) -> list[tuple[str, Path]]:
    """Two random LoRA adapters (every linear layer but the head) written by peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    pairs = []
    for i, name in enumerate(("a", "b")):
        torch.manual_seed(i)
        base = AutoModelForCausalLM.from_pretrained(model, torch_dtype=torch.bfloat16, trust_remote_code=True)
        names = {n.split(".")[-1] for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)}
        cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=sorted(names - {"lm_head", "output"}),
                         init_lora_weights="gaussian")
        get_peft_model(base, cfg).save_pretrained(out / name)
        pairs.append((name, out / name))
        del base
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--make-adapters", action="store_true", help="write two random LoRA adapters (r=--rank)")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--lmdeploy-python", default=None)
    ap.add_argument("--template", default="internlm2_chat")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--entry", default="lmdeploy", help=argparse.SUPPRESS)
    ap.add_argument("--server-arg", action="append", default=[], help="extra api_server flag (repeatable)")
    args = ap.parse_args()

    from workbench.models.base import GenerationSettings
    from workbench.models.lmdeploy import LmdeployBackend
    from workbench.models.templates import get_format

    model = Path(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="lmdeploy-bench-"))
    adapters = [tuple(a.split("=", 1)) for a in args.adapter]
    if args.make_adapters:
        adapters = make_adapters(model, tmp, args.rank)
    if len(adapters) != 2:
        ap.error("give two --adapter NAME=PATH, or --make-adapters")
    fmt = get_format(args.template)
    gen = GenerationSettings(max_new_tokens=args.max_new_tokens)
    short = GenerationSettings(max_new_tokens=8)
    backend = LmdeployBackend(model, python=args.lmdeploy_python or (sys.executable if args.entry != "lmdeploy"
                              else None), entry=args.entry, timeout=600, server_args=args.server_arg)
    for name, path in adapters:
        backend.add_adapter(name, path)
    names = [None] + [n for n, _ in adapters]
    client = backend.client
    med = statistics.median
    out: dict = {"model": str(model), "adapters": {n: str(p) for n, p in adapters}, "batch": args.batch,
                 "max_new_tokens": args.max_new_tokens}
    try:
        backend.start(fmt)
        out["start_s"] = round(backend.start_seconds, 2)
        served = {None: backend.base_model, **{n: n for n, _ in adapters}}

        def request(name, settings, record=None):
            t0 = time.monotonic()
            s = client.chat_stream(served[name], PROMPT, settings, stop=list(fmt.stop_words),
                                   extra={"ignore_eos": True}, detect_loops=False)
            reply = s.wait()
            t1 = time.monotonic()
            first = (s.first_piece_at or t1) - t0
            if record is not None:
                record.append((first, t1 - t0, reply.tokens))
            return first, t1 - t0, reply.tokens

        for name in names:  # warm up every model name once
            request(name, short)
        out["first_token_ms"] = {str(n or "base"): round(med(request(n, short)[0] for _ in range(args.repeats))
                                                         * 1000, 1) for n in names}
        out["batch1_tok_s"] = {}
        for name in (None, adapters[0][0]):
            runs = [request(name, gen) for _ in range(max(2, args.repeats // 2))]
            out["batch1_tok_s"][str(name or "base")] = round(sum(r[2] for r in runs) / sum(r[1] for r in runs), 1)

        def batch(pick) -> float:
            rec: list = []
            lock = threading.Lock()

            def one(i):
                r = request(pick(i), gen)
                with lock:
                    rec.append(r)

            t0 = time.monotonic()
            with ThreadPoolExecutor(max_workers=args.batch) as pool:
                list(pool.map(one, range(args.batch)))
            return round(sum(r[2] for r in rec) / (time.monotonic() - t0), 1)

        out["batchN_tok_s"] = {"base": batch(lambda i: None), "adapter": batch(lambda i: adapters[0][0]),
                               "mixed": batch(lambda i: names[i % 3])}
        same, switched = [], []
        prev = None
        for i in range(args.repeats * 6):
            name = names[(i // 2) % 3]  # a, a, b, b, base, base...: every other request switches
            first = request(name, short)[0]
            (same if name == prev else switched).append(first)
            prev = name
        out["switch"] = {"first_token_same_ms": round(med(same) * 1000, 1),
                         "first_token_after_switch_ms": round(med(switched) * 1000, 1),
                         "overhead_ms": round((med(switched) - med(same)) * 1000, 1)}
    finally:
        backend.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
