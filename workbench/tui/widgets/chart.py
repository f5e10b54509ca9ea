"""A line chart drawn with Unicode braille dots (2x4 dots a cell): loss and lr, forgetting curves.

`plot()` is a pure function (values in, rows of cells out) so it can be tested without a terminal; the
`Chart` widget adds a y axis, a legend and colours, and redraws only when its data or size changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

BRAILLE = 0x2800
# bit of the dot at (column dx 0..1, row dy 0..3 from the top) in a braille cell
DOT = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
COLORS = ("cyan", "magenta", "yellow", "green", "red")


@dataclass
class Series:
    name: str
    values: list[float]
    color: str = ""
    #: x positions (e.g. iterations); default 0..n-1. Series of one chart share the x range.
    xs: Sequence[float] | None = None


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def value_range(series: list[Series], lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
    vals = [v for s in series for v in _finite(s.values)]
    if not vals:
        return (0.0, 1.0)
    lo = min(vals) if lo is None else lo
    hi = max(vals) if hi is None else hi
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi)) or hi - lo < 1e-300:  # flat (a constant lr): an axis around it
        v = (lo + hi) / 2
        lo, hi = (v - abs(v), v + abs(v)) if v else (-1.0, 1.0)  # 3e-03 is drawn mid-way between 0 and 6e-03
    return lo, hi


def plot(series: list[Series], width: int, height: int, lo: float, hi: float) -> list[list[tuple[str, int]]]:
    """Rows (top first) of ``(character, series index or -1)`` cells drawing each series as a line."""
    width, height = max(1, width), max(1, height)
    bits = [[0] * width for _ in range(height)]
    owner = [[-1] * width for _ in range(height)]
    dots_x, dots_y = width * 2, height * 4
    all_x = [x for s in series for x in (s.xs if s.xs is not None else range(len(s.values)))]
    if not all_x:
        return [[(" ", -1)] * width for _ in range(height)]
    x0, x1 = min(all_x), max(all_x)
    span_x = (x1 - x0) or 1

    def dot(px: int, py: int, k: int) -> None:
        px, py = min(max(px, 0), dots_x - 1), min(max(py, 0), dots_y - 1)
        cy, cx = py // 4, px // 2
        bits[cy][cx] |= DOT[py % 4][px % 2]
        owner[cy][cx] = k

    for k, s in enumerate(series):
        xs = s.xs if s.xs is not None else list(range(len(s.values)))
        prev: tuple[int, int] | None = None
        for x, v in zip(xs, s.values, strict=False):
            if v is None or not math.isfinite(v):
                prev = None
                continue
            px = round((x - x0) / span_x * (dots_x - 1))
            py = round((hi - min(max(v, lo), hi)) / (hi - lo) * (dots_y - 1))
            if prev is not None:  # join to the previous point so the line has no gaps
                (ax, ay), steps = prev, max(abs(px - prev[0]), abs(py - prev[1]), 1)
                for i in range(1, steps):
                    dot(ax + round((px - ax) * i / steps), ay + round((py - ay) * i / steps), k)
            dot(px, py, k)
            prev = (px, py)
    return [[(chr(BRAILLE + b) if b else " ", owner[y][x]) for x, b in enumerate(row)] for y, row in enumerate(bits)]


def _label(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000 or a < 0.01:
        return f"{v:.0e}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}" if a < 10 else f"{v:.1f}"


class Chart(Widget):
    """Lines of one or more series with a y axis and a one-line legend."""

    DEFAULT_CSS = """
    Chart { height: 8; min-height: 4; }
    """

    title: reactive[str] = reactive("")

    def __init__(self, title: str = "", *, lo: float | None = None, hi: float | None = None, x_label: str = "",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.set_reactive(Chart.title, title)
        self.series: list[Series] = []
        self.lo, self.hi = lo, hi
        self.x_label = x_label  # the x axis's name ("iter"): the legend ends with its range
        self.x_note = ""  # or with this text, when the x values are positions (the eval curve: "base…iter_300")

    def set_series(self, series: list[Series]) -> None:
        """Replace the data (values are copied: the caller may keep appending to its lists)."""
        self.series = [
            Series(s.name, list(s.values), s.color or COLORS[i % len(COLORS)], list(s.xs) if s.xs else None)
            for i, s in enumerate(series)
        ]
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size
        lo, hi = value_range(self.series, self.lo, self.hi)
        legend = Text(self.title + ("  " if self.title else ""), style="bold", no_wrap=True, overflow="ellipsis")
        for s in self.series:
            last = next((v for v in reversed(s.values) if v is not None and math.isfinite(v)), None)
            legend.append("━ ", style=s.color)
            legend.append(f"{s.name} {_label(last) if last is not None else '-'}  ")
        xs = [x for s in self.series if s.xs for x, v in zip(s.xs, s.values, strict=False)
              if v is not None and math.isfinite(v)]
        if self.x_note:
            legend.append(self.x_note, style="dim")
        elif self.x_label and xs:
            legend.append(f"{self.x_label} {min(xs):g}–{max(xs):g}", style="dim")
        out = Text(no_wrap=True, overflow="crop")
        out.append_text(legend)
        rows = max(1, height - 1)
        axis = max(len(_label(lo)), len(_label(hi))) + 1
        if not any(_finite(s.values) for s in self.series):
            out.append("\n" + "(no data yet)".center(max(0, width)), style="dim")
            return out
        cells = plot(self.series, max(1, width - axis - 1), rows, lo, hi)
        for y, row in enumerate(cells):
            label = _label(hi) if y == 0 else _label(lo) if y == rows - 1 else ""
            out.append("\n" + label.rjust(axis) + "┤" if label else "\n" + " " * axis + "│", style="dim")
            for ch, k in row:
                out.append(ch, style=self.series[k].color if k >= 0 else "")
        return out
