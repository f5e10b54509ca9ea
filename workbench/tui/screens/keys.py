"""F10 / ``?``: the keys of the screen in front, its own first, grouped, in a panel scrolled by keyboard.

Textual's own key panel lists what the focused widget binds, so a data table's cursor keys and a text box's
editing keys filled it at 80x24 and the app's keys fell below the fold. This one lists only workbench's
bindings (as remapped in settings.toml): the screen's, then those of its panels that bind keys (the log,
the samples), then the keys that work everywhere.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

OURS = "workbench.tui"
EVERYWHERE = "Everywhere"
MOVING = ("In lists, panes and text boxes: arrows, PageUp / PageDown and Home / End move; Tab and shift+Tab "
          "move the focus; Enter picks; Escape closes a dialog.")


def _own_ids(node) -> set[str]:
    """Ids of the bindings workbench's classes declare for `node` (not Textual's generic ones)."""
    ids: set[str] = set()
    for cls in type(node).__mro__:
        if cls.__module__.startswith(OURS):
            ids |= {b.id for b in cls.__dict__.get("BINDINGS", []) if isinstance(b, Binding) and b.id}
    return ids


def _rows(node, app) -> list[tuple[str, str]]:
    """(keys, help text) of `node`'s own bindings, in declaration order, with the user's keymap applied."""
    ids = _own_ids(node)
    if not ids:
        return []
    bindings = node._bindings.copy()
    if app._keymap:
        bindings.apply_keymap(app._keymap)
    keys: dict[str, list[str]] = {}
    text: dict[str, str] = {}
    for key, found in bindings.key_to_bindings.items():
        for b in found:
            if b.id in ids:
                keys.setdefault(b.id, []).append(app.get_key_display(Binding(key, "")))
                text[b.id] = b.description
    order = [b.id for cls in reversed(type(node).__mro__) for b in cls.__dict__.get("BINDINGS", [])
             if isinstance(b, Binding) and b.id in keys]
    return [(" ".join(dict.fromkeys(keys[i])), text[i]) for i in dict.fromkeys(order)]


def key_groups(screen: Screen) -> list[tuple[str, list[tuple[str, str]]]]:
    """``(title, [(keys, help text)])``: `screen`'s own keys, then its panels', then the app's."""
    app = screen.app
    groups: dict[str, list[tuple[str, str]]] = {}
    title = getattr(screen, "HELP_TITLE", type(screen).__name__)
    groups[title] = _rows(screen, app)
    for node in screen.walk_children():
        rows = _rows(node, app)
        if rows:
            group = groups.setdefault(getattr(node, "HELP_TITLE", type(node).__name__), [])
            group += [r for r in rows if r not in group]
    groups[EVERYWHERE] = [*_rows(app, app), ("ctrl+p", "Command palette: every action and tab by name")]
    return [(t, rows) for t, rows in groups.items() if rows]


class KeysScreen(ModalScreen):
    """The keys of `screen`; Escape (or F10, ?, q) closes it."""

    DEFAULT_CSS = """
    KeysScreen { align: right top; }
    KeysScreen > Vertical { width: 64; max-width: 100%; height: 1fr; border-left: vkey $accent;
                            background: $surface; }
    KeysScreen #keys-title { height: 1; text-style: bold; padding: 0 1; background: $panel; }
    KeysScreen VerticalScroll { height: 1fr; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,f10,question_mark,q", "close", "Close", id="keys.close")]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.shown = screen

    def compose(self) -> ComposeResult:
        title = getattr(self.shown, "HELP_TITLE", "")
        with Vertical():
            yield Static(f"Keys: {title}  (↑↓ PgUp PgDn scroll, Escape closes)", id="keys-title")
            with VerticalScroll(id="keys-scroll"):
                yield Static(self._table(), id="keys-table")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#keys-scroll").focus()

    def _table(self) -> Group:
        parts: list = []
        for title, rows in key_groups(self.shown):
            parts.append(Text(title, style="bold underline"))
            table = Table.grid(padding=(0, 1), expand=True)
            table.add_column(style="bold", no_wrap=True, width=14)
            table.add_column(ratio=1)
            for keys, text in rows:
                table.add_row(keys, text)
            parts += [table, Text("")]
        parts.append(Text(MOVING, style="dim"))
        return Group(*parts)

    def action_close(self) -> None:
        self.dismiss(None)
