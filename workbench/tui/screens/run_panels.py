"""The selected run's panels on the Runs screen: live metrics with charts, samples by iteration, checkpoints.

Each panel is fed parsed events (`workbench.runs.events`) by the screen, in batches; none of them reads
files or parses logs itself.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from workbench.runs.events import MetricsEvent, SampleEvent
from workbench.tui.widgets.chart import Chart, Series


def fmt_num(v: float | None, spec: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return format(v, spec)


def fmt_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class MetricsPanel(Vertical):
    """The latest logged metrics in one line, the loss chart and the lr chart."""

    DEFAULT_CSS = """
    MetricsPanel { height: 1fr; }
    MetricsPanel > #metrics-line { height: auto; }
    MetricsPanel > #loss-chart { height: 1fr; min-height: 4; }
    MetricsPanel > #lr-chart { height: 4; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.reset()

    def reset(self) -> None:
        self.iters: list[float] = []
        self.loss: list[float] = []
        self.lr: list[float] = []
        self.grad: list[float] = []
        self.last: MetricsEvent | None = None
        self.errors = 0

    def compose(self) -> ComposeResult:
        yield Static("no metrics yet", id="metrics-line")
        yield Chart("loss", x_label="iter", id="loss-chart")
        yield Chart("lr", x_label="iter", id="lr-chart")

    def clear(self) -> None:
        self.reset()
        self._redraw()

    def add(self, events: list[MetricsEvent]) -> None:
        for ev in events:
            if ev.mode != "train":
                continue
            if self.iters and ev.iter <= self.iters[-1]:  # a resumed run logs earlier iterations again
                cut = next(i for i, x in enumerate(self.iters) if x >= ev.iter)
                del self.iters[cut:], self.loss[cut:], self.lr[cut:], self.grad[cut:]
            self.iters.append(ev.iter)
            self.loss.append(ev.loss if ev.loss is not None else math.nan)
            self.lr.append(ev.lr if ev.lr is not None else math.nan)
            self.grad.append(ev.grad_norm if ev.grad_norm is not None else math.nan)
            self.last = ev
        if events:
            self._redraw()

    def _redraw(self) -> None:
        ev = self.last
        if ev is None:
            self.query_one("#metrics-line", Static).update("no metrics yet")
        else:
            parts = [
                f"iter {ev.iter}/{ev.max_iters}",
                f"loss {fmt_num(ev.loss)}",
                f"lr {fmt_num(ev.lr, '.2e')}",
                f"grad {fmt_num(ev.grad_norm, '.3g')}",
                f"eta {ev.eta or '-'}",
                f"{fmt_num(ev.time, '.2f')} s/it",
            ]
            if ev.memory is not None:
                parts.append(f"mem {ev.memory:.0f} MB")
            self.query_one("#metrics-line", Static).update("  ".join(parts))
        self.query_one("#loss-chart", Chart).set_series([Series("loss", self.loss, "cyan", self.iters)])
        self.query_one("#lr-chart", Chart).set_series([Series("lr", self.lr, "magenta", self.iters)])


class SamplePane(VerticalScroll):
    DEFAULT_CSS = """
    SamplePane { width: 1fr; height: 1fr; border: round $panel; padding: 0 1; }
    SamplePane:focus { border: round $accent; }
    SamplePane > .sample { margin: 0 0 1 0; }
    """


