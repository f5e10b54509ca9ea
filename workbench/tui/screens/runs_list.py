"""The runs list of the Runs screen: the table (marks for compare, the resumed-from link), its filter bar, and
the list's actions: filter (`/`, text and ``status:X``), cycle the status filter (`f`), mark (space), compare the
marked runs' loss curves (`C`), delete a run with its files (`d`, after a confirmation that names them; never a
running run), rename a run (`R`).

What is deleted, renamed or filtered is the runs core's business (`workbench.runs.manage`); the loss curves are
`workbench.runs.curves`. Both are called from thread workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Static
from textual.widgets.data_table import CellDoesNotExist

from workbench.runs.manage import STATUS_FILTERS, filter_runs
from workbench.runs.model import RunStatus
from workbench.tui.modals import ConfirmModal, PickManyModal, PromptModal

if TYPE_CHECKING:
    from textual.screen import Screen

    from workbench.runs.manage import DeletePlan
    from workbench.runs.model import Run

    _ScreenBase = Screen
else:
    _ScreenBase = object

STATUS_STYLE = {"running": "bold green", "finished": "cyan", "failed": "bold red", "stopped": "yellow",
                "lost": "red"}
#: (label, width). 78 columns with the cell padding: an 80-column terminal keeps room for the scrollbar.
COLUMNS = (("run", 7), ("name", 18), ("status", 8), ("progress", 18), ("loss", 7), ("eta", 8))
MARK = "●"
#: The most runs one chart compares (its colours repeat after five).
MOST_COMPARED = 8


def progress_text(done: int | None, total: int | None, width: int = 8) -> str:
    if not total:
        return "-"
    done = min(done or 0, total)
    filled = round(width * done / total)
    return "█" * filled + "░" * (width - filled) + f" {done}/{total}"


def run_cell(run_id: str, marked: bool) -> Text:
    """The run column: the id, after a mark when the run is marked for compare."""
    return Text.assemble((MARK if marked else " ", "bold yellow"), run_id)


def name_cell(run: Run, width: int = COLUMNS[1][1]) -> Text:
    """The name column: the name, and the run it resumed from (``demo ←a398ec``), in `width` cells."""
    if not run.parent_id:
        return Text(run.name[:width])
    link = f" ←{run.parent_id}"
    room = width - len(link)
    name = run.name if len(run.name) <= room else run.name[: room - 1] + "…"
    return Text.assemble(name, (link, "dim"))


def row_cells(run: Run, live, marked: bool) -> tuple:
    """The cells of `run`'s row; `live` is its latest train metrics (or None)."""
    done = live.iter if live else (run.max_iters if run.status is RunStatus.FINISHED else None)
    total = (live.max_iters if live else None) or run.max_iters
    loss = f"{live.loss:.4g}" if live and live.loss is not None else "-"
    eta = (live.eta or "-") if live and run.status is RunStatus.RUNNING else "-"
    status = run.status.value
    return (run_cell(run.id, marked), name_cell(run), Text(status, style=STATUS_STYLE.get(status, "")),
            progress_text(done, total), loss, eta)


