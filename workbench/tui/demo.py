"""`workbench demo` in the TUI: when the demo run ends, sweep it on the Eval screen; when the sweep ends, offer
the comparison (base, the recommended checkpoint, the last) in Chat.

The app holds one `DemoFlow` when it was opened by `workbench demo`. It only posts navigation messages
(`workbench.tui.navigation`); which checkpoints to compare is the eval core's
(`workbench.evals.verdict.checkpoints_to_compare`).
"""

from __future__ import annotations

import threading

from textual.message import Message

from workbench.tui.navigation import OpenChat, OpenEval


class DemoRunEnded(Message):
    def __init__(self, run_id: str, status: str, reason: str | None) -> None:
        super().__init__()
        self.run_id, self.status, self.reason = run_id, status, reason


class DemoFlow:
    """The demo's choreography for `app`. `demo`: ``run`` (the run to watch), and optionally ``evalsets``,
    ``variables`` ({name}, {org}) and ``iters`` for its sweep."""

    def __init__(self, app, demo: dict) -> None:
        self.app = app
        self.run_id: str = demo["run"]
        self.evalsets = demo.get("evalsets")
        self.variables = demo.get("variables")
        self.iters = demo.get("iters")
        #: The Chat request offered once the sweep ended (loaded when the user goes to Chat).
        self.comparison: dict | None = None
        self._cancel = threading.Event()

    def start(self) -> None:
        self.app.run_worker(self._watch, thread=True, exclusive=True, group="demo", exit_on_error=False,
                            description="Watching the demo run")
        self.app.mode_change_signal.subscribe(self.app, self._mode_changed)

    def stop(self) -> None:
        self._cancel.set()

    def _watch(self) -> None:
        # A worker thread: the registry only (the Runs screen already follows the run's log).
        from workbench.runs.follow import wait_until_ended

        run = wait_until_ended(self.run_id, self._cancel)
        if run is not None:
            self.app.post_message(DemoRunEnded(run.id, str(run.status), run.reason))

    def run_ended(self, message: DemoRunEnded) -> None:
        """The run ended: a finished one is swept on the Eval screen; any other is reported."""
        from workbench.runs.model import RunStatus

        if message.status != RunStatus.FINISHED:
            self.app.notify(f"demo run {message.run_id} {message.status}: {message.reason or 'see its log'}",
                            severity="error", timeout=15)
            return
        self.app.notify("The run finished: every checkpoint is being scored (Eval)", timeout=8)
        self.app.post_message(OpenEval(message.run_id, self.iters, start=True, variables=self.variables,
                                       evalsets=self.evalsets))

    def sweep_done(self, run_id: str, report) -> None:
        """The Eval screen swept `run_id`: for the demo's run, prepare base, the recommended (or first good)
        and the last checkpoint side by side, and say so."""
        from workbench.evals.verdict import checkpoints_to_compare

        if run_id != self.run_id:
            return
        picked = checkpoints_to_compare(report.rows, report.verdict, report.meta.get("template"))
        if not picked or not report.meta.get("model"):
            return
        self.comparison = {"base": report.meta["model"],
                           "adapters": [[row.name, row.target.source] for row, _ in picked],
                           "compare": ["base", *[row.name for row, _ in picked]]}
        names = ", ".join(["base", *[f"{row.name} ({why})" for row, why in picked]])
        self.app.notify(f"F2 Chat: {names} side by side", timeout=15)

    def _mode_changed(self, mode: str) -> None:
        if mode == "chat" and self.comparison is not None:
            spec, self.comparison = self.comparison, None
            self.app.post_message(OpenChat(spec))
