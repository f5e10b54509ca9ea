"""Small modal screens shared by the three screens: confirm, prompt for text, pick from a list, pick several."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, OptionList, SelectionList, Static
from textual.widgets.option_list import Option


class _Modal(ModalScreen):
    """A dialog with its own footer: the screen behind must not advertise its keys (its `n New run`
    while `n` means No here). Subclasses end their compose with ``yield Footer()``."""

    DEFAULT_CSS = """
    _Modal { align: center middle; }
    _Modal > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    _Modal .title { text-style: bold; width: 1fr; }
    _Modal .hint { color: $text-muted; }
    _Modal Horizontal { height: auto; align-horizontal: right; }
    _Modal Button { margin: 0 1; min-width: 8; }
    _Modal OptionList, _Modal SelectionList { height: auto; max-height: 10; }
    ModelsModal SelectionList { max-height: 8; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="modal.cancel")]

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmModal(_Modal):
    """Yes / no. Dismisses with True or False (Escape: False)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="modal.yes"),
        Binding("n", "answer(False)", "No", id="modal.no"),
    ]

    def __init__(self, question: str, detail: str = "", *, default_no: bool = False) -> None:
        super().__init__()
        self.question, self.detail = question, detail
        self.default_no = default_no  # a destructive question: Enter on the focused button answers No

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, classes="title")
            if self.detail:
                yield Static(self.detail, classes="hint")
            with Horizontal():
                yield Button("Yes (y)", id="yes", variant="primary")
                yield Button("No (n)", id="no")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#no" if self.default_no else "#yes", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class PromptModal(_Modal):
    """One line of text. Dismisses with the text (Enter; may be empty) or None (Escape)."""

    def __init__(self, title: str, value: str = "", placeholder: str = "", hint: str = "") -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder, self.hint = title, value, placeholder, hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title")
            yield Input(self.value, placeholder=self.placeholder, id="prompt")
            if self.hint:
                yield Static(self.hint, classes="hint")
        yield Footer()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())


class PickModal(_Modal):
    """Choose one of `options` ((id, label) pairs). Dismisses with the id, or None."""

    def __init__(self, title: str, options: list[tuple[str, str]], hint: str = "") -> None:
        super().__init__()
        self.title_text, self.options, self.hint = title, options, hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title")
            yield OptionList(*[Option(label, id=oid) for oid, label in self.options], id="pick")
            yield Static(self.hint or "Enter picks, Escape cancels", classes="hint")
        yield Footer()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class PickManyModal(_Modal):
    """Choose several of `options` ((id, label, selected) triples), between `least` and `most` of them.

    Space toggles, Enter (or ctrl+s) confirms. Dismisses with the ids in option order, or None.
    """

    BINDINGS = [Binding("enter,ctrl+s", "done", "Done", id="modal.done", priority=True)]

    def __init__(self, title: str, options: list[tuple[str, str, bool]], least: int = 1, most: int = 99) -> None:
        super().__init__()
        self.title_text, self.options, self.least, self.most = title, options, least, most

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title")
            yield SelectionList[str](*[(label, oid, sel) for oid, label, sel in self.options], id="pick-many")
            yield Static(f"Space toggles, Enter confirms ({self.least}-{self.most}), Escape cancels", classes="hint")
        yield Footer()

    def action_done(self) -> None:
        chosen = self.query_one(SelectionList).selected
        order = [oid for oid, _, _ in self.options]
        chosen = sorted(chosen, key=order.index)
        if not self.least <= len(chosen) <= self.most:
            self.notify(f"choose {self.least} to {self.most}", severity="warning")
            return
        self.dismiss(chosen)
