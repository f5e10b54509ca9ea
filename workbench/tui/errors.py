"""How errors reach the user in the TUI: a notification, never a crash.

`WorkerErrors` (a mixin) turns a failed worker into a notification through the app's `report_error`
(every core call runs in a worker); `error_text` is the one line shown. The app and every screen import
these from here (the screens never import the app module).
"""

from __future__ import annotations

from textual.worker import Worker, WorkerState

from workbench.errors import WorkbenchError


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
