"""lmdeploy's own engine against workbench's `LmdeployBackend` on one model in one run: where the gap goes.

    python bench/lmdeploy_gap.py --model DIR --lmdeploy-python LMPY --make-adapters [--batch 64]
        [--max-new-tokens 128] [--repeats 3] [--json out.json] [--skip-engine]
        [--engine-variant inproc|mp ...] [--server-variant mp|inproc ...]

1. engine: `lmdeploy.pipeline` (PyTorch engine, with the api_server's defaults: the same max_batch_size rule, the same
   two adapters, the same chat template file), in a child started with LMPY: batch 1 (`infer`, and `stream_infer`
   piece by piece), and --batch prompts in one `infer` call; base and adapter a, after a whole reply and a whole
   batch of warm-up. Variants: the engine in the pipeline's process (inproc, lmdeploy's default for a pipeline) or
   in a child process (mp, what the api_server always does). Each child exits before the next engine starts.
2. server: `LmdeployBackend` (the real `lmdeploy serve api_server`) on the same model, adapters and template, and the
   same requests (greedy, ``ignore_eos``: every request generates exactly --max-new-tokens) through
   - `backend.stream`, chat's path, at batch 1;
   - `backend.generate`, eval's path, --batch conversations with concurrency --batch (one JSON answer a request
     since 2026-12-04; before, each streamed);
   - raw clients, to tell the client's cost from the server's: --batch threads of http.client (workbench's client,
     streaming, and one JSON answer per request), and one asyncio loop of aiohttp (streaming and not).
   Variants: the api_server as lmdeploy starts it (mp) or through bench/lmdeploy_inproc_launch.py (inproc: the
   engine in the server's process).
Every figure is printed next to the in-process engine's (batch 1: its streamed rate) and as a ratio (1.00 = the
engine's speed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = [{"role": "user", "content": "Please introduce yourself and tell me a long story about the sea."}]


# -- 1. the engine, in a child run by lmdeploy's Python ------------------------------------------------------------
def engine_child(args) -> None:
    from lmdeploy import ChatTemplateConfig, GenerationConfig, PytorchEngineConfig, pipeline

    adapters = dict(a.split("=", 1) for a in args.adapter)
    t0 = time.monotonic()
    tmpl = ChatTemplateConfig.from_json(args.chat_template) if args.chat_template else None
    pipe = pipeline(args.model, backend_config=PytorchEngineConfig(adapters=adapters or None,
                                                                   max_batch_size=args.max_batch_size,
                                                                   enable_mp_engine=args.mp),
                    chat_template_config=tmpl, log_level="ERROR")
    out: dict = {"start_s": round(time.monotonic() - t0, 2)}
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, ignore_eos=True, do_sample=False, top_k=1,
                           stop_words=args.stop or None)
    names = [None] + sorted(adapters)[:1]
    for name in names:  # warm up: a whole reply, and a whole batch (the first of each size pays its set-up)
        pipe([PROMPT], gen_config=gen, adapter_name=name)
        pipe([PROMPT] * args.batch, gen_config=gen, adapter_name=name)

    def infer(batch: int, name) -> tuple[int, float]:
        t = time.monotonic()
        res = pipe([PROMPT] * batch, gen_config=gen, adapter_name=name)
        return sum(r.generate_token_len for r in res), time.monotonic() - t

    def streamed(name) -> tuple[int, float]:
        t, pieces = time.monotonic(), 0
        for _ in pipe.stream_infer([PROMPT], gen_config=gen, adapter_name=name):
            pieces += 1
        return args.max_new_tokens, time.monotonic() - t

    def rate(fn, *a, repeats: int) -> float:
        runs = [fn(*a) for _ in range(repeats)]
        return round(sum(r[0] for r in runs) / sum(r[1] for r in runs), 1)

    for name in names:
        key = name or "base"
        for label, fn, a, n in ((f"b1_infer/{key}", infer, (1, name), args.repeats),
                                (f"b1_stream/{key}", streamed, (name,), args.repeats),
                                (f"bN/{key}", infer, (args.batch, name), max(1, args.repeats - 1))):
            try:
                out[label] = rate(fn, *a, repeats=n)
            except Exception as exc:  # keep what was measured: one call on the device is all there is
                out[label] = None
                out.setdefault("errors", []).append(f"{label}: {type(exc).__name__}: {exc}"[:300])
            print(f"engine {label}: {out[label]}", file=sys.stderr, flush=True)
    print("ENGINE " + json.dumps(out), flush=True)
    pipe.close()


def run_engine(args, adapters, template_json: Path, stop: list[str], mp: bool) -> dict:
    cmd = [args.lmdeploy_python, __file__, "--engine-child", "--model", args.model, "--batch", str(args.batch),
           "--max-new-tokens", str(args.max_new_tokens), "--repeats", str(args.repeats),
           "--chat-template", str(template_json)]
    if mp:
        cmd += ["--mp"]
    if "--max-batch-size" in args.server_arg:
        cmd += ["--max-batch-size", args.server_arg[args.server_arg.index("--max-batch-size") + 1]]
    for name, path in adapters:
        cmd += ["--adapter", f"{name}={path}"]
    for s in stop:
        cmd += ["--stop", s]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.engine_timeout)
        stdout, stderr, code = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as exc:  # the figures may be out before the engine's close hangs
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        stdout, stderr, code = text(exc.stdout), text(exc.stderr), "timeout"
    sys.stderr.write(stderr[-3000:])
    for line in stdout.splitlines():
        if line.startswith("ENGINE "):
            return json.loads(line[7:])
    return {"error": f"engine child failed ({code}): {stderr[-1500:]}"}


# -- 2. the server through workbench -------------------------------------------------------------------------------
def run_server(args, model: Path, adapters, fmt, engine_in_server: bool) -> dict:
    from workbench.models.base import GenerationSettings
    from workbench.models.lmdeploy import LmdeployBackend
    from workbench.models.remote import with_system

    gen = GenerationSettings(max_new_tokens=args.max_new_tokens)
    backend = LmdeployBackend(model, python=args.lmdeploy_python or sys.executable, entry=args.entry, timeout=600,
                              concurrency=args.batch, server_args=args.server_arg)
    if engine_in_server and args.entry == "lmdeploy":  # the same command line through bench/lmdeploy_inproc_launch.py
        command = backend.command

        def launched(port: int, api_key: str) -> list[str]:
            cmd = command(port, api_key)
            return [cmd[0], str(Path(__file__).with_name("lmdeploy_inproc_launch.py")), *cmd[3:]]

        backend.command = launched  # type: ignore[method-assign]
    for name, path in adapters:
        backend.add_adapter(name, path)
    client = backend.client
    chat_stream = client.chat_stream

    def with_ignore_eos(*a, **k):  # every request generates exactly max_new_tokens, as in the engine's runs
        k["extra"] = {**(k.get("extra") or {}), "ignore_eos": True}
        return chat_stream(*a, **k)

    chat_complete = client.chat_complete

    def complete_ignoring_eos(*a, **k):  # generate's requests (one JSON answer each)
        k["extra"] = {**(k.get("extra") or {}), "ignore_eos": True}
        return chat_complete(*a, **k)

    client.chat_stream = with_ignore_eos  # type: ignore[method-assign]
    client.chat_complete = complete_ignoring_eos  # type: ignore[method-assign]
    out: dict = {}
    try:
        t0 = time.monotonic()
        backend.start(fmt)
        out["start_s"] = round(time.monotonic() - t0, 2)
        names = [None] + [n for n, _ in adapters][:1]
        messages = with_system(PROMPT, fmt)
        for name in names:  # warm up: a whole reply, and a whole batch (the first of each size pays its set-up)
            backend.set_active(name)
            list(backend.stream(PROMPT, fmt, gen))
            backend.generate([PROMPT] * args.batch, fmt, gen)

        def served(name):
            return backend.base_model if name is None else name

        def b1(name) -> tuple[int, float]:
            backend.set_active(name)
            t = time.monotonic()
            s = backend.stream(PROMPT, fmt, gen)
            for _ in s:
                pass
            return s.wait().tokens, time.monotonic() - t

        def generate(name) -> tuple[int, float]:
            backend.set_active(name)
            t = time.monotonic()
            replies = backend.generate([PROMPT] * args.batch, fmt, gen)
            return sum(r.tokens for r in replies), time.monotonic() - t

        def body(name, stream: bool) -> dict:
            b = client.request_body(served(name), messages, gen, list(fmt.stop_words), stream=stream)
            b["ignore_eos"] = True
            return b

        def threads(name, stream: bool) -> tuple[int, float]:
            def one(_):
                if stream:
                    return chat_stream(served(name), messages, gen, stop=list(fmt.stop_words),
                                       extra={"ignore_eos": True}, detect_loops=False).wait().tokens
                data = client._json("POST", "/v1/chat/completions", body(name, False))
                return data["usage"]["completion_tokens"]
            t = time.monotonic()
            with ThreadPoolExecutor(max_workers=args.batch) as pool:
                n = sum(pool.map(one, range(args.batch)))
            return n, time.monotonic() - t

        def aio(name, stream: bool) -> tuple[int, float]:
            import asyncio

            import aiohttp

            async def main() -> int:
                url = f"{client.base_url}/v1/chat/completions"
                headers = {"Authorization": f"Bearer {client.api_key}"} if client.api_key else {}
                conn = aiohttp.TCPConnector(limit=0)
                async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=600)) as s:
                    async def one() -> int:
                        async with s.post(url, json=body(name, stream), headers=headers) as r:
                            if not stream:
                                return (await r.json())["usage"]["completion_tokens"]
                            usage = 0
                            async for line in r.content:
                                if line.startswith(b"data:") and b"[DONE]" not in line:
                                    ev = json.loads(line[5:])
                                    if ev.get("usage"):
                                        usage = ev["usage"]["completion_tokens"]
                            return usage
                    return sum(await asyncio.gather(*(one() for _ in range(args.batch))))
            t = time.monotonic()
            n = asyncio.run(main())
            return n, time.monotonic() - t

        def rate(fn, *a, repeats: int) -> float:
            runs = [fn(*a) for _ in range(repeats)]
            return round(sum(r[0] for r in runs) / sum(r[1] for r in runs), 1)

        for name in names:
            key = name or "base"
            out[f"b1_stream/{key}"] = rate(b1, name, repeats=args.repeats)
            out[f"bN_generate/{key}"] = rate(generate, name, repeats=max(1, args.repeats - 1))
        for stream in (True, False):
            mode = "stream" if stream else "json"
            out[f"bN_threads_{mode}/base"] = rate(threads, None, stream, repeats=max(1, args.repeats - 1))
            try:
                out[f"bN_aiohttp_{mode}/base"] = rate(aio, None, stream, repeats=max(1, args.repeats - 1))
            except ImportError:
                out[f"bN_aiohttp_{mode}/base"] = None
        out["server_log_tail"] = backend._log_tail(3)
    finally:
        backend.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--make-adapters", action="store_true")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--lmdeploy-python", default=None)
    ap.add_argument("--template", default="internlm2_chat")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-engine", action="store_true", help="measure the server only")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra api_server flag, repeatable (--max-batch-size N also goes to the engine's config)")
    ap.add_argument("--max-batch-size", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--engine-variant", action="append", choices=("inproc", "mp"), default=None,
                    help="the pipeline with its engine in process (lmdeploy's default) and/or in a child process as "
                         "the api_server runs it (default: inproc)")
    ap.add_argument("--server-variant", action="append", choices=("mp", "inproc"), default=None,
                    help="the api_server as lmdeploy starts it (engine in a child) and/or through "
                         "bench/lmdeploy_inproc_launch.py (engine in the server's process) (default: mp)")
    ap.add_argument("--mp", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--engine-timeout", type=float, default=400)
    ap.add_argument("--entry", default="lmdeploy", help=argparse.SUPPRESS)
    ap.add_argument("--engine-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--chat-template", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--stop", action="append", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.engine_variant = args.engine_variant or ["inproc"]
    args.server_variant = args.server_variant or ["mp"]
    if args.engine_child:
        engine_child(args)
        return

    from workbench.models.lmdeploy import lmdeploy_chat_template
    from workbench.models.templates import get_format

    model = Path(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="lmdeploy-gap-"))
    adapters = [tuple(a.split("=", 1)) for a in args.adapter]
    if args.make_adapters:
        from bench.lmdeploy_device import make_adapters

        # longer names than make_adapters' a/b: the CPU test server (peft) refuses one-letter adapter names
        adapters = [(f"lora_{n}x", path) for n, path in make_adapters(model, tmp, args.rank)]
    fmt = get_format(args.template)
    template_json = tmp / "chat_template.json"
    template_json.write_text(json.dumps(lmdeploy_chat_template(fmt)), encoding="utf-8")
    result: dict = {"model": str(model), "batch": args.batch, "max_new_tokens": args.max_new_tokens,
                    "server_args": args.server_arg, "date": time.strftime("%Y-%m-%d")}
    t0 = time.monotonic()
    result["engine"], result["server"] = {}, {}
    for variant in ([] if args.skip_engine else args.engine_variant):
        result["engine"][variant] = run_engine(args, adapters, template_json, list(fmt.stop_words), variant == "mp")
        print(f"engine {variant} done at {time.monotonic() - t0:.0f} s: {result['engine'][variant]}",
              file=sys.stderr, flush=True)
    for variant in args.server_variant:
        result["server"][variant] = run_server(args, model, adapters, fmt, variant == "inproc")
        print(f"server {variant} done at {time.monotonic() - t0:.0f} s: {result['server'][variant]}",
              file=sys.stderr, flush=True)
    # every server figure against the in-process engine (lmdeploy.pipeline's default): b1 against its streamed
    # batch-1 rate (a chat reply streams), bN against its batch
    eng = result["engine"].get("inproc") or next(iter(result["engine"].values()), {})
    rows = []
    for variant, figures in [*(("engine-" + k, v) for k, v in result["engine"].items()),
                             *(("server-" + k, v) for k, v in result["server"].items())]:
        for key, val in figures.items():
            if not isinstance(val, (int, float)) or key == "start_s":
                continue
            kind, name = key.split("/")
            ref = eng.get(f"b1_stream/{name}") if kind.startswith("b1") else eng.get(f"bN/{name}")
            rows.append((f"{variant} {key}", val, ref, round(val / ref, 2) if ref else None))
    result["table"] = [{"what": k, "tok_s": v, "engine_tok_s": r, "ratio": q} for k, v, r, q in rows]
    for k, v, r, q in rows:
        print(f"{k:40s} {v:10.1f} tok/s   engine {r if r is not None else '-':>10}   ratio {q}")
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
