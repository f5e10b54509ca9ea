"""The Chat screen: the models core's `ChatSession` (base loaded once, adapters and checkpoints attached
by name, the chat format, the history, the conversation saved as it goes) behind a transcript that
streams replies as Markdown.

ctrl+t swaps the answering variant (milliseconds, the conversation stays); ctrl+b compare mode sends
each prompt to 2-4 variants and shows the replies side by side. Loading and generating run in thread
workers; tokens reach the transcript in batches (`TokenBatcher`), never one message per token.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from workbench.models.session import model_label
from workbench.tui.errors import WorkerErrors, error_text
from workbench.tui.modals import PickManyModal, PickModal, PromptModal
from workbench.tui.screens.chat_models import ModelsModal
from workbench.tui.widgets.context_line import ContextLine
from workbench.tui.widgets.navbar import NavBar
from workbench.tui.widgets.transcript import ReplyChunk, ReplyDone, TokenBatcher, Transcript

if TYPE_CHECKING:
    from workbench.tui.app import WorkbenchApp


class SessionReady(Message):
    def __init__(self, session, spec: dict, comparisons: list | None = None) -> None:
        super().__init__()
        self.session, self.spec = session, spec
        self.comparisons = comparisons  # a reopened conversation's saved comparisons (None: not a reopen)


@dataclass
class SavedReply:
    """A compared reply read back from a saved conversation (what `reply_info` needs of a `Reply`)."""

    text: str
    stop_reason: str | None = None
    tokens: int | None = None


class LoadFailed(Message):
    pass


class Loading(Message):
    """What loading the models is doing now (one line)."""

    def __init__(self, note: str) -> None:
        super().__init__()
        self.note = note


class Listed(Message):
    """A list the user picks from, read in a worker: ``(value, label)`` options and what picking one does."""

    def __init__(self, title: str, options: list[tuple[str, str]], then, empty: str) -> None:
        super().__init__()
        self.title, self.options, self.then, self.empty = title, options, then, empty


class Refitted(Message):
    pass


class Answered(Message):
    """A reply (or a comparison) ended: the session's history and file already hold it."""


class Compared(Message):
    def __init__(self, prompt: str, replies: list, reply_ids: dict[str, int], error: str | None = None) -> None:
        super().__init__()
        self.prompt, self.replies, self.reply_ids, self.error = prompt, replies, reply_ids, error


def reply_info(variant: str, reply, seconds: float | None = None) -> str:
    """The line under a reply; the variant last, as compare panes are narrow and titled with it."""
    speed = f" · {reply.tokens / seconds:.0f} tok/s" if seconds and reply.tokens else ""
    tokens = f"{reply.tokens} tokens · " if reply.tokens is not None else ""
    return f"{tokens}{reply.stop_reason or 'saved'}{speed} · {variant}"


