"""The start-run form (`n` on the Runs screen): config, run name, work dir, the hyperparameters people
change, and the config inspection's warnings, in one dialog that scrolls at 80x24.

The work dir defaults to a fresh folder (`workbench.runs.launch.fresh_work_dir`), so a second run of the
same config never writes over the first one's checkpoints; a folder typed in is checked as it is typed
(`work_dir_problem`). The hyperparameters become ``--cfg-options`` on the keys training reads them from
(`workbench.runs.plan.START_FIELDS`). Inspection and checks run in thread workers.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.suggester import Suggester
from textual.timer import Timer
from textual.widgets import Button, Footer, Input, Label, Static

from workbench.errors import WorkbenchError
from workbench.tui.errors import WorkerErrors
from workbench.tui.modals import _Modal

INSPECT_DELAY = 0.4  # seconds of no typing before the config is inspected again (a load takes 1-3 s)


class ConfigSuggester(Suggester):
    """Completes a shipped config's name, or a path (folders and ``.py`` files)."""

    def __init__(self, shipped: list[str]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.shipped = shipped

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        if "/" not in value and not value.startswith("~"):
            return next((n for n in self.shipped if n.startswith(value) and n != value), None)
        typed = Path(value).expanduser()
        folder, stem = (typed, "") if value.endswith("/") else (typed.parent, typed.name)
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return None
        for entry in entries:
            if entry.name.startswith(stem) and not entry.name.startswith(".") and (
                    entry.is_dir() or entry.suffix == ".py") and entry.name != stem:
                return value + entry.name[len(stem):] + ("/" if entry.is_dir() else "")
        return None


def shown_path(path: str) -> str:
    """`path` relative to where the app runs when it is below it (``./work_dirs/...``: shorter, and
    `start_run` reads a relative work dir from there too), else as it is."""
    try:
        return "./" + str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


class Inspected(Message):
    def __init__(self, config: str, report=None, summary: str = "", work_dir: str = "", error: str = "",
                 asked: int = 0) -> None:
        super().__init__()
        self.config, self.report, self.summary, self.work_dir, self.error = config, report, summary, work_dir, error
        self.asked = asked  # which inspection this answers (a slower, older one must not overwrite a newer one)


class WorkDirChecked(Message):
    def __init__(self, work_dir: str, problem: str | None) -> None:
        super().__init__()
        self.work_dir, self.problem = work_dir, problem


class StartRunModal(WorkerErrors, _Modal):
    """Dismisses with ``{"config", "name", "work_dir", "cfg_options"}`` for `start_run`, or None."""

    DEFAULT_CSS = """
    StartRunModal > VerticalScroll {
        width: 78; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    StartRunModal .row { height: 1; }
    StartRunModal .row > Label { width: 11; }
    StartRunModal .row > Input { width: 1fr; background: $boost; }
    StartRunModal .row > Input:focus { background: $primary 30%; }
    StartRunModal .hp > Input { margin-right: 1; }
    StartRunModal .note { margin: 0 0 0 11; color: $text-muted; }
    StartRunModal #work-dir-note.-problem { color: $warning; text-style: bold; }
    StartRunModal #warnings { margin: 1 0 0 0; }
    StartRunModal #buttons { height: 1; margin: 1 0; align-horizontal: left; }
    StartRunModal #buttons > Button { margin: 0 2 0 0; }
    StartRunModal #inspection { color: $text-muted; }
    """
    BINDINGS = [Binding("ctrl+s", "start", "Start", priority=True, id="start.start")]

    def __init__(self, shipped: list[str], config: str = "") -> None:
        super().__init__()
        self.shipped, self.initial = shipped, config
        self.config: str | None = None  # the inspected config (resolved path), once it loaded
        self.report = None
        self.fields: list[tuple[str, str, str]] = []  # START_FIELDS as they apply to this config
        self._work_dir_auto = True  # the work dir field holds our fresh default (not typed by the user)
        self._auto_value = ""
        self._problem: str | None = None
        self._timer: Timer | None = None
        self._asked = 0  # inspections requested so far; only the latest one's answer is shown

    def compose(self) -> ComposeResult:
        from workbench.runs.plan import START_FIELDS

        with VerticalScroll(id="form"):
            yield Label("Start a run", classes="title")
            with Horizontal(classes="row"):
                yield Label("config")
                yield Input(self.initial, placeholder="tiny_cpu_lora.py or path/to/config.py", id="config",
                            suggester=ConfigSuggester(self.shipped), compact=True)
            yield Static("→ completes a shipped config's name or a path", classes="note")
            with Horizontal(classes="row"):
                yield Label("run name")
                yield Input(placeholder="default: the config's name", id="name", compact=True)
            with Horizontal(classes="row"):
                yield Label("work dir")
                yield Input(placeholder="a new folder under ./work_dirs/<config>", id="work-dir", compact=True)
            yield Static("", id="work-dir-note", classes="note")
            for pair in (START_FIELDS[:2], START_FIELDS[2:]):
                with Horizontal(classes="row hp"):
                    for label, attr, _ in pair:
                        yield Label(label, id=f"label-{attr}")
                        yield Input(id=f"hp-{attr}", compact=True, placeholder="-")
            yield Static("", id="warnings")
            with Horizontal(id="buttons"):
                yield Button("Start (ctrl+s)", id="start", variant="primary", compact=True)
                yield Button("Cancel (Escape)", id="cancel", compact=True)
            shipped = "\n".join(f"  {name}" for name in self.shipped)
            yield Static(f"shipped configs:\n{shipped}" if shipped else "", id="inspection")
        yield Footer()

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#config", Input))
        if self.initial:
            self._inspect_soon()

    # -- inspection and checks (workers) -------------------------------------------------------------
    def _cfg_options(self, strict: bool = False) -> list[str]:
        """``key=value`` for every hyperparameter typed in; `strict` raises on a value that is no number."""
        out = []
        for label, attr, key in self.fields:
            text = self.query_one(f"#hp-{attr}", Input).value.strip()
            if not text:
                continue
            try:
                value = float(text) if attr == "lr" else int(text)
                if value <= 0:
                    raise ValueError
            except ValueError:
                if strict:
                    kind = "number" if attr == "lr" else "integer"
                    raise ValueError(f"{label}: {text!r} is not a positive {kind}") from None
                continue
            out.append(f"{key}={value!r}")
        return out

    def _inspect_soon(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(INSPECT_DELAY, self._inspect_now)

    def _inspect_now(self) -> None:
        from workbench.runs.plan import resolve_shipped

        typed = self.query_one("#config", Input).value.strip()
        if not typed:
            return
        self.query_one("#inspection", Static).update("inspecting…")
        self._asked += 1
        self._inspect(resolve_shipped(typed), self._cfg_options(), self.query_one("#name", Input).value.strip(),
                      self._asked)

    @work(thread=True, exclusive=True, group="start-inspect", exit_on_error=False, description="Inspecting")
    def _inspect(self, config: str, cfg_options: list[str], name: str, asked: int) -> None:
        from workbench.runs.plan import plan_start

        try:
            report, summary, work_dir = plan_start(config, cfg_options, name)
        except WorkbenchError as exc:  # not found, does not load: said in the form, not as a toast
            self.post_message(Inspected(config, error=exc.message, asked=asked))
            return
        self.post_message(Inspected(config, report, summary, work_dir, asked=asked))

    @work(thread=True, exclusive=True, group="start-workdir", exit_on_error=False, description="Checking")
    def _check_work_dir(self, work_dir: str) -> None:
        from workbench.runs.launch import work_dir_problem

        self.post_message(WorkDirChecked(work_dir, work_dir_problem(work_dir)))

    def on_inspected(self, message: Inspected) -> None:
        from workbench.runs.plan import EPOCHS_FIELD, START_FIELDS

        if message.asked != self._asked:
            return  # typed on since: a newer inspection is under way (a thread worker is not interrupted)
        if message.error:
            self.config = self.report = None
            self.query_one("#inspection", Static).update(Text(message.error, style="bold red"))
            self.query_one("#warnings", Static).update("")
            return
        self.config, self.report = message.config, message.report
        r = message.report
        epochs = r.max_iters is None and r.max_epochs is not None
        self.fields = [EPOCHS_FIELD if epochs and f[1] == "max_iters" else f for f in START_FIELDS]
        for (label, attr, key), slot in zip(self.fields, START_FIELDS, strict=True):
            self.query_one(f"#label-{slot[1]}", Label).update(label)
            hp = self.query_one(f"#hp-{slot[1]}", Input)
            hp.placeholder = f"{getattr(r, attr)}" if getattr(r, attr) is not None else "-"
            hp.tooltip = f"--cfg-options {key}=…"
        if self._work_dir_auto:
            self._auto_value = shown_path(message.work_dir)
            field = self.query_one("#work-dir", Input)
            field.value = self._auto_value
            field.cursor_position = len(field.value)  # the end (the run's own folder) is the part to see
        warnings = Text("\n").join(Text.assemble(("⚠ ", "bold yellow"), w.message) for w in r.warnings)
        self.query_one("#warnings", Static).update(warnings if r.warnings else Text("no warnings", style="green"))
        self.query_one("#inspection", Static).update(Text(message.summary))

    def on_work_dir_checked(self, message: WorkDirChecked) -> None:
        if message.work_dir != self.query_one("#work-dir", Input).value.strip():
            return  # typed on since
        self._problem = message.problem
        note = self.query_one("#work-dir-note", Static)
        note.set_class(bool(message.problem), "-problem")
        note.update(f"⚠ {message.problem}" if message.problem else "a new folder: no earlier run's files there")

    # -- typing ---------------------------------------------------------------------------------------
    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        if event.input.id == "work-dir":
            value = event.value.strip()
            # Ours until the user types something else; emptied, it becomes a fresh default again.
            self._work_dir_auto = value == self._auto_value or not value
            if value:
                self._check_work_dir(value)
            else:
                self._problem = None
                self.query_one("#work-dir-note", Static).update("")
                self._inspect_soon()
            return
        self._inspect_soon()

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()
        else:
            self.dismiss(None)

    def action_start(self) -> None:
        if self.config is None:
            self.notify("the config has not loaded yet (see the form)", severity="warning")
            return
        work_dir = self.query_one("#work-dir", Input).value.strip()
        if not work_dir:
            self.notify("a work dir is needed", severity="warning")
            return
        if self._problem:
            self.notify(f"{self._problem}: choose another work dir (empty it to get a fresh one)",
                        severity="warning", timeout=6)
            return
        try:
            options = self._cfg_options(strict=True)
        except ValueError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.dismiss({"config": self.config, "name": self.query_one("#name", Input).value.strip() or None,
                      "work_dir": work_dir, "cfg_options": options})
