"""The workbench terminal app: Runs, Chat and Eval screens (Textual modes) and a command palette.

Rules every screen follows (harlequin's shape): long work runs in thread workers that never touch a
widget and end by posting a message; a worker's error reaches `report_error` through the one
`Worker.StateChanged` handler (`WorkerErrors`, in `workbench.tui.errors`) and becomes a notification,
never a crash. A screen that sends the user elsewhere posts a navigation message (`workbench.tui.navigation`)
that the app answers here. Key bindings all have an id (remappable from settings.toml's ``keys`` table) and a
description (the help text). `workbench demo`'s choreography is `workbench.tui.demo.DemoFlow`.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from textual.app import App
from textual.binding import Binding

from workbench.errors import WorkbenchError
from workbench.settings import Settings
from workbench.tui.demo import DemoFlow, DemoRunEnded
from workbench.tui.errors import WorkerErrors, error_text
from workbench.tui.navigation import OpenChat, OpenEval, OpenRunsTab


class WorkbenchApp(WorkerErrors, App[object]):
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
        from workbench.tui.palette import WorkbenchCommands
        from workbench.tui.screens.chat import ChatScreen
        from workbench.tui.screens.eval import EvalScreen
        from workbench.tui.screens.runs import RunsScreen

        # Set here, not in the class body: the screens and the palette are imported when the app is made.
        self.MODES = {"runs": RunsScreen, "chat": ChatScreen, "eval": EvalScreen}  # type: ignore[misc]
        self.COMMANDS = App.COMMANDS | {WorkbenchCommands}  # type: ignore[misc]
        super().__init__()
        self.settings = settings or Settings()
        self.select_run = select_run
        self.start_mode = start_mode
        #: Set by `workbench demo` (its run, eval sets...): sweeps the run when it ends, then offers Chat.
        self.demo_flow = DemoFlow(self, demo) if demo and demo.get("run") else None
        self.set_keymap(self.settings.keys)
        self.errors: list[str] = []  # every reported error, newest last (tests and the debug log read it)

    def on_mount(self) -> None:
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme
        else:
            self.notify(f"settings: unknown theme {self.settings.theme!r}; using {self.theme}", severity="warning")
        self.switch_mode(self.start_mode if self.start_mode in self.MODES else "runs")
        if self.demo_flow is not None:
            self.demo_flow.start()

    def on_unmount(self) -> None:
        if self.demo_flow is not None:
            self.demo_flow.stop()

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

    # -- navigation: a request posted by a screen, the palette or the demo, handed to the screen it names
    async def on_open_chat(self, message: OpenChat) -> None:
        await self.switch_mode("chat")
        if message.spec:
            self.screen_stack[0].load_models(message.spec)  # type: ignore[attr-defined]

    async def on_open_eval(self, message: OpenEval) -> None:
        await self.switch_mode("eval")
        if message.run:
            self.screen_stack[0].open_request(message)  # type: ignore[attr-defined]

    async def on_open_runs_tab(self, message: OpenRunsTab) -> None:
        await self.switch_mode("runs")
        self.screen_stack[0].action_show_tab(message.tab)  # type: ignore[attr-defined]

    def on_demo_run_ended(self, message: DemoRunEnded) -> None:
        if self.demo_flow is not None:
            self.demo_flow.run_ended(message)


def run_app(settings: Settings | None = None, **kwargs: Any) -> None:
    """Open the TUI in this terminal (blocks until the user quits)."""
    WorkbenchApp(settings, **kwargs).run()
