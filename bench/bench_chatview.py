"""Chat view under a token stream: 2,000 tokens at 500 tokens a second into one reply, keys typed meanwhile.

Prints the input latency (key press to the repaint that shows the typed character) p50/p99, the time
until the whole reply is on screen, and the peak memory of this process, for:

- idle: nothing streaming (the baseline latency);
- workbench: the Chat screen's path: a generating thread hands tokens to `TokenBatcher`, which posts
  one message per 200 ms; the transcript appends each batch through `Markdown.get_stream()`;
- naive: what elia does: one blocking `call_from_thread` per token that re-renders the whole reply
  (`Markdown.update(all_text_so_far)`); quadratic, so it is stopped after 60 s.

The app runs headless at 80x24 (Textual's real compositor, without the terminal write). A character
is typed into the prompt every 50 ms; its latency runs from posting the key event, as the terminal
driver does, to the next frame after the input inserted it.

    .venv/bin/python bench/bench_chatview.py
    .venv/bin/python bench/bench_chatview.py --tokens 4000 --rate 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from textual import events
from textual.app import App, ComposeResult
from textual.widgets import Input, Markdown

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.tui.widgets.transcript import (  # noqa: E402
    ReplyChunk,
    ReplyDone,
    ReplyView,
    TokenBatcher,
    Transcript,
)

WORDS = ("the", "model", "answers", "**quickly**", "with", "`code`", "and", "lists", "of", "facts,", "then",
         "stops.", "Berlin", "is", "the", "capital", "of", "Germany.")


def tokens(n: int) -> list[str]:
    """Markdown-ish tokens: words, with a paragraph, a bullet list and a code block now and then."""
    out = []
    for i in range(n):
        if i % 120 == 119:
            out.append("\n\n```python\nprint('hello')\n```\n\n")
        elif i % 60 == 59:
            out.append("\n\n- item one\n- item two\n\n")
        elif i % 25 == 24:
            out.append("\n\n")
        else:
            out.append(WORDS[i % len(WORDS)] + " ")
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class BenchInput(Input):
    def insert_text_at_cursor(self, text: str) -> None:
        super().insert_text_at_cursor(text)
        self.app.handled = True


class BenchApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.pressed_at: float | None = None
        self.handled = False
        self.latencies: list[float] = []
        self.done_at: float | None = None

    def compose(self) -> ComposeResult:
        yield Transcript(id="transcript")
        yield BenchInput(id="prompt")

    def on_mount(self) -> None:
        self.query_one(BenchInput).focus()

    def _display(self, screen, renderable) -> None:
        if self.handled and self.pressed_at is not None:
            self.latencies.append(time.perf_counter() - self.pressed_at)
            self.pressed_at, self.handled = None, False
        super()._display(screen, renderable)

    def on_reply_done(self, _message: ReplyDone) -> None:
        self.done_at = time.perf_counter()


def produce_batched(transcript: Transcript, reply_id: int, toks: list[str], rate: float) -> None:
    """The Chat screen's way (see `ChatScreen._ask`)."""
    batcher = TokenBatcher(lambda text: transcript.post_message(ReplyChunk(reply_id, text)))
    start = time.perf_counter()
    for i, tok in enumerate(toks):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        batcher.add(tok)
    batcher.flush()
    transcript.post_message(ReplyDone(reply_id, "done"))


NAIVE_BUDGET_S = 60.0  # re-rendering everything per token is quadratic: stop measuring it after this


def produce_naive(app: App, view: Markdown, toks: list[str], rate: float, shown: list[int]) -> None:
    """elia's way: a blocking call into the UI thread per token, re-rendering the whole reply."""
    text = ""
    start = time.perf_counter()
    for i, tok in enumerate(toks):
        if time.perf_counter() - start > NAIVE_BUDGET_S:
            break
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        text += tok
        app.call_from_thread(view.update, text)
        shown[0] = i + 1
    app.call_from_thread(app.post_message, ReplyDone(0, "done"))


async def measure(mode: str, toks: list[str], rate: float, idle_seconds: float) -> dict:
    app = BenchApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        transcript = app.query_one(Transcript)
        transcript.add_user("Tell me everything.")
        producer = None
        shown = [len(toks)]
        start = time.perf_counter()
        if mode == "workbench":
            reply_id = transcript.start_reply()
            producer = threading.Thread(target=produce_batched, args=(transcript, reply_id, toks, rate))
        elif mode == "naive":
            view = ReplyView("")
            await transcript.mount(view)
            transcript.anchor()
            producer = threading.Thread(target=produce_naive, args=(app, view, toks, rate, shown))
        if producer is not None:
            producer.start()
        end = time.monotonic() + idle_seconds
        n = 0
        def streaming() -> bool:
            if mode == "workbench" and not transcript.streaming and app.done_at is None:
                app.done_at = time.perf_counter()  # the transcript consumed the ReplyDone itself
            return app.done_at is None

        while streaming() if producer is not None else time.monotonic() < end:
            app.pressed_at, app.handled = time.perf_counter(), False
            app.post_message(events.Key("a", "a"))
            n += 1
            wait_until = time.monotonic() + 5.0
            while app.pressed_at is not None and time.monotonic() < wait_until:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.05)
        if producer is not None:
            await asyncio.get_running_loop().run_in_executor(None, producer.join)
        finished = (app.done_at or time.perf_counter()) - start
    lat = sorted(app.latencies)
    return {
        "keys": n, "answered": len(lat), "finished_s": finished, "tokens_shown": shown[0],
        "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"),
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan"),
        "peak_mb": rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=500.0, help="tokens per second")
    ap.add_argument("--skip-naive", action="store_true", help="skip the (slow) naive baseline")
    ap.add_argument("--mode", choices=["idle", "workbench", "naive"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    toks = tokens(args.tokens)
    stream_s = args.tokens / args.rate
    if args.mode:  # one measurement in this process, so its peak memory is its own
        print(json.dumps(asyncio.run(measure(args.mode, toks, args.rate, min(stream_s, 5.0)))))
        return

    def run(mode: str) -> dict:
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--tokens", str(args.tokens),
                              "--rate", str(args.rate)], check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    idle = run("idle")
    ours = run("workbench")
    naive = None if args.skip_naive else run("naive")

    print(f"chat view: {args.tokens:,} tokens at {args.rate:.0f}/s (a {stream_s:.0f} s stream), 80x24")

    def line(name: str, r: dict, stream: bool = True) -> str:
        done = f"reply on screen after {r['finished_s']:.1f} s  " if stream else ""
        if stream and r["tokens_shown"] < args.tokens:
            done = f"gave up after {r['finished_s']:.0f} s with {r['tokens_shown']}/{args.tokens} tokens shown  "
        return (f"  {name:<10} p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  ({r['answered']}/{r['keys']} keys)"
                f"  {done}peak RSS {r['peak_mb']:.0f} MB")

    print(line("idle", idle, stream=False))
    print(line("workbench", ours))
    if naive:
        print(line("naive", naive))
    print(f"  ratio workbench/idle: p50 x{ours['p50_ms'] / idle['p50_ms']:.2f}  p99 x{ours['p99_ms'] / idle['p99_ms']:.2f}")
    if naive:
        rate_naive = naive["tokens_shown"] / naive["finished_s"]
        rate_ours = args.tokens / ours["finished_s"]
        print(f"  ratio naive/workbench: p50 x{naive['p50_ms'] / ours['p50_ms']:.2f}  "
              f"p99 x{naive['p99_ms'] / ours['p99_ms']:.2f}  "
              f"tokens shown per second x{rate_naive / rate_ours:.2f}")


if __name__ == "__main__":
    main()