class ChatScreen(WorkerErrors, Screen):
    if TYPE_CHECKING:  # the app is the workbench's (its settings, report_error...)
        app = getters.app(WorkbenchApp)

    HELP_TITLE = "Chat screen"

    BINDINGS = [
        Binding("ctrl+o", "models", "Models", id="chat.models"),
        Binding("ctrl+t", "swap", "Swap adapter", id="chat.swap"),
        Binding("ctrl+b", "compare", "Compare", id="chat.compare"),
        Binding("ctrl+r", "clear_context", "Clear context", show=False, id="chat.clear_context"),  # on its line
        Binding("ctrl+n", "new", "New", id="chat.new"),
        Binding("ctrl+l", "open", "Open saved", id="chat.open"),
        Binding("ctrl+y", "template", "Template", show=False, id="chat.template"),
        Binding("ctrl+g", "system", "System prompt", show=False, id="chat.system"),
        Binding("escape", "stop", "Stop reply", show=False, id="chat.stop"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.session: Any = None  # a workbench.models.session.ChatSession once models are loaded
        self.spec: dict = {}  # what was asked for (the models picker starts from it)
        self.variants: list[str] = []  # compare mode when 2 or more
        self.comparisons: list[tuple[str, list]] = []  # (prompt, [(variant, Reply)]) shown in compare mode
        self.busy = False
        self._cancel = threading.Event()

    def compose(self) -> ComposeResult:
        yield NavBar("chat")
        yield Static("no model loaded: ctrl+o picks one", id="models-line")
        yield Static("", id="format-line")
        yield Static("", id="format-warning")
        with Horizontal(id="transcripts"):
            yield Transcript(id="transcript-0")
        yield ContextLine(id="context-line")
        yield Input(placeholder="Ask something (Enter sends)", id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#prompt", Input).focus()

    def on_unmount(self) -> None:
        if self.session is not None:
            self.session.close()

    def palette_commands(self) -> list:
        return [
            ("chat: Choose models (base, checkpoints, adapters, backend)…", self.action_models, "Base loads once"),
            ("chat: Swap to the next variant", self.action_swap, "Keeps the conversation"),
            ("chat: Compare variants side by side…", self.action_compare, "One prompt to 2-4 variants"),
            ("chat: Clear the context (the next prompt is sent alone)", self.action_clear_context,
             "Same conversation; a marker shows where"),
            ("chat: New conversation", self.action_new, "The current one stays saved"),
            ("chat: Open a saved conversation…", self.action_open, "Reopen it and continue"),
            ("chat: Choose the chat template…", self.action_template, "Default: the training config's"),
            ("chat: Set the system prompt…", self.action_system, "Default: the training config's SYSTEM"),
        ]

    # -- loading ----------------------------------------------------------------------------------------
    def load_models(self, spec: dict, conversation_id: str | None = None) -> None:
        """Load `spec` (`workbench.models.session.ModelSpec` fields, plus ``compare``: variants to compare).

        Adapters on the same base as the loaded session are attached to it instead of reloading the base.
        """
        if self.busy:
            self.notify("wait for the reply to finish (Escape stops it)", severity="warning")
            return
        self.query_one("#models-line", Static).update(f"loading {spec.get('base') or spec.get('run')} …")
        self._load(dict(spec), self.session, conversation_id)

    @work(thread=True, exclusive=True, group="chat-load", exit_on_error=False, description="Loading models")
    def _load(self, spec: dict, session, conversation_id: str | None) -> None:
        from workbench.tui.core import open_chat_session

        def loading(note: str) -> None:  # what loading is doing: the server start, the decode step's compile
            if note.startswith(("starting", "compiling")):
                self.post_message(Loading(note))

        try:
            opened = open_chat_session(spec, session, self.app.settings, conversation_id, notice=loading)
            if conversation_id:
                from workbench.models.conversations import saved_comparisons

                saved = [(prompt, [(v, SavedReply(a.get("text", ""), a.get("stop_reason"), a.get("tokens")))
                                   for v, a in answers])
                         for prompt, answers in saved_comparisons(conversation_id, self.app.settings)]
            else:
                saved = None
            self.post_message(SessionReady(opened, spec, saved))
        except Exception:
            self.post_message(LoadFailed())  # the line says "loading": put back what is loaded
            raise  # and the error becomes a notification (WorkerErrors)

    def on_loading(self, message: Loading) -> None:
        self.query_one("#models-line", Static).update(f"loading … {message.note}")

    def on_load_failed(self, _message: LoadFailed) -> None:
        if self.session is None:
            self.query_one("#models-line", Static).update("no model loaded: ctrl+o picks one")
        else:
            self._show_models()

    async def on_session_ready(self, message: SessionReady) -> None:
        if self.session is not None and self.session is not message.session:
            self.session.close()
        fresh = self.session is not message.session
        self.session, self.spec = message.session, message.spec
        compare = [v for v in message.spec.get("compare") or [] if v in self.session.variants]
        if message.comparisons is not None:  # a reopened conversation: its comparisons come back with it
            self.comparisons = message.comparisons
            last = [v for v, _ in self.comparisons[-1][1] if v in self.session.variants] if self.comparisons else []
            compare = last if len(last) > 1 else compare
            # and it answers with the variant that answered last, as it did when it was saved
            answered = next((m.get("variant") for m in reversed(self.session.messages)
                             if m["role"] == "assistant" and m.get("variant") in self.session.variants), None)
            if answered:
                self.session.switch(answered)
        elif fresh:
            self.comparisons = []
        await self._set_variants(compare if len(compare) > 1 else [])
        for note in self.session.notices:
            if note.startswith("warning"):
                self.notify(note, severity="warning", timeout=6)

    def _show_models(self) -> None:
        s = self.session
        if s is None:
            return
        line = Text()
        line.append(f"{s.spec.backend}: ", style="dim")
        line.append(model_label(s.spec.base or s.spec.merged))  # one name, through `current` or its hash
        if len(self.variants) > 1:  # the panes' titles name them
            line.append(f"  comparing {len(self.variants)} variants", style="bold")
            line.append("  (ctrl+b: back)", style="dim")
        else:
            line.append("  answering: ", style="dim")
            line.append(s.current, style="bold")
            line.append(f"  ({len(s.variants)} variants; ctrl+t swaps)", style="dim")
        self.query_one("#models-line", Static).update(line)
        fmt = s.format
        system = fmt.format.system
        shown = (system[:30] + "…") if len(system) > 30 else system
        self.query_one("#format-line", Static).update(Text.assemble(
            ("template: ", "dim"), fmt.format.name, (f" ({fmt.source})", "dim"),
            ("  system: ", "dim"), repr(shown) if system else "(none)"))
        warning = self.query_one("#format-warning", Static)
        warning.update(Text(f"⚠ {fmt.warning}", style="bold yellow") if fmt.warning else "")
        warning.display = bool(fmt.warning)
        self._show_context()

    def _show_context(self) -> None:
        """The line above the prompt: the turns and tokens the next prompt is sent with, and the key that clears
        them (as remapped in settings.toml)."""
        key = next(b.key for b in self.BINDINGS if isinstance(b, Binding) and b.id == "chat.clear_context")
        key = self.app._keymap.get("chat.clear_context", key).split(",")[0]
        info = self.session.context_info() if self.session is not None else None
        self.query_one("#context-line", ContextLine).show(info, self.app.get_key_display(Binding(key, "")))

    def action_models(self) -> None:
        def chosen(spec: dict | None) -> None:
            if spec:
                self.load_models(spec)

        self.app.push_screen(ModelsModal(self.spec, self.app.settings.default_backend), chosen)

    # -- variants ---------------------------------------------------------------------------------------
    def _need_session(self) -> bool:
        if self.session is None:
            self.notify("no model loaded: ctrl+o picks one", severity="warning")
        return self.session is not None

    async def action_swap(self) -> None:
        if not self._need_session():
            return
        names = list(self.session.variants)
        name = names[(names.index(self.session.current) + 1) % len(names)]
        if self.busy:
            self.session.current = name  # takes effect with the next prompt; this reply keeps its variant
        else:
            self.session.switch(name)
        if len(self.variants) > 1:
            await self._set_variants([])
        self._show_models()
        self.notify(f"now answering: {name}", timeout=2)

    async def action_compare(self) -> None:
        if not self._need_session():
            return
        if len(self.variants) > 1:
            await self._set_variants([])
            return
        names = list(self.session.variants)
        if len(names) < 2:
            self.notify("only one variant loaded: attach a checkpoint (ctrl+o)", severity="warning")
            return
        options = [(n, n, i < 4) for i, n in enumerate(names)]
        self.app.push_screen(PickManyModal("Compare: choose 2 to 4 variants", options, least=2, most=4),
                             self._compare_picked)

    async def _compare_picked(self, picked: list[str] | None) -> None:
        if picked:
            await self._set_variants(picked)

    async def _set_variants(self, variants: list[str]) -> None:
        self.variants = variants
        box = self.query_one("#transcripts", Horizontal)
        await box.remove_children()
        if len(variants) > 1:
            panes = [Transcript(title=v, id=f"transcript-{i}", classes="compare") for i, v in enumerate(variants)]
            await box.mount_all(panes)
            # The conversation's comparisons so far (saved ones after a reopen) that involve these variants.
            for prompt, replies in self.comparisons:
                answers = dict(replies)
                if not any(v in answers for v in variants):
                    continue
                for pane in panes:
                    pane.add_user(prompt)
                    reply = answers.get(pane.title)
                    if reply is None:
                        pane.add_reply("", "(not in this comparison)")
                    else:
                        pane.add_reply(reply.text, reply_info(pane.title, reply))
        else:
            transcript = Transcript(id="transcript-0")
            await box.mount(transcript)
            if self.session is not None:
                start = self.session.context_start
                for i, m in enumerate(self.session.messages):  # the conversation so far, after a compare or a reopen
                    if i and i == start:
                        transcript.add_context_marker()
                    if m["role"] == "user":
                        transcript.add_user(m["content"])
                    else:
                        transcript.add_reply(m["content"], m.get("variant", ""))
                if start and start == len(self.session.messages):
                    transcript.add_context_marker()
        self._show_models()

    # -- prompting ----------------------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    def _send(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt or not self._need_session():
            return
        if self.busy:
            self.notify("still answering (Escape stops it)", severity="warning")
            return
        event.input.value = ""
        self._cancel = threading.Event()
        self.busy = True
        if len(self.variants) > 1:
            ids = {}
            for i, v in enumerate(self.variants):
                t = self.query_one(f"#transcript-{i}", Transcript)
                t.add_user(prompt)
                ids[v] = t.start_reply()
            self._compare(self.session, prompt, list(self.variants), ids)
        else:
            t = self.query_one("#transcript-0", Transcript)
            t.add_user(prompt)
            self._ask(self.session, prompt, t, t.start_reply(), self._cancel)

    @work(thread=True, exclusive=True, group="chat-generate", exit_on_error=False, description="Generating")
    def _ask(self, session, prompt: str, transcript: Transcript, reply_id: int, cancel: threading.Event) -> None:
        batcher = TokenBatcher(lambda text: transcript.post_message(ReplyChunk(reply_id, text)))
        start = time.monotonic()
        try:
            for piece in session.ask(prompt, cancel):
                batcher.add(piece)
            batcher.flush()
            reply = session.last_reply
            transcript.post_message(ReplyDone(reply_id, reply_info(session.current, reply,
                                                                   time.monotonic() - start)))
        except Exception as exc:  # noqa: BLE001 - shown under the reply itself
            batcher.flush()
            transcript.post_message(ReplyDone(reply_id, error=error_text(exc)))
        finally:
            self.post_message(Answered())

    @work(thread=True, exclusive=True, group="chat-generate", exit_on_error=False, description="Comparing")
    def _compare(self, session, prompt: str, variants: list[str], reply_ids: dict[str, int]) -> None:
        try:
            self.post_message(Compared(prompt, session.compare(prompt, variants), reply_ids))
        except Exception as exc:  # noqa: BLE001 - shown under each pane's reply
            self.post_message(Compared(prompt, [], reply_ids, error=error_text(exc)))
        finally:
            self.post_message(Answered())

    def on_compared(self, message: Compared) -> None:
        panes = {t.title: t for t in self.query(Transcript)}
        if message.error:
            for variant, rid in message.reply_ids.items():
                if variant in panes:
                    panes[variant].post_message(ReplyDone(rid, error=message.error))
            return
        self.comparisons.append((message.prompt, message.replies))
        for variant, reply in message.replies:
            pane, reply_id = panes.get(variant), message.reply_ids.get(variant)
            if pane is not None and reply_id is not None:
                pane.post_message(ReplyChunk(reply_id, reply.text))
                pane.post_message(ReplyDone(reply_id, reply_info(variant, reply)))

    def on_answered(self, _message: Answered) -> None:
        self.busy = False
        self._show_context()

    def action_clear_context(self) -> None:
        """The next prompt is sent without the turns so far (`ChatSession.clear_context`): the same conversation
        goes on, with a marker in the transcript where its context was cleared."""
        if not self._need_session():
            return
        if self.busy:
            self.notify("wait for the reply to finish (Escape stops it)", severity="warning")
            return
        if not self.session.clear_context():
            self.notify("the context is already empty", timeout=2)
            return
        for t in self.query(Transcript):
            t.add_context_marker()
        self._show_context()
        self.notify("context cleared: the next prompt is sent alone", timeout=3)

    def action_stop(self) -> None:
        if self.busy:
            self._cancel.set()

    # -- conversations ------------------------------------------------------------------------------------
    async def action_new(self) -> None:
        if self.busy:
            self._cancel.set()
        if self.session is not None:
            self.session.reset()
        self.comparisons = []
        await self._set_variants([])

    def action_open(self) -> None:
        self._list_conversations()

    @work(thread=True, exclusive=True, group="chat-list", exit_on_error=False, description="Listing conversations")
    def _list_conversations(self) -> None:
        from workbench.models.conversations import conversation_labels

        self.post_message(Listed("Open a conversation", conversation_labels(self.app.settings), self._open,
                                 "no saved conversations yet"))

    def on_listed(self, message: Listed) -> None:
        if not message.options:
            self.notify(message.empty, severity="warning")
            return
        self.app.push_screen(PickModal(message.title, message.options), message.then)

    def _open(self, conv_id: str | None) -> None:
        if conv_id:
            self.load_models(self.spec, conversation_id=conv_id)

    def action_template(self) -> None:
        if not self._need_session():
            return
        self._list_templates()

    @work(thread=True, exclusive=True, group="chat-list", exit_on_error=False, description="Listing templates")
    def _list_templates(self) -> None:
        from workbench.models.templates import template_names  # may import xtuner: seconds

        self.post_message(Listed("Chat template", [(n, n) for n in template_names()],
                                 self._template_picked,
                                 "no chat templates found"))

    def action_system(self) -> None:
        if not self._need_session():
            return
        self.app.push_screen(PromptModal("System prompt (empty: none)", self.session.format.format.system),
                             self._system_typed)

    def _system_typed(self, text: str | None) -> None:
        if text is not None:
            self._refit(self.session, system=text)

    def _template_picked(self, name: str | None) -> None:
        if name:
            self._refit(self.session, template=name)

    @work(thread=True, exclusive=True, group="chat-refit", exit_on_error=False, description="Chat format")
    def _refit(self, session, template: str | None = None, system: str | None = None) -> None:
        from workbench.models.session import refit_format

        try:
            refit_format(session, template=template, system=system)
        finally:
            self.post_message(Refitted())

    def on_refitted(self, _message: Refitted) -> None:
        self._show_models()
