"""The Runs screen: every run with status, progress and eta; the selected run's metrics, log, samples and
checkpoints; start (the start form: config, name, work dir, hyperparameters, warnings), stop, resume (each
after a confirmation); checkpoint actions. The list's own actions (filter, mark, compare, delete, rename) are
in `runs_list.py`.

All file and process work is the runs core's (`workbench.runs`), called from thread workers; the screen
only turns their results (messages) into widgets.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane, Tabs

from workbench.runs.follow import LatestMetrics
from workbench.runs.model import RunStatus
from workbench.tui.errors import WorkerErrors
from workbench.tui.modals import ConfirmModal, PromptModal
from workbench.tui.navigation import OpenChat, OpenEval
from workbench.tui.screens.run_panels import CheckpointsPanel, MetricsPanel, SamplesPanel
from workbench.tui.screens.runs_list import COLUMNS, FilterBar, RunsListActions, RunsTable, row_cells
from workbench.tui.widgets.logview import LogPanel
from workbench.tui.widgets.navbar import NavBar

if TYPE_CHECKING:
    from workbench.tui.app import WorkbenchApp

EMPTY_HINT = ("No runs yet. n: start one from a config (tiny_cpu_lora.py trains on this CPU in minutes); "
              "a run started with plain `xtuner train`: `workbench import WORK_DIR`.")


class RunsListed(Message):
    def __init__(self, runs: list, latest: dict) -> None:
        super().__init__()
        self.runs, self.latest = runs, latest  # latest: run id -> its last train MetricsEvent


class RunEvents(Message):
    """A batch of parsed events of run `run_id` (from its `RunFollower`)."""

    def __init__(self, run_id: str, events: list, log_path: str | None) -> None:
        super().__init__()
        self.run_id, self.events, self.log_path = run_id, events, log_path


class CheckpointsListed(Message):
    def __init__(self, run_id: str, checkpoints: list) -> None:
        super().__init__()
        self.run_id, self.checkpoints = run_id, checkpoints


class Done(Message):
    """A long action finished: tell the user, refresh what it changed."""

    def __init__(self, text: str, refresh_checkpoints: bool = False) -> None:
        super().__init__()
        self.text, self.refresh_checkpoints = text, refresh_checkpoints


#: The tabs: (pane id, title, the binding id of its key). Titles carry their key, which follows the keymap.
TABS = (("tab-metrics", "Metrics", "runs.tab_metrics"), ("tab-log", "Log", "runs.tab_log"),
        ("tab-samples", "Samples", "runs.tab_samples"), ("tab-checkpoints", "Checkpoints", "runs.tab_checkpoints"))


class RunsScreen(RunsListActions, WorkerErrors, Screen):
    if TYPE_CHECKING:  # the app is the workbench's (its settings, report_error...)
        app = getters.app(WorkbenchApp)

    HELP_TITLE = "Runs screen"

    BINDINGS = [
        Binding("n", "new_run", "New run", id="runs.new"),
        Binding("s", "stop_run", "Stop", id="runs.stop"),
        Binding("r", "resume_run", "Resume", id="runs.resume"),
        Binding("slash", "filter", "Filter", id="runs.filter"),
        Binding("f", "cycle_status", "Status filter: all, running, ended", show=False, id="runs.status_filter"),
        Binding("C", "compare", "Compare", id="runs.compare"),
        Binding("d", "delete_run", "Delete the run and its files", show=False, id="runs.delete"),
        Binding("R", "rename_run", "Rename the run", show=False, id="runs.rename"),
        Binding("m", "show_tab('tab-metrics')", "Metrics", show=False, id="runs.tab_metrics"),
        Binding("l", "show_tab('tab-log')", "Log", show=False, id="runs.tab_log"),
        Binding("a", "show_tab('tab-samples')", "Samples", show=False, id="runs.tab_samples"),
        Binding("k", "show_tab('tab-checkpoints')", "Checkpoints", show=False, id="runs.tab_checkpoints"),
        Binding("o", "toggle_log_source", "Log file", show=False, id="runs.log_source"),
        Binding("c", "convert", "Convert", show=False, id="runs.ckpt_convert"),
        Binding("M", "merge", "Merge", show=False, id="runs.ckpt_merge"),
        Binding("t", "chat_checkpoint", "Chat", show=False, id="runs.ckpt_chat"),
        Binding("v", "eval_checkpoint", "Evaluate", show=False, id="runs.ckpt_eval"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list = []
        self.latest: dict = {}
        self.selected: str | None = None
        self.follow_log: str | None = None  # the file the log view shows
        self.log_source = "console"  # or "mmengine"
        self._mmengine_log: str | None = None
        # Progress, loss and eta of every run for the list (the runs core's tails of their logs); the
        # selected run's come from its own follower, which the list shares (`_follow`).
        self._metrics: LatestMetrics | None = None  # made by the first listing
        self._metrics_lock = threading.Lock()  # an earlier listing thread may still be finishing
        self._follow_cancel = threading.Event()  # set: the selected run's follower stops
        self._pending_select: str | None = None  # a run just started or resumed: selected once it is listed

    def compose(self) -> ComposeResult:
        yield NavBar("runs")
        yield FilterBar(id="runs-filter-bar")
        table = RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        # Fixed widths (78 columns in all): live values never make the columns jump, and the header never
        # lags behind re-measured rows.
        for label, width in COLUMNS:
            table.add_column(label, width=width, key=label)
        yield table
        titles = {pane: self._tab_title(title, binding_id) for pane, title, binding_id in TABS}
        with TabbedContent(id="run-tabs"):
            with TabPane(titles["tab-metrics"], id="tab-metrics"):
                yield MetricsPanel(id="metrics")
            with TabPane(titles["tab-log"], id="tab-log"):
                yield LogPanel(max_lines=self.app.settings.log_max_lines, id="log")
            with TabPane(titles["tab-samples"], id="tab-samples"):
                yield SamplesPanel(id="samples")
            with TabPane(titles["tab-checkpoints"], id="tab-checkpoints"):
                yield CheckpointsPanel(id="checkpoints")
        yield Footer()

    def _tab_title(self, title: str, binding_id: str) -> str:
        """``Metrics m`` (markup): the tab's key beside its name, as remapped in settings.toml."""
        from textual.markup import escape

        key = next(b.key for b in self.BINDINGS if isinstance(b, Binding) and b.id == binding_id)
        key = self.app._keymap.get(binding_id, key).split(",")[0]
        return f"{title} [b u]{escape(self.app.get_key_display(Binding(key, '')))}[/]"

    def on_mount(self) -> None:
        # The tab strip takes no focus: m l a k pick a tab, and Tab goes from the runs list straight into
        # the tab's content (the checkpoints table, the log) instead of stopping on the strip.
        self.query_one(Tabs).can_focus = False
        self.refresh_runs()
        self.set_interval(max(0.2, self.app.settings.poll_interval), self.refresh_runs)
        self.query_one("#runs-table").focus()

    def on_unmount(self) -> None:
        self._follow_cancel.set()
        with self._metrics_lock:
            if self._metrics is not None:
                self._metrics.close()

    def palette_commands(self) -> list:
        return [
            ("runs: Start a run from a config…", self.action_new_run, "Inspect a config, then start it detached"),
            ("runs: Stop the selected run", self.action_stop_run, "SIGINT, then SIGTERM, then SIGKILL"),
            ("runs: Resume the selected run", self.action_resume_run, "From its last checkpoint"),
            ("runs: Convert the selected checkpoint", self.action_convert, "iter_N.pth to a PEFT adapter folder"),
            ("runs: Merge the selected checkpoint", self.action_merge, "Adapter merged into its base model"),
            ("runs: Chat with the selected checkpoint", self.action_chat_checkpoint, "Open Chat on it"),
            ("runs: Evaluate the selected run", self.action_eval_checkpoint, "Open Eval on this run"),
            ("runs: Filter the runs list…", self.action_filter, "By id, name, config; status:running, status:ended"),
            ("runs: Status filter (all, running, ended)", self.action_cycle_status, "Each time: the next status"),
            ("runs: Mark / unmark the selected run", self.query_one(RunsTable).action_toggle_mark,
             "Marked runs are compared together (space in the list)"),
            ("runs: Compare runs' loss curves", self.action_compare, "The marked runs, or choose them"),
            ("runs: Delete the selected run…", self.action_delete_run, "With its files, after naming them; "
                                                                         "never a running run"),
            ("runs: Rename the selected run…", self.action_rename_run, "Its name in the registry"),
        ]

    # -- the runs list ------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False, description="Listing runs")
    def refresh_runs(self) -> None:
        from workbench.runs import registry

        runs = registry.list_runs()
        self.post_message(RunsListed(runs, self._latest_metrics(runs)))

    def _latest_metrics(self, runs: list) -> dict:
        """The last logged train metrics of every run; a running selected run's log is its follower's alone."""
        selected = self.selected
        with self._metrics_lock:
            if self._metrics is None:
                self._metrics = LatestMetrics()
            return self._metrics.update(runs, followed={selected} if selected else set())

    def on_runs_listed(self, message: RunsListed) -> None:
        self.runs = message.runs
        self.latest = message.latest
        self.show_rows()

    def show_rows(self) -> None:
        """The rows the filter lets through, newest first; the selection kept when it is still shown."""
        table = self.query_one(RunsTable)
        by_id = {r.id: r for r in self.runs}
        metrics = self.query_one(MetricsPanel).last
        wanted = self.selected or self.app.select_run
        if self._pending_select in by_id:
            wanted, self._pending_select = self._pending_select, None
        rows = table.shown_runs(self.runs)
        shown = [r.id for r in rows]
        rebuilt = [str(k.value) for k in table.rows] != shown
        if rebuilt:
            table.clear()
            for run in rows:
                table.add_row(*self._cells(run, metrics), key=run.id)
        else:
            for run in rows:
                self._update_row(table, run, metrics)
        if wanted and wanted not in by_id and self.app.select_run == wanted:
            wanted = next((r.id for r in self.runs if r.name == wanted or r.id.startswith(wanted)), None)
        if not self.runs:  # a first start: say how to get a run rather than show empty panels
            self.query_one("#metrics-line", Static).update(EMPTY_HINT)
        if rows and (wanted is None or wanted not in shown):
            wanted = rows[0].id
        if wanted is not None and wanted in shown and (wanted != self.selected or rebuilt):
            table.move_cursor(row=table.get_row_index(wanted))
            if wanted != self.selected:
                self._select(wanted)
        self.show_filter_bar(len(rows))

    def done(self, text: str) -> None:
        """From a worker: tell the user `text`, list the runs again."""
        self.post_message(Done(text))

    def _update_row(self, table: DataTable, run, metrics) -> None:
        # Only the cells that changed: every update repaints the row, and most polls change nothing.
        for col, cell in zip(table.columns, self._cells(run, metrics), strict=True):
            if table.get_cell(run.id, col) != cell:
                table.update_cell(run.id, col, cell)

    def _cells(self, run, metrics) -> tuple:
        live = metrics if run.id == self.selected and metrics is not None else self.latest.get(run.id)
        return row_cells(run, live, run.id in self.query_one(RunsTable).marked)

    @on(DataTable.RowHighlighted, "#runs-table")
    def _row(self, event: DataTable.RowHighlighted) -> None:
        # Only the row under the cursor now: a rebuilt table (a filter typed) highlights its first row on the way.
        if event.row_key is not None and event.row_key.value != self.selected \
                and event.row_key.value == self.query_one(RunsTable).cursor_key:
            self._select(str(event.row_key.value))

    def _select(self, run_id: str) -> None:
        self.selected = run_id
        self.query_one(MetricsPanel).clear()
        self.query_one(SamplesPanel).clear()
        self.query_one(CheckpointsPanel).show([])
        self._mmengine_log = None
        run = self.run
        if run is None:
            return
        # An imported run has no console capture: its mmengine log is all there is.
        console = str(run.stdout_path) if not run.imported else None
        self._set_log(console if self.log_source == "console" and console else run.log_path)
        self._follow_cancel.set()  # the previous selection's follower stops
        self._follow_cancel = threading.Event()
        self._follow(run, self._follow_cancel)
        self.list_checkpoints()

    @property
    def run(self):
        return next((r for r in self.runs if r.id == self.selected), None)

    def _set_log(self, path: str | None) -> None:
        if path != self.follow_log:
            self.follow_log = path
            self.query_one(LogPanel).follow(path)

    # -- the selected run: events from the runs core's follower ------------------------------------------
    @work(thread=True, exclusive=True, group="run-follow", exit_on_error=False, description="Following the run")
    def _follow(self, run, cancel: threading.Event) -> None:
        from workbench.runs.follow import follow_run

        def post(events: list, follower) -> None:
            log = str(follower.log.path) if follower.log is not None else None
            if events or log:
                self.post_message(RunEvents(run.id, events, log))

        follow_run(run, post, cancel, busy=0.05)

    def on_run_events(self, message: RunEvents) -> None:
        if message.run_id != self.selected:
            return
        if message.log_path and message.log_path != self._mmengine_log:
            self._mmengine_log = message.log_path
            if self.log_source == "mmengine":
                self._set_log(message.log_path)
        by_kind: dict[str, list] = {}
        for ev in message.events:
            by_kind.setdefault(ev.kind, []).append(ev)
        self.query_one(MetricsPanel).add(by_kind.get("metrics", []))
        self.query_one(SamplesPanel).add(by_kind.get("sample", []))
        if "checkpoint" in by_kind or "run_end" in by_kind:
            self.list_checkpoints()
        # Errors and the end are news only for a run that is live now; an ended run's are in its log.
        live = self.run is not None and self.run.status is RunStatus.RUNNING
        for ev in by_kind.get("error", [])[-3:] if live else []:
            self.notify(ev.message, title=f"run {message.run_id}: {ev.error}", severity="error", timeout=10)
        if "run_end" in by_kind:
            end = by_kind["run_end"][-1]
            if live:
                self.notify(f"run {message.run_id} {end.status}" + (f": {end.reason}" if end.reason else ""),
                            severity="information" if end.status == RunStatus.FINISHED else "error", timeout=10)
            self.refresh_runs()
        if by_kind.get("metrics") and self.run is not None:
            self._update_row(self.query_one("#runs-table", DataTable), self.run, self.query_one(MetricsPanel).last)

    @work(thread=True, exclusive=True, group="run-ckpts", exit_on_error=False, description="Listing checkpoints")
    def list_checkpoints(self) -> None:
        from workbench.runs.checkpoints import list_checkpoints

        run = self.run
        if run is not None:
            self.post_message(CheckpointsListed(run.id, list_checkpoints(run.work_dir)))

    def on_checkpoints_listed(self, message: CheckpointsListed) -> None:
        if message.run_id == self.selected:
            self.query_one(CheckpointsPanel).show(message.checkpoints)

    # -- actions --------------------------------------------------------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        """Show a tab and focus what is in it (Tab / shift+Tab go back to the runs list)."""
        self.query_one(TabbedContent).active = tab
        target = {"tab-log": "LogView", "tab-samples": "#samples-right", "tab-checkpoints": "#ckpt-table"}.get(tab)
        if target:
            self.query_one(target).focus()

    def action_toggle_log_source(self) -> None:
        run = self.run
        if run is None:
            return
        self.log_source = "mmengine" if self.log_source == "console" else "console"
        path = self._mmengine_log or run.log_path if self.log_source == "mmengine" else str(run.stdout_path)
        self._set_log(path)
        self.notify(f"log: {self.log_source} ({Path(path).name if path else 'not written yet'})", timeout=2)

    def action_new_run(self) -> None:
        from workbench.paths import configs_dir
        from workbench.tui.screens.start_run import StartRunModal

        shipped = sorted(p.name for p in configs_dir().glob("*.py"))
        self.app.push_screen(StartRunModal(shipped), self._start_form_done)

    def _start_form_done(self, form: dict | None) -> None:
        if form:
            self._start(form)

    @work(thread=True, exclusive=True, group="run-start", exit_on_error=False, description="Starting the run")
    def _start(self, form: dict) -> None:
        from workbench.runs.launch import start_run

        run = start_run(form["config"], work_dir=form["work_dir"], name=form["name"],
                        cfg_options=form["cfg_options"])
        self.app.select_run = self._pending_select = run.id
        self.post_message(Done(f"started run {run.id} ({run.name}) in {run.work_dir}"))

    def on_done(self, message: Done) -> None:
        self.notify(message.text)
        self.refresh_runs()
        if message.refresh_checkpoints:
            self.list_checkpoints()

    def action_stop_run(self) -> None:
        run = self.run
        if run is None or run.status is not RunStatus.RUNNING:
            self.notify("no running run selected", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._stop(run.id)

        self.app.push_screen(ConfirmModal(f"Stop run {run.id} ({run.name})?", "Its checkpoints stay."), answered)

    @work(thread=True, exclusive=True, group="run-stop", exit_on_error=False, description="Stopping the run")
    def _stop(self, run_id: str) -> None:
        from workbench.runs.control import stop_run

        stop_run(run_id)
        self.post_message(Done(f"stopped run {run_id}"))

    def action_resume_run(self) -> None:
        """Resume after a confirmation, as stop asks. A finished run has nothing left to train: it says so
        and asks how far to train on instead (the runs core refuses a plain resume of it)."""
        run = self.run
        if run is None:
            return
        if run.status is RunStatus.RUNNING:
            self.notify(f"run {run.id} is still running (s stops it)", severity="warning")
            return
        if run.status is RunStatus.FINISHED:
            reached = run.max_iters or 0

            def train_on(text: str | None) -> None:
                if not text:
                    return
                if not text.isdigit():
                    self.notify(f"{text!r}: a number of iterations, please", severity="warning")
                    return
                self._resume(run.id, int(text))

            self.app.push_screen(PromptModal(
                f"Run {run.id} ({run.name}) finished all {reached or 'its'} iterations. Train on to:",
                placeholder=f"iterations in all, more than {reached}" if reached else "iterations in all",
                hint="Enter resumes from its last checkpoint with train_cfg.max_iters set to this; Escape cancels."),
                train_on)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._resume(run.id)

        self.app.push_screen(ConfirmModal(
            f"Resume run {run.id} ({run.name})?",
            f"It is {run.status}. A new run continues it from its last checkpoint, in the same work dir "
            f"({run.work_dir})."), answered)

    @work(thread=True, exclusive=True, group="run-start", exit_on_error=False, description="Resuming the run")
    def _resume(self, run_id: str, max_iters: int | None = None) -> None:
        from workbench.runs.launch import resume_run

        run = resume_run(run_id, max_iters=max_iters) if max_iters is not None else resume_run(run_id)
        self.app.select_run = self._pending_select = run.id
        self.post_message(Done(f"resumed as run {run.id}"))

    def _checkpoint(self):
        ck = self.query_one(CheckpointsPanel).selected
        if ck is None:
            self.notify("no checkpoint selected (Checkpoints tab: k)", severity="warning")
        return ck

    def action_convert(self) -> None:
        ck = self._checkpoint()
        if ck is not None and self.run is not None:
            self._convert(self.run, ck)

    @work(thread=True, exclusive=True, group="run-convert", exit_on_error=False, description="Converting")
    def _convert(self, run, ck) -> None:
        from workbench.runs.convert import convert_run

        (converted,) = convert_run(run, iteration=ck.iteration)  # skipped if already converted
        out = converted.adapter_path
        self.post_message(Done(f"iter {ck.iteration} converted: {out}", refresh_checkpoints=True))

    def action_merge(self) -> None:
        ck = self._checkpoint()
        if ck is not None and self.run is not None:
            self._merge(self.run, ck)

    @work(thread=True, exclusive=True, group="run-convert", exit_on_error=False, description="Merging")
    def _merge(self, run, ck) -> None:
        from workbench.runs.convert import merge_checkpoint
        from workbench.targets import resolve

        found = resolve(run=run.id, checkpoints=False, settings=self.app.settings)  # its base, and trust
        out = merge_checkpoint(run, ck.iteration, base=str(found.base), trust_remote_code=found.trust)
        self.post_message(Done(f"iter {ck.iteration} merged: {out}"))

    def action_chat_checkpoint(self) -> None:
        ck = self._checkpoint()
        if ck is not None and self.run is not None:
            self._chat(self.run, ck, list(self.runs))

    @work(thread=True, exclusive=True, group="run-chat", exit_on_error=False, description="Opening Chat")
    def _chat(self, run, ck, runs: list) -> None:
        from workbench.tui.core import adapter_name, run_base_model

        self.post_message(OpenChat({"base": run_base_model(run),
                                    "adapters": [[adapter_name(run, ck.iteration, runs), ck.adapter_path or ck.path]]}))

    def action_eval_checkpoint(self) -> None:
        """Eval on this run: on the Checkpoints tab, the highlighted checkpoint (and the base) only."""
        run = self.run
        if run is None:
            return
        ck = self.query_one(CheckpointsPanel).selected
        on_checkpoints = self.query_one(TabbedContent).active == "tab-checkpoints"
        self.post_message(OpenEval(run.id, str(ck.iteration) if ck is not None and on_checkpoints else None))
