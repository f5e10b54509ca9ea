"""Compare runs (`C` on the Runs screen): their loss curves overlaid in one chart, one colour a run, and a table
that is the chart's legend (the run, its name, where it resumed from, its last and lowest loss).

The curves are the runs core's (`workbench.runs.curves.loss_curves`: scalars.json, a resumed run's parents
first), read in a thread worker, and again while one of the runs is still running.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from workbench.tui.errors import WorkerErrors
from workbench.tui.screens.runs_list import name_cell
from workbench.tui.widgets.chart import COLORS, Chart, Series

#: The table under the chart, its legend: (label, width), 76 columns with the cell padding.
COLUMNS = (("", 2), ("run", 6), ("name", 20), ("status", 8), ("iters", 7), ("last", 7), ("lowest", 12))


class CurvesLoaded(Message):
    def __init__(self, curves: list) -> None:
        super().__init__()
        self.curves = curves


def _loss(v: float | None) -> str:
    return f"{v:.4g}" if v is not None else "-"


class CompareRunsScreen(WorkerErrors, ModalScreen):
    """The loss curves of runs `run_ids` in one chart; Escape closes it."""

    HELP_TITLE = "Compare runs"
    DEFAULT_CSS = """
    CompareRunsScreen { background: $background; }
    CompareRunsScreen > Vertical { height: 1fr; }
    CompareRunsScreen #compare-title { height: 1; padding: 0 1; text-style: bold; background: $panel; }
    CompareRunsScreen #compare-chart { height: 1fr; min-height: 6; }
    CompareRunsScreen #compare-table { height: auto; max-height: 9; }
    """
    BINDINGS = [Binding("escape,q", "close", "Back to the runs", id="compare.close")]

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self.curves: list = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Compare {len(self.run_ids)} runs: training loss by iteration", id="compare-title")
            yield Chart("loss", x_label="iter", id="compare-chart")
            table: DataTable = DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
            for label, width in COLUMNS:
                table.add_column(label, width=width, key=label or "swatch")
            yield table
        yield Footer()

    def on_mount(self) -> None:
        self.load()
        self.set_interval(max(1.0, 4 * self.app.settings.poll_interval), self._reload_if_running)  # type: ignore[attr-defined]

    def _reload_if_running(self) -> None:
        if any(not c.run.status.ended for c in self.curves):
            self.load()

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False, description="Reading the losses")
    def load(self) -> None:
        from workbench.runs.curves import loss_curves

        self.post_message(CurvesLoaded(loss_curves(self.run_ids)))

    def on_curves_loaded(self, message: CurvesLoaded) -> None:
        self.curves = message.curves
        colors = [COLORS[i % len(COLORS)] for i in range(len(self.curves))]
        self.query_one(Chart).set_series([Series(f"{c.run.id} {c.run.name}", c.loss, color, c.iters)
                                          for c, color in zip(self.curves, colors, strict=True)])
        table = self.query_one(DataTable)
        table.clear()
        for c, color in zip(self.curves, colors, strict=True):
            run = c.run
            span = f"{c.iters[0]}–{c.iters[-1]}" if c.iters else "-"
            best = c.best
            table.add_row(Text("━━", style=color), run.id, name_cell(run, COLUMNS[2][1]), run.status.value, span, _loss(c.last),
                          f"{_loss(best[1])} @{best[0]}" if best else "-", key=run.id)

    def action_close(self) -> None:
        self.dismiss(None)
