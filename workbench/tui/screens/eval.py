"""The Eval screen: choose a run and eval sets, sweep its checkpoints with progress, then the forgetting
curve (identity, general, leak per checkpoint) as a chart and a table, the verdict, and each
checkpoint's replies beside the expected answers (Enter on a row).

The sweep, the scores and the verdict are the eval core's (`workbench.evals.run_sweep.sweep_run`); cancelling it
sets the `threading.Event` the sweep checks between batches.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, ProgressBar, Static

from workbench.tui.errors import WorkerErrors
from workbench.tui.modals import PickManyModal, PickModal, PromptModal
from workbench.tui.widgets.chart import Chart, Series
from workbench.tui.widgets.navbar import NavBar

if TYPE_CHECKING:
    from workbench.tui.app import WorkbenchApp


def _judged(row):
    """The identity the verdict judges (the languages the training data teaches; the others are transfer)."""
    return row.agg.identity_judged if row.agg.identity_judged is not None else row.agg.identity


SETS = [("identity", "identity: who the model says it is (and leak on general prompts)"),
        ("general", "general: facts the base knew (forgetting)"),
        ("general_en", "general_en: English questions for a real model (SmolLM2)")]


class SweepProgress(Message):
    def __init__(self, done: int, total: int, label: str) -> None:
        super().__init__()
        self.done, self.total, self.label = done, total, label


class SweepDone(Message):
    def __init__(self, run_id: str, report, expected: dict[str, list[str]]) -> None:
        super().__init__()
        self.run_id, self.report, self.expected = run_id, report, expected


class CachedReport(Message):
    """The report of the chosen target from the reply cache alone (no model loaded), for `key`."""

    def __init__(self, key: tuple, report, expected: dict[str, list[str]]) -> None:
        super().__init__()
        self.key, self.report, self.expected = key, report, expected


class RunsForEval(Message):
    def __init__(self, runs: list) -> None:
        super().__init__()
        self.runs = runs


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


def lost_of(row) -> str:
    """ "9/169" (lost of the base's known general prompts), "-" without a paired base row."""
    p = row.agg.paired
    return f"{p['lost']}/{p['base_known']}" if p and p.get("n") else "-"


class EvalScreen(WorkerErrors, Screen):
    if TYPE_CHECKING:  # the app is the workbench's (its settings, report_error...)
        app = getters.app(WorkbenchApp)

    HELP_TITLE = "Eval screen"

    BINDINGS = [
        Binding("o", "choose_run", "Run", id="eval.run"),
        Binding("e", "choose_sets", "Eval sets", id="eval.sets"),
        Binding("i", "iterations", "Checkpoints", id="eval.iterations"),
        Binding("v", "variables", "Names", id="eval.variables"),
        Binding("g", "start", "Sweep", id="eval.start"),
        Binding("x", "cancel", "Cancel sweep", show=False, id="eval.cancel"),
        Binding("enter", "replies", "Replies", show=False, id="eval.replies"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.run_id: str | None = None
        self.run_label = ""
        self.sets = ["identity", "general"]  # general_en is chosen for a real model (the real world's demo does)
        self.iters: str | None = None  # "10,30,last": only these checkpoints (None: all)
        self.variables: dict[str, str] = {}  # {name}, {org} of the identity answers (default: the run's recipe)
        self.report = None
        self.rows: list = []  # the rows shown (the main template's), in table order
        self.expected: dict[str, list[str]] = {}
        self._runs: list = []
        self._cancel = threading.Event()  # set: the running sweep stops

    def compose(self) -> ComposeResult:
        yield NavBar("eval")
        yield Static("", id="eval-target")
        with Vertical(id="eval-progress-box"):
            yield ProgressBar(id="eval-progress", show_eta=True)
            yield Static("", id="eval-progress-label")
        yield Chart("forgetting curve", lo=0.0, hi=1.0, id="curve")
        table: DataTable = DataTable(id="eval-table", cursor_type="row", zebra_stripes=True)
        # "lost" is the paired count against the base (9/169: lost 9 of the 169 the base knew), the evidence
        # behind a "forgetting" flag; the core computes it, the screen only shows it.
        table.add_columns("checkpoint", "identity", "general", "lost", "leak", "loop", "flags")
        yield table
        with VerticalScroll(id="verdict-box"):
            yield Static("", id="verdict")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#eval-progress-box").display = False
        self._list_runs()
        self._show_target()

    def on_unmount(self) -> None:
        self._cancel.set()

    def palette_commands(self) -> list:
        return [
            ("eval: Choose the run to sweep…", self.action_choose_run, "Its checkpoints become the curve"),
            ("eval: Choose eval sets…", self.action_choose_sets, "identity, general"),
            ("eval: Start the sweep", self.action_start, "Score base + every checkpoint"),
            ("eval: Show the selected checkpoint's replies", self.action_replies, "Beside the expected answers"),
        ]

    def open_request(self, request) -> None:
        """Choose the run (and checkpoints, names, sets) of an `OpenEval` request; sweep at once if it says so."""
        self.run_id = self.run_label = str(request.run)
        self.variables = dict(request.variables or self.variables)
        self.iters = request.iters
        if request.evalsets:  # the demo's world says which sets fit its model
            self.sets = list(request.evalsets)
        self._list_runs()
        self._target_changed(probe=not request.start)
        if request.start:
            self.action_start()

    def _show_target(self) -> None:
        run = f"run {self.run_label}" if self.run_id else "no run chosen (o)"
        names = " ".join(f"{k}={v}" for k, v in self.variables.items())
        self.query_one("#eval-target", Static).update(Text.assemble(
            (run, "bold"), ("  ckpts: ", "dim"), self.iters or "all", ("  sets: ", "dim"), ", ".join(self.sets),
            ("  " + names if names else "", "dim")))

    @work(thread=True, exclusive=True, group="eval-runs", exit_on_error=False, description="Listing runs")
    def _list_runs(self) -> None:
        from workbench.runs import registry

        self.post_message(RunsForEval(registry.list_runs()))

    def on_runs_for_eval(self, message: RunsForEval) -> None:
        self._runs = list(reversed(message.runs))
        wanted = self.run_id or self.app.select_run
        for run in self._runs:
            if wanted in (run.id, run.name) or (self.run_id is None and wanted is None):
                changed = run.id != self.run_id
                self.run_id, self.run_label = run.id, f"{run.id} ({run.name})"
                if changed:
                    self._target_changed()
                break
        self._show_target()

    def action_choose_run(self) -> None:
        if not self._runs:
            self.notify("no runs yet (start one on the Runs screen)", severity="warning")
            self._list_runs()
            return
        options = [(r.id, f"{r.id}  {r.name}  {r.status}") for r in self._runs]

        def chosen(run_id: str | None) -> None:
            if run_id:
                run = next(r for r in self._runs if r.id == run_id)
                changed = run.id != self.run_id
                self.run_id, self.run_label = run.id, f"{run.id} ({run.name})"
                self._show_target()
                if changed:
                    self._target_changed()

        self.app.push_screen(PickModal("Run to sweep", options), chosen)

    def action_choose_sets(self) -> None:
        def chosen(sets: list[str] | None) -> None:
            if sets:
                self.sets = sets
                self._show_target()
                self._target_changed()

        options = [(s, label, s in self.sets) for s, label in SETS]
        self.app.push_screen(PickManyModal("Eval sets", options, least=1), chosen)

    def action_iterations(self) -> None:
        self.app.push_screen(PromptModal("Checkpoints to score (empty: all)", self.iters or "", "10,30,last",
                                         "Iterations separated by commas; 'last' is the newest checkpoint"),
                             self._iterations)

    def _iterations(self, text: str | None) -> None:
        if text is not None:
            self.iters = text.replace(" ", "") or None
            self._show_target()
            self._target_changed()

    def action_variables(self) -> None:
        current = " ".join(f"{k}={v}" for k, v in self.variables.items())
        self.app.push_screen(PromptModal("Identity answer variables", current, "name=Tutu org=Workbench Lab",
                                         "Fill {name} and {org} in the identity answers (default: the run's "
                                         "dataset recipe)"), self._variables)

    def _variables(self, text: str | None) -> None:
        if text is None:
            return
        from workbench.evals.run_sweep import parse_variables

        try:
            self.variables = parse_variables(text)
        except Exception as exc:  # noqa: BLE001
            self.app.report_error(exc, "Variables")
        self._show_target()
        self._target_changed()

    # -- a new target: clear what belonged to the previous one, show its cached report at once ----------
    def _key(self) -> tuple:
        return (self.run_id, tuple(self.sets), self.iters, tuple(sorted(self.variables.items())))

    def _target_changed(self, probe: bool = True) -> None:
        """The run (or sets, checkpoints, names) changed: the curve, table and verdict shown belonged to the
        previous target, so they go; if the reply cache already holds the new one, it is shown at once."""
        self.report, self.rows, self.expected = None, [], {}
        curve = self.query_one("#curve", Chart)
        curve.x_note = ""
        curve.set_series([])
        self.query_one("#eval-table", DataTable).clear()
        self.query_one("#verdict", Static).update("")
        if probe and self.run_id is not None:
            self._load_cached(self._key(), self.run_id, list(self.sets), dict(self.variables), self.iters)

    @work(thread=True, exclusive=True, group="eval-cached", exit_on_error=False, description="Reading cached replies")
    def _load_cached(self, key: tuple, run_id: str, sets: list[str], variables: dict, iters: str | None) -> None:
        from workbench.evals.run_sweep import cached_sweep

        found = cached_sweep(run_id, sets, self.app.settings, variables, iters)
        if found is not None:
            self.post_message(CachedReport(key, *found))

    def on_cached_report(self, message: CachedReport) -> None:
        # Only for the target still chosen, and never over a sweep's own result.
        if message.key == self._key() and self.report is None:
            self.show_report(message.report, message.expected)

    def action_start(self) -> None:
        if self.run_id is None:
            self.notify("choose a run first (o)", severity="warning")
            return
        box = self.query_one("#eval-progress-box")
        box.display = True
        self.query_one("#eval-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#eval-progress-label", Static).update("loading…")
        self._cancel.set()  # a sweep still running for the previous target stops
        self._cancel = threading.Event()
        self._sweep(self.run_id, list(self.sets), dict(self.variables), self.iters, self._cancel)

    @work(thread=True, exclusive=True, group="eval-sweep", exit_on_error=False, description="Sweeping")
    def _sweep(self, run_id: str, sets: list[str], variables: dict[str, str], iters: str | None,
               cancel: threading.Event) -> None:
        from workbench.evals.run_sweep import sweep_run
        from workbench.evals.sweep import SweepCancelled

        def progress(done: int, total: int, label: str) -> None:
            self.post_message(SweepProgress(done, total, label))

        try:
            report, expected = sweep_run(run_id, sets, progress, self.app.settings, variables, iters, cancel)
        except SweepCancelled:
            return
        finally:
            self.post_message(SweepProgress(-1, 0, ""))
        self.post_message(SweepDone(run_id, report, expected))

    def on_sweep_progress(self, message: SweepProgress) -> None:
        if message.done < 0:  # the sweep ended (or failed): hide the bar
            self.query_one("#eval-progress-box").display = False
            return
        self.query_one("#eval-progress", ProgressBar).update(total=message.total or None, progress=message.done)
        self.query_one("#eval-progress-label", Static).update(message.label)

    def action_cancel(self) -> None:
        running = any(w.node is self and w.group == "eval-sweep" and w.is_running for w in self.workers)
        self._cancel.set()  # stops the sweep at its next step; what it generated stays cached
        if running:
            self.notify("sweep cancelled (replies generated so far are cached)")
            self.query_one("#eval-progress-box").display = False

    def on_sweep_done(self, message: SweepDone) -> None:
        self.query_one("#eval-progress-box").display = False
        self.show_report(message.report, message.expected)
        if self.app.demo_flow is not None:
            self.app.demo_flow.sweep_done(message.run_id, message.report)

    def show_report(self, report, expected: dict[str, list[str]] | None = None) -> None:
        """Show a finished report: curve, table, verdict."""
        self.report, self.expected = report, expected or {}
        template = report.meta.get("template")
        rows = [r for r in report.rows if template is None or r.template == template] or report.rows
        xs = list(range(len(rows)))
        curve = self.query_one("#curve", Chart)
        curve.x_note = f"{rows[0].name}…{rows[-1].name}" if len(rows) > 1 else ""
        curve.set_series([
            Series("identity", [_judged(r) for r in rows], "green", xs),
            Series("general", [r.agg.general for r in rows], "cyan", xs),
            Series("leak", [r.agg.leak for r in rows], "red", xs),
        ])
        verdict = report.verdict
        table = self.query_one("#eval-table", DataTable)
        table.clear()
        for r in rows:
            flags = ", ".join(verdict.flags.get(r.name, [])) if verdict else ""
            name = Text(r.name + (" ★" if verdict and verdict.recommended == r.name else ""),
                        style="bold green" if verdict and verdict.recommended == r.name else "")
            table.add_row(name, pct(_judged(r)), pct(r.agg.general), lost_of(r), pct(r.agg.leak),
                          pct(r.agg.loop), flags, key=r.name)
        self.rows = rows
        if verdict is not None:
            head = f"verdict: ship {verdict.recommended}" if verdict.recommended else f"verdict: {verdict.status}"
            self.query_one("#verdict", Static).update(Text.assemble((head, "bold"), "  " + verdict.explanation))
        for w in report.warnings:
            self.notify(w, severity="warning", timeout=6)

    def action_replies(self) -> None:
        if self.report is None:
            return
        table = self.query_one("#eval-table", DataTable)
        if table.cursor_row is None or table.cursor_row >= len(self.rows):
            return
        self.app.push_screen(RepliesScreen(self.rows[table.cursor_row], self.expected))

    @on(DataTable.RowSelected, "#eval-table")
    def _row_selected(self) -> None:
        self.action_replies()


def _ok(s) -> bool:
    """A reply is fine when it passes (or, without a reference answer, still gives the base's) and does not leak."""
    return bool(s.passed if s.gold else s.retained is not False) and not s.leak


class RepliesScreen(ModalScreen):
    """One checkpoint's replies, each under its prompt and the expected answer; failures first."""

    DEFAULT_CSS = """
    RepliesScreen { align: center middle; }
    RepliesScreen > Vertical { width: 100%; height: 100%; border: thick $accent; background: $surface; }
    RepliesScreen #replies-title { height: 1; text-style: bold; }
    RepliesScreen VerticalScroll { height: 1fr; }
    RepliesScreen .reply-item { margin: 0 0 1 0; }
    """
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="replies.close"),
        Binding("f", "toggle_failed", "Failures only", id="replies.failed"),
    ]

    def __init__(self, row, expected: dict[str, list[str]]) -> None:
        super().__init__()
        self.row, self.expected = row, expected
        self.failed_only = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="replies-title")
            yield VerticalScroll(id="replies")
        yield Footer()

    def on_mount(self) -> None:
        self._fill()

    def _fill(self) -> None:
        items = sorted(self.row.items, key=lambda s: (_ok(s), s.kind, s.id))
        shown = [s for s in items if not (self.failed_only and _ok(s))]
        failed = sum(1 for s in items if not _ok(s))
        self.query_one("#replies-title", Static).update(
            f"{self.row.name}: {failed} of {len(items)} failed" + ("  (failures only)" if self.failed_only else ""))
        box = self.query_one("#replies", VerticalScroll)
        box.remove_children()
        box.mount_all([Static(self._item(s), classes="reply-item") for s in shown])
        box.focus()

    def _item(self, s) -> Text:
        ok = _ok(s)
        mark = ("✓ ", "green") if ok else (("leak " if s.leak else "loop " if s.loop else "✗ "), "bold red")
        expected = s.matched or " | ".join(self.expected.get(s.id, [])[:3]) or "-"
        if not s.gold:
            expected = "(no reference answer: judged by whether it still gives the base's answer)"
        # "lost" (the base knew it) and "never-knew" (the base failed too) tell forgetting from ignorance.
        note = f"  [{s.kind}{', ' + s.change if s.change else ''}]\n"
        if s.leak and s.leak_span:
            note = f"  [{s.kind}, leak: {s.leak_span}]\n"
        return Text.assemble(mark, (s.prompt.strip(), "bold"), (note, "dim"),
                             ("  expected: ", "dim"), expected + "\n", ("  reply:    ", "dim"),
                             (s.response.strip() or "(empty)", "" if ok else "red"))

    def action_toggle_failed(self) -> None:
        self.failed_only = not self.failed_only
        self._fill()

    def action_close(self) -> None:
        self.dismiss(None)
