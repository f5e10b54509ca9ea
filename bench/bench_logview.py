"""Log view under load: a file growing to 1,000,000 lines at 10,000 lines a second, keys pressed meanwhile.

Prints the input latency (key press to the repaint that shows it) p50/p99 and the peak memory of this
process, against a baseline measured in the same run: the same app on a file that does not grow.

A separate process writes the file (mmengine-like lines, ~150 bytes each) so that its work is not
counted; the app runs headless at 80x24 (Textual's real compositor, without the terminal write).
A key is pressed every 50 ms (up and down in turn, so each one moves the view); its latency runs from
the moment the key event is posted, as the terminal driver posts it, to the next frame after the
log view handled it.

    .venv/bin/python bench/bench_logview.py            # 1M lines at 10k/s (about two minutes)
    .venv/bin/python bench/bench_logview.py --lines 100000 --rate 10000
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from textual import events
from textual.app import App, ComposeResult

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.tui.widgets.logview import LogView  # noqa: E402

LINE = ("2026/11/23 10:37:44 - mmengine - INFO - Iter(train) [{i:>7}/1000000]  lr: 1.0000e-03  eta: 0:00:00  "
        "time: 0.0188  data_time: 0.0105  grad_norm: 1.2390  loss: 6.0306\n")

WRITER = r"""
import sys, time
path, total, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = sys.argv[4]
batch = max(1, rate // 100)  # a write every 10 ms
with open(path, "a", buffering=1 << 20) as f:
    start = time.monotonic()
    written = 0
    while written < total:
        n = min(batch, total - written)
        f.write("".join(line.format(i=written + k) for k in range(n)))
        f.flush()
        written += n
        delay = start + written / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
"""


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class BenchLogView(LogView):
    def action_scroll_up(self) -> None:
        super().action_scroll_up()
        self.app.handled()

    def action_scroll_down(self) -> None:
        super().action_scroll_down()
        self.app.handled()


class BenchApp(App):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.pressed_at: float | None = None
        self._handled = False
        self.latencies: list[float] = []

    def compose(self) -> ComposeResult:
        yield BenchLogView()

    def on_mount(self) -> None:
        view = self.query_one(BenchLogView)
        view.focus()
        view.follow(self.path)

    def handled(self) -> None:
        self._handled = True

    def _display(self, screen, renderable) -> None:
        if self._handled and self.pressed_at is not None:
            self.latencies.append(time.perf_counter() - self.pressed_at)
            self.pressed_at, self._handled = None, False
        super()._display(screen, renderable)


async def measure(path: Path, seconds: float | None, writer: subprocess.Popen | None, total: int) -> dict:
    app = BenchApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(BenchLogView)
        deadline = time.monotonic() + 10
        while view.line_count == 0 and time.monotonic() < deadline:
            await pilot.pause(0.01)
        rss_start = rss_mb()
        keys = ("up", "down")
        n = 0
        end = time.monotonic() + seconds if seconds else None
        while True:
            if end is not None and time.monotonic() >= end:
                break
            if writer is not None and writer.poll() is not None and view.line_count >= total:
                break
            app.pressed_at = time.perf_counter()
            app._handled = False
            app.post_message(events.Key(keys[n % 2], None))
            n += 1
            wait_until = time.monotonic() + 2.0
            while app.pressed_at is not None and time.monotonic() < wait_until:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.05)
        lines_seen = view.line_count
        indexed = len(view.index.ends)
    lat = sorted(app.latencies)
    return {
        "presses": n,
        "answered": len(lat),
        "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"),
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan"),
        "lines": lines_seen,
        "indexed": indexed,
        "rss_start_mb": rss_start,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=10_000, help="lines per second")
    ap.add_argument("--baseline-seconds", type=float, default=10.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        static = Path(tmp) / "static.log"
        static.write_text("".join(LINE.format(i=i) for i in range(1000)))
        base = asyncio.run(measure(static, args.baseline_seconds, None, 1000))
        base_peak = rss_mb()

        growing = Path(tmp) / "growing.log"
        growing.touch()
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(growing), str(args.lines), str(args.rate), LINE])
        started = time.monotonic()
        try:
            load = asyncio.run(measure(growing, None, writer, args.lines))
        finally:
            writer.kill()
            writer.wait()
        elapsed = time.monotonic() - started
        size_mb = growing.stat().st_size / 1e6
        peak = rss_mb()

    print(f"log view: {args.lines:,} lines at {args.rate:,}/s ({size_mb:.0f} MB) in {elapsed:.0f} s, 80x24")
    print(f"  baseline (static 1,000-line file): p50 {base['p50_ms']:.1f} ms  p99 {base['p99_ms']:.1f} ms  "
          f"({base['answered']}/{base['presses']} keys)  peak RSS {base_peak:.0f} MB")
    print(f"  growing file:                      p50 {load['p50_ms']:.1f} ms  p99 {load['p99_ms']:.1f} ms  "
          f"({load['answered']}/{load['presses']} keys)  peak RSS {peak:.0f} MB")
    print(f"  lines seen {load['lines']:,} (indexed {load['indexed']:,}, {load['indexed'] * 8 / 1e6:.1f} MB of offsets)")
    print(f"  ratio vs baseline: p50 x{load['p50_ms'] / base['p50_ms']:.2f}  p99 x{load['p99_ms'] / base['p99_ms']:.2f}  "
          f"peak memory x{peak / base_peak:.2f} (+{peak - base_peak:.0f} MB)")


if __name__ == "__main__":
    main()
