"""The workbench terminal app: Runs, Chat and Eval screens (Textual modes) and a command palette.

Rules every screen follows (harlequin's shape): long work runs in thread workers that never touch a
widget and end by posting a message; a worker's error reaches `report_error` through the one
`Worker.StateChanged` handler (`WorkerErrors`) and becomes a notification, never a crash. Key bindings
all have an id (remappable from settings.toml's ``keys`` table) and a description (the help text).
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.worker import Worker, WorkerState, get_current_worker

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


class DemoRunEnded(Message):
    def __init__(self, run_id: str, status: str, reason: str | None) -> None:
        super().__init__()
        self.run_id, self.status, self.reason = run_id, status, reason


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
        Binding("f10,question_mark", "toggle_keys", "Keys of this screen", show=False, id="app.keys"),
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
        if self.demo.get("run"):
            self._watch_demo(self.demo["run"])

    def report_error(self, error: BaseException, title: str = "") -> None:
        """Show `error` as a notification (and keep it in `errors`); the app keeps running."""
        text = error_text(error)
        self.errors.append(text)
        detail = "".join(traceback.format_exception(error)) if not isinstance(error, WorkbenchError) else ""
        if detail:
            self.log.error(detail)
        self.notify(text, title=title or "Error", severity="error", timeout=8)
        # A toast fades: keep every error in a file too (`tui-errors.log` in the cache dir).
        try:
            from workbench.paths import cache_dir

            with open(cache_dir() / "tui-errors.log", "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {title or 'Error'}: {text}\n{detail}")
        except OSError:
            pass

    def action_toggle_keys(self) -> None:
        """The keys of the screen in front, its own first (F10 / ?); again (or Escape) closes them."""
        from workbench.tui.screens.keys import KeysScreen

        if isinstance(self.screen, KeysScreen):
            self.screen.dismiss(None)
        else:
            self.push_screen(KeysScreen(self.screen))

    # Cross-screen navigation (the Runs screen's checkpoint actions, the palette). The request waits in
    # `pending` until the target screen is shown: it picks it up in its ScreenResume handler.
    def open_chat(self, models: dict | None = None) -> None:
        """Switch to Chat; `models` (`ModelSpec` fields: base, adapters [[name, path]], ...) is loaded there."""
        if models:
            self.pending["chat"] = models
        self.switch_mode("chat")

    def open_runs_tab(self, tab: str) -> None:
        """Switch to Runs with tab `tab` (``tab-log``...) shown and focused."""
        from workbench.tui.screens.runs import RunsScreen

        if isinstance(self.screen, RunsScreen):
            self.screen.action_show_tab(tab)
            return
        self.pending["runs_tab"] = tab
        self.switch_mode("runs")

    def open_eval(self, run_id: str | None = None, iters: str | None = None) -> None:
        """Switch to Eval with a run (and optionally some of its checkpoints: ``"10,last"``) chosen."""
        if run_id:
            self.pending["eval"] = {"run": run_id, "iters": iters}
        self.switch_mode("eval")


    # -- `workbench demo`: when the run ends, sweep it; when the sweep ends, offer the comparison in Chat.
    @work(thread=True, exclusive=True, group="demo", exit_on_error=False, description="Watching the demo run")
    def _watch_demo(self, run_id: str) -> None:
        from workbench.runs import registry

        worker = get_current_worker()
        while not worker.is_cancelled:
            run = registry.get(run_id)
            if run.status.ended:
                self.post_message(DemoRunEnded(run.id, str(run.status), run.reason))
                return
            time.sleep(1.0)

    def on_demo_run_ended(self, message: DemoRunEnded) -> None:
        if message.status != "finished":
            self.notify(f"demo run {message.run_id} {message.status}: {message.reason or 'see its log'}",
                        severity="error", timeout=15)
            return
        self.notify("The run finished: every checkpoint is being scored (Eval)", timeout=8)
        self.pending["eval"] = {"run": message.run_id, "start": True, "variables": self.demo.get("variables"),
                                "iters": self.demo.get("iters"), "evalsets": self.demo.get("evalsets")}
        self.switch_mode("eval")

    def demo_sweep_done(self, report) -> None:
        """The demo's sweep ended: load base, the recommended and the last checkpoint in Chat, compared."""
        rows = [r for r in report.rows if r.template == report.meta.get("template")] or report.rows
        ckpts = [r for r in rows if not r.is_base and r.target.source]
        if not ckpts or not report.meta.get("model"):
            return
        verdict = report.verdict
        # The recommended checkpoint; without one, the first that learned the identity (to show what it cost).
        good_name = verdict and (verdict.recommended or verdict.identity_learned_at)
        good = next((r for r in ckpts if r.name == good_name), None)
        last = ckpts[-1]
        picked = list({r.name: r for r in (good, last) if r is not None}.values())
        self.pending["chat"] = {"base": report.meta["model"],
                                "adapters": [[r.name, r.target.source] for r in picked],
                                "compare": ["base", *[r.name for r in picked]]}
        why = "recommended" if verdict and verdict.recommended else "identity learned"
        names = ", ".join(["base", *[r.name + (f" ({why})" if r is good else " (last)") for r in picked]])
        self.notify(f"F2 Chat: {names} side by side", timeout=15)


def run_app(settings: Settings | None = None, **kwargs: Any) -> None:
    """Open the TUI in this terminal (blocks until the user quits)."""
    WorkbenchApp(settings, **kwargs).run()
