"""The chat transcript: user turns, and assistant replies streamed in as Markdown.

Streaming without elia's mistakes: the generating thread never touches a widget and never blocks on the
UI. It hands tokens to a `TokenBatcher`, which posts one `ReplyChunk` message per interval (not per
token); the widget appends each batch to a `MarkdownStream` (`Markdown.get_stream`), which parses only
the new tail of the document instead of re-rendering the whole reply.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.text import Text
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream


class ReplyChunk(Message):
    """More text of reply `reply_id` (a batch of tokens)."""

    def __init__(self, reply_id: int, text: str) -> None:
        super().__init__()
        self.reply_id, self.text = reply_id, text


class ReplyDone(Message):
    """Reply `reply_id` ended; `info` is shown under it (tokens, stop reason, speed) or an error."""

    def __init__(self, reply_id: int, info: str = "", error: str | None = None) -> None:
        super().__init__()
        self.reply_id, self.info, self.error = reply_id, info, error


class TokenBatcher:
    """Collects tokens in the generating thread and posts them at most every `interval` seconds.

    `post` must be thread-safe (``widget.post_message``). One message per batch keeps the UI's queue
    short at any token rate; `flush()` sends what is left. Each batch costs the UI a layout pass that
    grows with the reply's size, so 200 ms (5 updates a second) is the default: bench/bench_chatview.py
    measured typing latency p99 about 3x lower than with 50 ms batches.
    """

    def __init__(self, post: Callable[[str], object], interval: float = 0.2) -> None:
        self._post = post
        self.interval = interval
        self._parts: list[str] = []
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self.tokens = 0

    def add(self, text: str) -> None:
        self.tokens += 1
        self._parts.append(text)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if self._parts:
                text, self._parts = "".join(self._parts), []
                self._post(text)


def markdown_safe(text: str) -> str:
    """Model replies are shown as Markdown, but raw HTML-ish special tokens should stay visible."""
    return text.replace("<|", "&lt;|")


class Turn(Static):
    """A user turn (plain text, never interpreted as markup)."""

    DEFAULT_CSS = """
    Turn { margin: 1 0 0 0; padding: 0 1; background: $boost; }
    """

    def __init__(self, text: str, **kwargs) -> None:
        super().__init__(Text(text), **kwargs)


class ReplyView(Markdown):
    """An assistant reply; its `title` (variant name) is shown as its border title."""

    DEFAULT_CSS = """
    ReplyView { margin: 0; padding: 0 1; border-left: wide $accent; height: auto; }
    ReplyView.-error { border-left: wide $error; }
    """


class ContextMarker(Static):
    """Where the context was cleared: the turns below it were sent without the ones above."""

    DEFAULT_CSS = """
    ContextMarker { margin: 1 0 0 0; height: 1; color: $warning; text-style: bold; content-align: center middle; }
    """

    TEXT = "── context cleared: the turns below do not see the ones above ──"

    def __init__(self, **kwargs) -> None:
        super().__init__(self.TEXT, **kwargs)


#: A streamed reply is cut into Markdown widgets of about this many characters, at a blank line outside a code
#: fence: the parts above the screen can then leave the layout (`Transcript` freezes them) while it streams.
SEGMENT_CHARS = 1200


def split_point(done: str, new: str) -> int | None:
    """Where to end a reply's segment in `new` (the text arriving after `done`, the segment so far): just after a
    blank line that is not inside a code fence, the last such; None when `new` has none."""
    fence = sum(1 for line in done.splitlines() if line.lstrip().startswith(("```", "~~~"))) % 2 == 1
    cut = None
    pos = 0
    for line in new.splitlines(keepends=True):
        pos += len(line)
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        elif not fence and line.strip() == "" and pos > 1 and new[:pos].endswith("\n\n"):
            cut = pos
    return cut


class _QuietGC:
    """While a reply streams, the objects alive when it started (the app, its widgets, a loaded model's modules)
    are left out of the collector's full passes (`gc.freeze`): a full pass over them took 15-40 ms on the bench
    machine, a stall a key typed meanwhile waited for. They go back (`gc.unfreeze`) when the last stream ends, so
    nothing is kept from the collector for good."""

    streams = 0

    @classmethod
    def start(cls) -> None:
        if cls.streams == 0:
            gc.freeze()
        cls.streams += 1

    @classmethod
    def end(cls) -> None:
        cls.streams = max(0, cls.streams - 1)
        if cls.streams == 0:
            gc.unfreeze()


@dataclass
class _Live:
    """A reply being streamed: its segments (the last one streams), its text so far, the last segment's text."""

    views: list[ReplyView]
    stream: MarkdownStream
    parts: list[str] = field(default_factory=list)
    segment: str = ""


class Frozen(Static):
    """Stands in, with their height, for the turns and reply segments above the screen while a reply streams
    (toolong's way: what is not seen is not laid out); they come back when the stream ends, the user scrolls or
    the size changes."""

    DEFAULT_CSS = """
    Frozen { height: 0; margin: 0; padding: 0; }
    """


class Transcript(VerticalScroll, can_focus=True):
    """A conversation. `add_user`, `start_reply` then `ReplyChunk`/`ReplyDone` messages for that reply."""

    DEFAULT_CSS = """
    Transcript { height: 1fr; }
    Transcript > .reply-info { color: $text-muted; padding: 0 1; height: 1; }
    Transcript > ReplyView.-more { margin-top: 0; }
    """

    def __init__(self, title: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.border_title = title
        self._streams: dict[int, _Live] = {}
        self._next_id = 0
        self._frozen: list[Widget] = []  # hidden behind `_placeholder`, in order
        self._placeholder: Frozen | None = None

    def add_user(self, text: str) -> None:
        self.mount(Turn(text))
        self.anchor()

    def add_context_marker(self) -> None:
        """Mark where the context was cleared (`ChatSession.clear_context`)."""
        self.mount(ContextMarker())
        self.anchor()

    def add_reply(self, text: str, info: str = "") -> None:
        """A finished reply (a reopened conversation)."""
        self.mount(ReplyView(markdown_safe(text)))
        if info:
            self.mount(Static(info, classes="reply-info"))
        self.anchor()

    def start_reply(self) -> int:
        """Mount an empty reply and return its id for `ReplyChunk` / `ReplyDone` messages."""
        self._next_id += 1
        view = ReplyView("")
        self.mount(view)
        self._streams[self._next_id] = _Live([view], Markdown.get_stream(view))
        _QuietGC.start()
        self.anchor()
        return self._next_id

    def reply_text(self, reply_id: int) -> str:
        entry = self._streams.get(reply_id)
        return "".join(entry.parts) if entry else ""

    @property
    def streaming(self) -> bool:
        return bool(self._streams)

    async def on_reply_chunk(self, message: ReplyChunk) -> None:
        entry = self._streams.get(message.reply_id)
        if entry is None:
            return
        message.stop()
        entry.parts.append(message.text)
        text = markdown_safe(message.text)
        cut = split_point(entry.segment, text) if len(entry.segment) + len(text) > SEGMENT_CHARS else None
        if cut is not None:  # end this segment at a block boundary, go on in a new one
            await entry.stream.write(text[:cut])
            await entry.stream.stop()
            view = ReplyView("", classes="-more")
            await self.mount(view)
            entry.views.append(view)
            entry.stream, entry.segment, text = Markdown.get_stream(view), "", text[cut:]
        entry.segment += text
        await entry.stream.write(text)
        self.call_after_refresh(self._freeze)

    async def on_reply_done(self, message: ReplyDone) -> None:
        entry = self._streams.pop(message.reply_id, None)
        if entry is None:
            return
        message.stop()
        await entry.stream.stop()
        _QuietGC.end()
        if len(entry.views) > 1 and not entry.views[-1].source.strip():  # the reply ended with its segment
            await entry.views.pop().remove()
        # What was frozen stays so until the user scrolls (`release_anchor`): thawing it now would lay the whole
        # reply out again in one frame, the longest stall of the stream.
        if message.error:
            entry.views[-1].add_class("-error")
            await self.mount(Static(Text(message.error), classes="reply-info"))
        elif message.info:
            await self.mount(Static(message.info, classes="reply-info"))
        self.anchor()

    # what is above the screen leaves the layout while a reply streams -----------------------------------
    def _freeze(self) -> None:
        """Hide the children that lie a screen or more above the view (never a streaming segment) behind one
        `Frozen` of their height: each batch of a long reply then lays out only what is near the end."""
        if not self._streams or not self._anchored or self._anchor_released or not self.is_mounted:
            return
        live = {id(e.views[-1]) for e in self._streams.values()}
        cutoff = self.scroll_y - 2  # a little above the view: what is seen keeps its widgets
        hide: list[Widget] = []
        for child in self.children:
            if child is self._placeholder or not child.display:
                continue
            if id(child) in live or child.virtual_region.bottom >= cutoff:
                break
            hide.append(child)
        if not hide:
            return
        after = [c for c in self.children if c.display and c is not self._placeholder and c not in hide]
        if not after:
            return
        nxt = after[0]
        top = self._placeholder.virtual_region.y if self._placeholder is not None else hide[0].virtual_region.y
        height = nxt.virtual_region.y - top - nxt.styles.margin.top
        if height <= 0:
            return
        if self._placeholder is None:
            self._placeholder = Frozen()
            self._placeholder.styles.margin = (hide[0].styles.margin.top, 0, 0, 0)
            self.mount(self._placeholder, before=hide[0])
        self._placeholder.styles.height = height
        for child in hide:
            child.display = False
        self._frozen += hide

    def _thaw(self) -> None:
        if self._placeholder is None:
            return
        with self.app.batch_update():
            for child in self._frozen:
                child.display = True
            self._placeholder.remove()
        self._frozen, self._placeholder = [], None

    def release_anchor(self) -> None:
        super().release_anchor()
        self._thaw()  # the user scrolls: show everything

    def on_resize(self) -> None:
        self._thaw()  # heights change with the width

    def on_unmount(self) -> None:
        for _ in self._streams:
            _QuietGC.end()
        self._streams.clear()

    async def clear(self) -> None:
        for entry in self._streams.values():
            await entry.stream.stop()
            _QuietGC.end()
        self._streams.clear()
        self._frozen, self._placeholder = [], None
        await self.remove_children()
