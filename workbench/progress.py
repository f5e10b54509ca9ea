"""Progress reporting for long work.

Core functions take an optional ``progress`` callback ``(done, total, label) -> None``; the CLI passes
a `Bar` (stderr, counts and eta), the TUI passes a function that posts a message to its progress widget.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

ProgressFn = Callable[[int, int, str], None]


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Bar:
    """A one-line progress bar on stderr: ``label [#####.....] 12/40 30% eta 00:14``.

    On a terminal it redraws in place (at most 10 times a second); elsewhere (CI logs, pipes) it prints
    a line at most every 10% so logs stay short. Callable, so it can be passed as a `ProgressFn`.
    """

    def __init__(self, label: str = "", total: int = 0, stream: TextIO | None = None, width: int = 24):
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.width = width
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int, label: str = "") -> None:
        self.update(done, total, label)

    def update(self, done: int, total: int | None = None, label: str | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if label:
            self.label = label
        self._draw()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def line(self) -> str:
        total = max(self.total, 1)
        frac = min(1.0, self.done / total)
        filled = int(frac * self.width)
        elapsed = time.monotonic() - self.start
        eta = (elapsed / self.done * (self.total - self.done)) if self.done else 0.0
        bar = "#" * filled + "." * (self.width - filled)
        return f"{self.label} [{bar}] {self.done}/{self.total} {frac:4.0%} eta {_fmt_eta(eta)}"

    def _draw(self, final: bool = False) -> None:
        now = time.monotonic()
        if self._tty:
            if final or now - self._last_draw >= 0.1 or self.done >= self.total:
                self.stream.write("\r\x1b[2K" + self.line())
                self.stream.flush()
                self._last_draw = now
        else:
            decile = int(10 * self.done / max(self.total, 1))
            if decile != self._last_decile or final:
                self._last_decile = decile
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self._draw(final=True)
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