class RunsTable(DataTable):
    """The runs list. Home / End move the cursor to the newest / oldest run, not only the view; space marks
    the highlighted run for compare. It keeps the list's filter (`query`, `status`) and the marks."""

    HELP_TITLE = "Runs list (when it has the focus)"
    BINDINGS = [
        Binding("home", "first", "Newest run", show=False, id="runs.first"),
        Binding("end", "last", "Oldest run", show=False, id="runs.last"),
        Binding("space", "toggle_mark", "Mark / unmark the run for compare", show=False, id="runs.mark"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.query_text = ""
        self.status = "all"
        self.marked: set[str] = set()
        self.typing = False  # the filter box is open

    def shown_runs(self, runs: list) -> list:
        """The runs the filter lets through, newest first (`runs` is oldest first, as the registry lists them)."""
        return filter_runs(reversed(runs), self.query_text, self.status)

    @property
    def filtered(self) -> bool:
        return bool(self.query_text.strip()) or self.status != "all"

    @property
    def cursor_key(self) -> str | None:
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return str(key.value) if key.value is not None else None

    def action_first(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def action_toggle_mark(self) -> None:
        """Mark (or unmark) the highlighted run, then move to the next one, as file managers do."""
        run_id = self.cursor_key
        if run_id is None:
            return
        self.marked ^= {run_id}
        self.update_cell(run_id, "run", run_cell(run_id, run_id in self.marked))
        if self.cursor_row < self.row_count - 1:
            self.move_cursor(row=self.cursor_row + 1)
        self.post_message(MarksChanged())


class MarksChanged(Message):
    """The marks of the runs list changed (the filter bar counts them)."""


class FilterInput(Input):
    """The text box of the runs filter: rows narrow as you type; Enter or Down go back to the list with the
    filter kept, Escape clears it."""

    HELP_TITLE = "Runs filter (while typing)"
    BINDINGS = [
        Binding("escape", "clear_filter", "Clear the filter", id="runs.filter_clear"),
        Binding("enter,down", "to_list", "Back to the list, filter kept", id="runs.filter_done"),
    ]

    class Done(Message):
        def __init__(self, cleared: bool) -> None:
            super().__init__()
            self.cleared = cleared

    def action_clear_filter(self) -> None:
        self.value = ""
        self.post_message(self.Done(cleared=True))

    def action_to_list(self) -> None:
        self.post_message(self.Done(cleared=False))


class FilterBar(Horizontal):
    """One line above the runs list, shown while a filter is on (or typed): the text, the status filter, how
    many runs are shown and marked."""

    DEFAULT_CSS = """
    FilterBar { height: 1; display: none; background: $panel; }
    FilterBar.-on { display: block; }
    FilterBar > Label { width: auto; padding: 0 0 0 1; color: $text-muted; }
    FilterBar > FilterInput { width: 1fr; height: 1; border: none; padding: 0 1; background: $panel; }
    FilterBar > FilterInput:focus { border: none; background: $boost; }
    FilterBar > #runs-filter-count { width: auto; padding: 0 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Label("filter /")
        yield FilterInput(placeholder="text, status:running", id="runs-filter")
        yield Static("", id="runs-filter-count")

    def show_counts(self, shown: int, total: int, status: str, marked: int) -> None:
        parts = [f"status: {status} (f)", f"{shown} of {total} runs"]
        if marked:
            parts.append(f"{marked} marked")
        self.query_one("#runs-filter-count", Static).update("  ".join(parts))


class DeletePlanned(Message):
    def __init__(self, plan: DeletePlan) -> None:
        super().__init__()
        self.plan = plan


class RunsListActions(_ScreenBase):
    """The runs list's actions, mixed into `RunsScreen` (which has `runs`, `run`, `show_rows`, `refresh_runs` and
    the `Done` message these end with)."""

    if TYPE_CHECKING:
        runs: list
        selected: str | None

        @property
        def run(self) -> Run | None: ...

        def show_rows(self) -> None: ...

        def refresh_runs(self) -> object: ...

        def done(self, text: str) -> None: ...

    @property
    def table(self) -> RunsTable:
        return self.query_one("#runs-table", RunsTable)

    @property
    def highlighted(self) -> Run | None:
        """The run under the list's cursor (what delete and rename act on: keys typed fast, `End d`, may arrive
        before the selection follows the cursor)."""
        key = self.table.cursor_key
        return next((r for r in self.runs if r.id == key), None) if key else self.run

    # -- filter ----------------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        """Open (or go back to) the filter box above the runs list."""
        self.table.typing = True
        self.query_one(FilterBar).add_class("-on")
        self.query_one(FilterInput).focus()
        self.show_rows()

    def action_cycle_status(self) -> None:
        """Show all runs, then the running ones, then the ended ones."""
        table = self.table
        table.status = STATUS_FILTERS[(STATUS_FILTERS.index(table.status) + 1) % len(STATUS_FILTERS)]
        self.show_rows()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "runs-filter":
            self.table.query_text = event.value
            self.show_rows()

    def on_filter_input_done(self, message: FilterInput.Done) -> None:
        self.table.typing = False
        self.table.focus()
        self.show_rows()

    def on_marks_changed(self, message: MarksChanged) -> None:
        self.show_rows()

    def show_filter_bar(self, shown: int) -> None:
        """Called by `show_rows`: the bar is on while a filter is on, the box is open, or runs are marked."""
        table, bar = self.table, self.query_one(FilterBar)
        bar.set_class(table.filtered or table.typing or bool(table.marked), "-on")
        bar.show_counts(shown, len(self.runs), table.status, len(table.marked & {r.id for r in self.runs}))

    # -- compare ---------------------------------------------------------------------------------------------
    def action_compare(self) -> None:
        """The marked runs' loss curves in one chart; with fewer than two marked, choose the runs first."""
        from workbench.tui.screens.compare_runs import CompareRunsScreen

        known = [r.id for r in reversed(self.runs)]
        marked = [rid for rid in known if rid in self.table.marked]
        if len(marked) >= 2:
            self.app.push_screen(CompareRunsScreen(marked[:MOST_COMPARED]))
            return
        if len(known) < 2:
            self.notify("compare needs two runs or more", severity="warning")
            return
        chosen = set(marked) | ({self.selected} if self.selected else set())
        options = [(r.id, f"{r.id}  {r.name[:24]:24}  {r.status.value}", r.id in chosen) for r in reversed(self.runs)]

        def picked(ids: list[str] | None) -> None:
            if ids:
                self.app.push_screen(CompareRunsScreen(ids))

        self.app.push_screen(PickManyModal("Compare the loss curves of (space marks runs in the list too):",
                                           options, least=2, most=MOST_COMPARED), picked)

    # -- delete ----------------------------------------------------------------------------------------------
    def action_delete_run(self) -> None:
        """Delete the highlighted run with its files, after a confirmation naming them; never a running run."""
        run = self.highlighted
        if run is None:
            return
        if run.status is RunStatus.RUNNING:
            self.notify(f"run {run.id} is running: stop it first (s), then delete it", severity="warning")
            return
        self._plan_delete(run.id)

    @work(thread=True, exclusive=True, group="run-delete", exit_on_error=False, description="Deleting the run")
    def _plan_delete(self, run_id: str) -> None:
        from workbench.runs.manage import plan_delete

        self.post_message(DeletePlanned(plan_delete(run_id)))

    def on_delete_planned(self, message: DeletePlanned) -> None:
        plan = message.plan

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(plan)

        self.app.push_screen(ConfirmModal(f"Delete run {plan.run.id} ({plan.run.name}, {plan.run.status})?",
                                          "\n".join(plan.describe()), default_no=True), answered)

    @work(thread=True, exclusive=True, group="run-delete", exit_on_error=False, description="Deleting the run")
    def _delete(self, plan: DeletePlan) -> None:
        from workbench.runs.manage import delete_run

        delete_run(plan.run, confirmed=plan)
        self.done(f"deleted run {plan.run.id} ({plan.run.name})")

    # -- rename ----------------------------------------------------------------------------------------------
    def action_rename_run(self) -> None:
        run = self.highlighted
        if run is None:
            return

        def named(name: str | None) -> None:
            if name and name != run.name:
                self._rename(run.id, name)

        self.app.push_screen(PromptModal(f"Rename run {run.id}:", value=run.name,
                                         hint="Enter renames, Escape cancels."), named)

    @work(thread=True, exclusive=True, group="run-rename", exit_on_error=False, description="Renaming the run")
    def _rename(self, run_id: str, name: str) -> None:
        from workbench.runs.manage import rename_run

        run = rename_run(run_id, name)
        self.done(f"run {run.id} renamed to {run.name}")
