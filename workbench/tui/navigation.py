"""Going from one screen to another with something to show there: messages posted to the app.

A screen (or the palette, or the demo) posts `OpenChat` / `OpenEval` / `OpenRunsTab`; the app switches to
the screen and hands it the request (`WorkbenchApp.on_open_chat`...). No screen imports another.
"""

from __future__ import annotations

from textual.message import Message


class OpenChat(Message):
    """Switch to Chat and load `spec` there: `ModelSpec` fields (base, adapters ``[[name, path]]``...),
    plus ``compare``: the variants to show side by side."""

    def __init__(self, spec: dict | None = None) -> None:
        super().__init__()
        self.spec = dict(spec or {})


class OpenEval(Message):
    """Switch to Eval with run `run` chosen (and only checkpoints `iters`: ``"10,last"``); `start` sweeps at
    once; `variables` ({name}, {org}) and `evalsets` replace the screen's when given."""

    def __init__(self, run: str | None = None, iters: str | None = None, *, start: bool = False,
                 variables: dict | None = None, evalsets: list[str] | None = None) -> None:
        super().__init__()
        self.run, self.iters, self.start = run, iters, start
        self.variables, self.evalsets = variables, evalsets


class OpenRunsTab(Message):
    """Switch to Runs with tab `tab` (``tab-log``...) shown and focused."""

    def __init__(self, tab: str) -> None:
        super().__init__()
        self.tab = tab