class SamplesPanel(Horizontal):
    """EvaluateChatHook samples, two iterations side by side (``[`` ``]`` move the left, ``{`` ``}`` the right)."""

    HELP_TITLE = "Samples tab (when a pane has the focus)"
    DEFAULT_CSS = """
    SamplesPanel { height: 1fr; }
    """
    BINDINGS = [
        Binding("left_square_bracket", "step('left', -1)", "Left: earlier", id="samples.left_earlier"),
        Binding("right_square_bracket", "step('left', 1)", "Left: later", id="samples.left_later"),
        Binding("left_curly_bracket", "step('right', -1)", "Right: earlier", id="samples.right_earlier"),
        Binding("right_curly_bracket", "step('right', 1)", "Right: later", id="samples.right_later"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.by_iter: dict[int, list[SampleEvent]] = {}
        self.left: int | None = None
        self.right: int | None = None
        self._pinned = {"left": False, "right": False}

    def compose(self) -> ComposeResult:
        yield SamplePane(id="samples-left", can_focus=True)
        yield SamplePane(id="samples-right", can_focus=True)

    def clear(self) -> None:
        self.by_iter.clear()
        self.left = self.right = None
        self._pinned = {"left": False, "right": False}
        self._show()

    def add(self, samples: list[SampleEvent]) -> None:
        for s in samples:
            group = self.by_iter.setdefault(s.iteration, [])
            # the hook samples at a save and right after it at the same iteration: keep one per input
            if not any(g.prompt == s.prompt and g.answer == s.answer for g in group):
                group.append(s)
        if not samples:
            return
        iters = sorted(self.by_iter)
        # Unless the user moved them, the right pane shows the newest iteration, the left the one before.
        if not self._pinned["right"]:
            self.right = iters[-1]
        if not self._pinned["left"]:
            self.left = iters[-2] if len(iters) > 1 else iters[0]
        self._show()

    @property
    def iterations(self) -> list[int]:
        return sorted(self.by_iter)

    def action_step(self, side: str, delta: int) -> None:
        iters = self.iterations
        if not iters:
            return
        current = getattr(self, side)
        i = iters.index(current) if current in iters else len(iters) - 1
        setattr(self, side, iters[max(0, min(len(iters) - 1, i + delta))])
        self._pinned[side] = True
        self._show()

    def _show(self) -> None:
        for side in ("left", "right"):
            pane = self.query_one(f"#samples-{side}", SamplePane)
            it = getattr(self, side)
            pane.border_title = f"iter {it}" if it is not None else "samples"
            pane.border_subtitle = "[ ]" if side == "left" else "{ }"
            pane.remove_children()
            if it is None:
                pane.mount(Static("no EvaluateChatHook samples yet", classes="sample"))
                continue
            blocks = []
            for s in self.by_iter.get(it, []):
                text = Text()
                text.append("Q ", style="bold")
                text.append((s.input or s.prompt).strip() + "\n")
                text.append("A ", style="bold green")
                text.append(s.answer.strip() or "(empty)")
                blocks.append(Static(text, classes="sample"))
            pane.mount_all(blocks)


class CheckpointsPanel(Vertical):
    """The run's checkpoints; the screen's keys act on the highlighted one."""

    DEFAULT_CSS = """
    CheckpointsPanel { height: 1fr; }
    CheckpointsPanel > DataTable { height: 1fr; }
    CheckpointsPanel > #ckpt-hint { height: 1; color: $text-muted; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.checkpoints: list = []

    def compose(self) -> ComposeResult:
        table: DataTable = DataTable(id="ckpt-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("iter", "size", "adapter", "")
        yield table
        yield Static("c convert  M merge  t chat with it  v evaluate", id="ckpt-hint")

    def show(self, checkpoints: list) -> None:
        table = self.query_one(DataTable)
        keep = self.selected.iteration if self.selected else None
        self.checkpoints = list(checkpoints)
        table.clear()
        for ck in self.checkpoints:
            table.add_row(
                str(ck.iteration), fmt_size(ck.size_bytes), "converted" if ck.adapter_path else "-",
                "last" if ck.is_last else "", key=str(ck.iteration),
            )
        if keep is not None and any(c.iteration == keep for c in self.checkpoints):
            table.move_cursor(row=table.get_row_index(str(keep)))

    @property
    def selected(self):
        table = self.query_one(DataTable)
        if not self.checkpoints or table.cursor_row is None or table.cursor_row >= len(self.checkpoints):
            return None
        return self.checkpoints[table.cursor_row]
