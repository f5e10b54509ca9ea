"""The workbench terminal app: Runs, Chat and Eval screens (Textual modes) and a command palette.

Rules every screen follows (harlequin's shape): long work runs in thread workers that never touch a
widget and end by posting a message; a worker's error reaches `report_error` through the one
`Worker.StateChanged` handler (`WorkerErrors`) and becomes a notification, never a crash. Key bindings
all have an id (remappable from settings.toml's ``keys`` table) and a description (the help text).
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from workbench.errors import WorkbenchError
from workbench.settings import Settings


def error_text(error: BaseException) -> str:
    """One line for the user: a WorkbenchError's own message, otherwise the type and message."""
    if isinstance(error, WorkbenchError):
        return error.message
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


class WorkerErrors:
    """Mixin for screens and widgets that run workers: their errors become notifications."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            app = self.app  # type: ignore[attr-defined]
            app.report_error(event.worker.error, title=event.worker.description or event.worker.name)


def notify_errors(method: Callable) -> Callable:
    """Decorate an action or handler that calls a core function: an exception becomes a notification."""

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the point is that nothing escapes to crash the app
            self.app.report_error(exc, title=method.__name__.removeprefix("action_").replace("_", " "))
            return None

    return wrapper


class WorkbenchApp(WorkerErrors, App[None]):
    """The TUI. `select_run` opens the Runs screen on that run; `start_mode` picks the first screen."""

    CSS_PATH = "app.tcss"
    TITLE = "workbench"

    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, id="app.quit"),
        # Shown in every screen's NavBar rather than the footer, which keeps its room for the screen's keys.
        Binding("f1,1", "switch_mode('runs')", "Runs screen", show=False, id="app.screen_runs"),
        Binding("f2,2", "switch_mode('chat')", "Chat screen", show=False, id="app.screen_chat"),
        Binding("f3,3", "switch_mode('eval')", "Eval screen", show=False, id="app.screen_eval"),
        Binding("f10,question_mark", "toggle_keys", "Keys panel", show=False, id="app.keys"),
    ]

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        select_run: str | None = None,
        start_mode: str = "runs",
        demo: dict | None = None,
    ) -> None:
        from workbench.tui.commands import WorkbenchCommands
        from workbench.tui.screens.chat import ChatScreen
        from workbench.tui.screens.eval import EvalScreen
        from workbench.tui.screens.runs import RunsScreen

        self.MODES = {"runs": RunsScreen, "chat": ChatScreen, "eval": EvalScreen}
        self.COMMANDS = App.COMMANDS | {WorkbenchCommands}
        super().__init__()
        self.settings = settings or Settings()
        self.select_run = select_run
        self.start_mode = start_mode
        #: Set by `workbench demo`: the demo run's id and models, so screens can preselect them.
        self.demo = demo or {}
        self.set_keymap(self.settings.keys)
        self.pending: dict[str, object] = {}
        self.errors: list[str] = []  # every reported error, newest last (tests and the debug log read it)

    def on_mount(self) -> None:
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme
        else:
            self.notify(f"settings: unknown theme {self.settings.theme!r}; using {self.theme}", severity="warning")
        self.switch_mode(self.start_mode if self.start_mode in self.MODES else "runs")

    def report_error(self, error: BaseException, title: str = "") -> None:
        """Show `error` as a notification (and keep it in `errors`); the app keeps running."""
        text = error_text(error)
        self.errors.append(text)
        if not isinstance(error, WorkbenchError):
            self.log.error("".join(traceback.format_exception(error)))
        self.notify(text, title=title or "Error", severity="error", timeout=8)

    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    # Cross-screen navigation (the Runs screen's checkpoint actions, the palette). The request waits in
    # `pending` until the target screen is shown: it picks it up in its ScreenResume handler.
    def open_chat(self, models: dict | None = None) -> None:
        """Switch to Chat; `models` (`ModelSpec` fields: base, adapters [[name, path]], ...) is loaded there."""
        if models:
            self.pending["chat"] = models
        self.switch_mode("chat")

    def open_eval(self, run_id: str | None = None) -> None:
        """Switch to Eval with a run chosen."""
        if run_id:
            self.pending["eval"] = run_id
        self.switch_mode("eval")


def run_app(settings: Settings | None = None, **kwargs: Any) -> None:
    """Open the TUI in this terminal (blocks until the user quits)."""
    WorkbenchApp(settings, **kwargs).run()
