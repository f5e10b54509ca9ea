"""Following a training log by byte offset vs re-parsing the whole file, on a large mmengine log.

    .venv/bin/python bench/bench_log_follow.py [--lines 300000] [--new 1000] [--repeat 2]

Writes an mmengine-format log of --lines lines (metrics every iteration, EvaluateChatHook sample blocks and
a checkpoint line every 100 iterations, as XTuner writes them), lets a `LogFollower` catch up once, appends
--new lines, then measures, on the same file in the same run:
- follow: `LogFollower.poll()` from its stored offset (what the TUI and `workbench logs --follow` do);
- baseline: read the whole file and parse every line to get the new events (what a tool without an
  offset does on every refresh).
Time is the best of --repeat runs; peak memory is measured in a separate pass with tracemalloc (Python
allocations). The ratio is baseline / follow; it grows with the size of the log, the follow cost does not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.runs.logparse import LogFollower, LogParser  # noqa: E402

SAMPLE = ("2026/11/23 10:{m:02d}:{s:02d} - mmengine - INFO - Sample output:\n<|im_start|>user\n你是谁<|im_end|>\n"
          "<|im_start|>assistant\n我是Tutu的小助手<|im_end|>\n\n")


def log_lines(start_iter: int, n_lines: int, max_iters: int) -> str:
    """n_lines of log text, starting at iteration start_iter."""
    out, count, it = [], 0, start_iter
    while count < n_lines:
        it += 1
        m, s = divmod(it % 3600, 60)
        out.append(f"2026/11/23 10:{m % 60:02d}:{s:02d} - mmengine - INFO - Iter(train) [{it:>7}/{max_iters}]  "
                   f"lr: 2.0000e-04  eta: 1 day, 0:00:00  time: 0.4321  data_time: 0.0123  memory: 15872  "
                   f"grad_norm: 1.2345  loss: {1 + 1 / it:.4f}\n")
        count += 1
        if it % 100 == 0:
            out.append(f"2026/11/23 10:{m % 60:02d}:{s:02d} - mmengine - INFO - after_train_iter in EvaluateChatHook.\n")
            out.append(SAMPLE.format(m=m % 60, s=s) * 4)
            out.append(f"2026/11/23 10:{m % 60:02d}:{s:02d} - mmengine - INFO - Saving checkpoint at {it} iterations\n")
            count += 2 + 4 * 6
    return "".join(out)


def write_log(path: Path, n_lines: int, max_iters: int) -> int:
    """Write the log in blocks; return the last iteration written."""
    per_block = 100_000
    it = 0
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < n_lines:
            chunk = min(per_block, n_lines - written)
            text = log_lines(it, chunk, max_iters)
            f.write(text)
            written += text.count("\n")
            it += chunk  # close enough: iteration numbers only need to grow
    return it


def baseline(path: Path, new_lines: int) -> int:
    """Re-read and re-parse the whole file, keep the events of the last `new_lines` lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    parser = LogParser(str(path))
    keep_from = len(lines) - new_lines
    events = []
    for i, line in enumerate(lines):
        got = parser.feed(line)
        if i >= keep_from:
            events += got
    return len(events)


def measure(fn: Callable[[], int], repeat: int, reset: Callable[[], None]) -> tuple[float, float, int]:
    best = float("inf")
    n = 0
    for _ in range(repeat):
        reset()
        t = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t)
    reset()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak / 2**20, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=300_000,
                    help="size of the log (default 300,000 lines; --lines 1000000 for the million-line case)")
    ap.add_argument("--new", type=int, default=1000, help="lines appended after the follower caught up")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of each (the best counts)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "20261123_103744.log"
        t = time.perf_counter()
        last_iter = write_log(path, args.lines, 10**7)
        base_size = path.stat().st_size
        print(f"log: {args.lines:,} lines, {base_size / 2**20:.0f} MiB, written in {time.perf_counter() - t:.1f} s")

        follower = LogFollower(path)
        t = time.perf_counter()
        caught = 0
        while follower.behind:
            caught += len(follower.poll())
        print(f"first catch-up (once per follower): {caught:,} events in {time.perf_counter() - t:.2f} s")

        text = log_lines(last_iter + 1000, args.new, 10**7)
        new_lines = text.count("\n")
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
        appended = path.stat().st_size - base_size
        start = follower.offset

        def follow() -> int:
            return len(follower.poll())

        def rewind() -> None:
            follower.offset = start  # the parser state stays as it was after the catch-up

        f_time, f_mem, f_events = measure(follow, args.repeat, rewind)
        b_time, b_mem, b_events = measure(lambda: baseline(path, new_lines), args.repeat, lambda: None)
        assert f_events == b_events, (f_events, b_events)
        print(f"{new_lines:,} new lines ({appended / 1024:.0f} KiB), {f_events} events")
        print(f"  follow by offset : {f_time * 1000:9.2f} ms  peak {f_mem:8.2f} MiB")
        print(f"  re-parse the file: {b_time * 1000:9.2f} ms  peak {b_mem:8.2f} MiB")
        print(f"ratio (re-parse / follow): time {b_time / f_time:,.0f}x, memory {b_mem / max(f_mem, 1e-3):,.0f}x")


if __name__ == "__main__":
    main()
