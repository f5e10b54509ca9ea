"""The top line of every screen: which screen this is, the keys to the others, help and palette keys."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

SCREENS = (("runs", "F1 Runs"), ("chat", "F2 Chat"), ("eval", "F3 Eval"))


class NavBar(Static):
    DEFAULT_CSS = """
    NavBar { height: 1; background: $panel; color: $text; }
    """

    def __init__(self, current: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.current = current

    def on_mount(self) -> None:
        text = Text(" workbench ", style="bold")
        for mode, label in SCREENS:
            text.append(f" {label} ", style="reverse bold" if mode == self.current else "")
        text.append("   F10 keys  ^p commands  ^q quit", style="dim")
        self.update(text)
