"""The Chat screen's context line, above the prompt: what the next prompt is sent with (the turns since the
context was last cleared and their tokens, `workbench.models.session.ContextInfo`) and the key that clears it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ContextLine(Static):
    DEFAULT_CSS = """
    ContextLine { height: 1; padding: 0 1; color: $text-muted; }
    """

    def show(self, info, clear_key: str) -> None:
        """`info`: the session's `ContextInfo`, or None (no model loaded); `clear_key`: the key as displayed."""
        if info is None:
            self.update("")
            return
        line = Text(info.describe())
        if info.turns:
            line.append(f" · {clear_key} clears it", style="dim")
        self.update(line)
