"""The Chat screen's model picker: a base (or merged) model folder, the backend, and the checkpoints and
adapters to attach, gathered from every run the registry knows."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Footer, Input, Label, Select, SelectionList, Static

from workbench.tui.errors import WorkerErrors
from workbench.tui.modals import _Modal


class Candidates(Message):
    def __init__(self, base: str | None, items: list[tuple[str, str, str, str]]) -> None:
        super().__init__()
        self.base, self.items = base, items  # items: (variant name, path, config, label)


class ModelsModal(WorkerErrors, _Modal):
    """Dismisses with a `ModelSpec`-shaped dict for `ChatScreen.load_models`, or None."""

    BINDINGS = [Binding("ctrl+s", "load", "Load", priority=True, id="models.load")]

    def __init__(self, current: dict, default_backend: str) -> None:
        super().__init__()
        self.current = current
        self.default_backend = default_backend
        self.items: dict[str, tuple[str, str]] = {}

    def compose(self) -> ComposeResult:
        from workbench.models.base import BACKENDS

        with Vertical():
            yield Label("Models: base, backend, checkpoints (ctrl+s loads, Escape cancels)", classes="title")
            yield Input(self.current.get("base", ""), placeholder="base or merged model folder", id="base")
            yield Select([(b, b) for b in BACKENDS], value=self.current.get("backend") or self.default_backend,
                         allow_blank=False, id="backend")
            yield SelectionList[str](id="adapters")
            yield Static("Space toggles a checkpoint (run name/checkpoint, newest run first); the base always "
                         "stays available.", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        # set_focus, not focus(): focus() is deferred, and a deferred focus could land after the checkpoints
        # arrived and take the focus back from their list (the keys Space/Down would then type into the path)
        self.set_focus(self.query_one("#base", Input))
        self._gather()

    @work(thread=True, exclusive=True, exit_on_error=False, description="Listing checkpoints")
    def _gather(self) -> None:
        from workbench.runs.catalog import checkpoint_catalog

        base, items = checkpoint_catalog()
        self.post_message(Candidates(base, items))

    def on_candidates(self, message: Candidates) -> None:
        base_input = self.query_one("#base", Input)
        if not base_input.value and message.base:
            base_input.value = message.base
        attached = set(self.current.get("adapters") or {})
        sel = self.query_one("#adapters", SelectionList)
        for name, path, config, label in message.items:
            self.items[name] = (path, config)
            sel.add_option((label, name, name in attached))
        if message.items and sel.highlighted is None:
            sel.highlighted = 0  # Space then toggles the newest checkpoint, as the keys suggest
        if message.items and base_input.value:
            self.set_focus(sel)  # the base is known: what is left to choose is the checkpoints

    @on(Input.Submitted, "#base")
    def _base_done(self) -> None:
        self.query_one("#adapters", SelectionList).focus()

    def action_load(self) -> None:
        base = self.query_one("#base", Input).value.strip()
        if not base:
            self.notify("a base model folder is needed", severity="warning")
            return
        chosen = self.query_one("#adapters", SelectionList).selected
        # No config: each checkpoint is read with the config copy in its own work dir.
        adapters = [[n, self.items[n][0]] for n in chosen if n in self.items]
        self.dismiss({"base": base, "backend": str(self.query_one("#backend", Select).value),
                      "adapters": adapters})
