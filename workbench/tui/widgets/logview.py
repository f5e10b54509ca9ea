"""A bounded, searchable view of a log file on disk that follows it as it grows (the way toolong does).

The widget holds no log text: a `LineIndex` of line-break offsets (`workbench.runs.tail`), an LRU cache
of the few lines that were painted, and the file descriptor. A thread worker tails the file (a `FileTail`:
small ``pread`` calls) and posts the new line breaks in batches (one message per read, never per line), backing off while the
widget's message queue is long. Only the visible rows are read and rendered (`render_line`).
"""

from __future__ import annotations

import os
import re
import threading
from array import array
from pathlib import Path

from rich.segment import Segment
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from workbench.runs.tail import FileTail, LineIndex, read_line, search

ERROR_RE = re.compile(r"\b(ERROR|CRITICAL|Traceback|[A-Za-z]*Error\b|[A-Za-z]*Exception\b|OOM|nan)\b")
WARNING_RE = re.compile(r"\b(WARNING|Warning|UserWarning)\b")
# mmengine's "2026/11/23 10:37:44 - mmengine - INFO - " prefix; compact mode shows only the time.
PREFIX_RE = re.compile(r"^(?:\d{4}/)?\d\d/\d\d (\d\d:\d\d:\d\d) - \S+ - (\w+) - ")
ERROR_PATTERN = r"ERROR|Traceback|Error\b|Exception\b"  # the `e` key's search


class FindRequested(Message):
    """The user asked to search the log (the panel around the view shows its find box)."""

    def __init__(self, view: LogView) -> None:
        super().__init__()
        self.view = view


class LogView(ScrollView, can_focus=True):
    """Follows one file: `follow(path)`; keeps at most `max_lines` lines indexed."""

    HELP_TITLE = "Log tab (when the log has the focus)"
    BINDINGS = [
        # Arrows only: the Runs screen's tab keys (m l a k) must work from inside the log too.
        Binding("up", "scroll_up", "Up", show=False, id="log.up"),
        Binding("down", "scroll_down", "Down", show=False, id="log.down"),
        Binding("left", "scroll_left", "Left", show=False, id="log.left"),
        Binding("right", "scroll_right", "Right", show=False, id="log.right"),
        Binding("pageup", "page_up", "Page up", show=False, id="log.page_up"),
        Binding("pagedown,space", "page_down", "Page down", show=False, id="log.page_down"),
        Binding("home,g", "scroll_home", "Top", show=False, id="log.top"),
        Binding("end,G", "follow_end", "Follow", id="log.follow"),
        Binding("slash", "find", "Find", id="log.find"),
        Binding("n", "find_next(True)", "Next match", show=False, id="log.find_next"),
        Binding("N", "find_next(False)", "Previous match", show=False, id="log.find_previous"),
        Binding("e", "next_error", "Next error", id="log.next_error"),
        Binding("c", "toggle_compact", "Compact", show=False, id="log.compact"),
    ]

    DEFAULT_CSS = """
    LogView { scrollbar-gutter: stable; overflow: auto auto; }
    """

    COMPONENT_CLASSES = {"logview--error", "logview--warning", "logview--match", "logview--pointer"}

    following: reactive[bool] = reactive(True)
    compact: reactive[bool] = reactive(True)
    pointer: reactive[int | None] = reactive(None, repaint=False)

    class NewLines(Message):
        """The tail worker read more complete lines (their ``\\n`` offsets)."""

        def __init__(self, generation: int, breaks: array, reset: bool = False) -> None:
            super().__init__()
            self.generation, self.breaks, self.reset = generation, breaks, reset

    class Found(Message):
        def __init__(self, generation: int, line: int | None, query: str, wrapped: bool = False,
                     none_found: str = "") -> None:
            super().__init__()
            self.generation, self.line, self.query = generation, line, query
            self.wrapped, self.none_found = wrapped, none_found

    class Status(Message):
        """Line count or following changed: for a status label."""

        def __init__(self, view: LogView) -> None:
            super().__init__()
            self.view = view

    def __init__(self, max_lines: int = 2_000_000, poll: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.index = LineIndex(max_lines)
        self.path: Path | None = None
        self.poll = poll
        self.query_text = ""
        self.query_regex = False
        self._none_found = ""
        self._fd: int | None = None
        self._generation = 0
        self._stop = threading.Event()
        self._lines: LRUCache[int, str] = LRUCache(1024)
        self._strips: LRUCache[tuple, Strip] = LRUCache(512)
        self._max_width = 0

    # -- the file -----------------------------------------------------------------------------------
    def follow(self, path: str | Path | None) -> None:
        """Show `path` (None: nothing) and follow it as it grows; a missing file is waited for."""
        self._close()
        self._generation += 1
        self.index.reset()
        self._lines.clear()
        self._strips.clear()
        self._max_width = 0
        self.pointer = None
        self.path = Path(path) if path else None
        self.following = True
        self.virtual_size = Size(0, 0)
        self.refresh()
        self.post_message(self.Status(self))
        if self.path is not None:
            self._stop = threading.Event()
            self._tail(self.path, self._generation, self._stop)

    @work(thread=True, exclusive=True, group="logview-tail", exit_on_error=False)
    def _tail(self, path: Path, generation: int, stop: threading.Event) -> None:
        # Runs in a thread: touches no widget state, only reads the file and posts messages.
        worker = get_current_worker()
        tail = FileTail(path)
        try:
            while not stop.is_set() and not worker.is_cancelled:
                breaks = tail.read_breaks()
                if tail.restarted:  # truncated or replaced: start over
                    self.post_message(self.NewLines(generation, array("q"), reset=True))
                if breaks:
                    self.post_message(self.NewLines(generation, breaks))
                    # Back off while the UI has not drained what we sent (keeps input responsive).
                    while self.message_queue_size > 8 and not stop.is_set():
                        stop.wait(0.02)
                else:
                    stop.wait(self.poll)
        finally:
            tail.close()

    @on(events.Unmount)
    def _on_gone(self) -> None:
        self._close()

    def _close(self) -> None:
        self._stop.set()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def on_log_view_new_lines(self, message: NewLines) -> None:
        message.stop()
        if message.generation != self._generation:
            return
        if self._fd is None and self.path is not None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)  # the painter's own descriptor
            except OSError:
                return
        if message.reset:
            self.index.reset()
            self._lines.clear()
            self._strips.clear()
        before = self.index.first
        self.index.extend(message.breaks)
        dropped = self.index.first - before
        if dropped and not self.following:
            self.scroll_to(y=max(0, self.scroll_y - dropped), animate=False, immediate=True)
        self._update_size()
        self.refresh()
        self.post_message(self.Status(self))

    def _update_size(self) -> None:
        self.virtual_size = Size(max(self._max_width, self.size.width), len(self.index.ends))
        if self.following:
            self.call_after_refresh(self._to_end)

    def _to_end(self) -> None:
        if self.following:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    def on_resize(self) -> None:
        self._update_size()

    @property
    def line_count(self) -> int:
        """Lines seen so far (including any that left the bounded index)."""
        return len(self.index)

    # -- rendering: only the visible rows are read and styled ----------------------------------------
    def line_text(self, line: int) -> str | None:
        """The text of absolute line `line` (cached), or None if it is not indexed."""
        text = self._lines.get(line)
        if text is None:
            span = self.index.span(line)
            if span is None or self._fd is None:
                return None
            try:
                text = read_line(self._fd, span)
            except OSError:
                return None
            self._lines[line] = text
        return text

    def _styled(self, line: int, text: str) -> Text:
        if self.compact:
            m = PREFIX_RE.match(text)
            if m:
                level = m.group(2)
                text = f"{m.group(1)} " + ("" if level == "INFO" else f"{level} ") + text[m.end():]
        rich = Text(text, no_wrap=True, end="")
        if ERROR_RE.search(text):
            rich.stylize(self.get_component_rich_style("logview--error", partial=True))
        elif WARNING_RE.search(text):
            rich.stylize(self.get_component_rich_style("logview--warning", partial=True))
        if self.query_text:
            style = self.get_component_rich_style("logview--match", partial=True)
            if self.query_regex:
                try:
                    rich.highlight_regex(re.compile(self.query_text, re.IGNORECASE), style)
                except re.error:
                    pass
            else:
                rich.highlight_words([self.query_text], style, case_sensitive=False)
        if line == self.pointer:
            rich.stylize(self.get_component_rich_style("logview--pointer", partial=True))
        return rich

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        line = self.index.first + scroll_y + y
        base = self.rich_style
        text = self.line_text(line) if line < len(self.index) else None
        if text is None:
            return Strip.blank(width, base)
        key = (line, self.compact, self.query_text, line == self.pointer)
        strip = self._strips.get(key)
        if strip is None:
            rich = self._styled(line, text)
            segments = [Segment(s.text, base + s.style if s.style else base) for s in rich.render(self.app.console)]
            strip = Strip(segments, rich.cell_len)
            self._strips[key] = strip
            if strip.cell_length > self._max_width:
                self._max_width = strip.cell_length
                self.call_after_refresh(self._update_size)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def watch_compact(self) -> None:
        self._strips.clear()
        self.refresh()

    # -- keys -----------------------------------------------------------------------------------------
    def _leave_follow(self) -> None:
        if self.following:
            self.following = False
            self.post_message(self.Status(self))

    def action_scroll_up(self) -> None:
        self._leave_follow()
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self._leave_follow()
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self._leave_follow()
        super().action_scroll_home()

    def action_scroll_down(self) -> None:
        super().action_scroll_down()

    def action_follow_end(self) -> None:
        self.following = True
        self.pointer = None
        self.scroll_to(y=self.max_scroll_y, animate=False)
        self.post_message(self.Status(self))
        self.refresh()

    def action_toggle_compact(self) -> None:
        self.compact = not self.compact

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._leave_follow()

    def action_find(self) -> None:
        self.post_message(FindRequested(self))

    def find(self, query: str, forward: bool = True, *, regex: bool = False, none_found: str = "") -> None:
        """Search for `query` from the pointer (or the top of the view) and move to the match; past the
        end (or the start) the search wraps around, as in less and vim. `none_found` is what to say when
        nothing matches (default: ``No match for 'query'``)."""
        self.query_text, self.query_regex, self._none_found = query, regex, none_found
        self._strips.clear()
        self.refresh()
        self.post_message(self.Status(self))  # the status line names the search even when nothing matches
        if not query or self.path is None:
            return
        start = self.pointer if self.pointer is not None else self.index.first + self.scroll_offset.y - (
            1 if forward else 0)
        self._search(self.path, query, start, forward, regex, self._generation, none_found)

    def action_find_next(self, forward: bool) -> None:
        if self.query_text:
            self.find(self.query_text, forward, regex=self.query_regex, none_found=self._none_found)
        else:
            self.action_find()

    def action_next_error(self) -> None:
        self.find(ERROR_PATTERN, True, regex=True, none_found="no errors in this log")

    @work(thread=True, exclusive=True, group="logview-search", exit_on_error=False)
    def _search(self, path: Path, query: str, start: int, forward: bool, regex: bool, generation: int,
                none_found: str = "") -> None:
        fd = os.open(path, os.O_RDONLY)
        wrapped = False
        try:
            line = search(fd, self.index, query, start, forward, regex=regex)
            if line is None:  # wrap: from the top (forward) or the bottom (backward) up to where we were
                wrapped = True
                line = search(fd, self.index, query, self.index.first - 1 if forward else len(self.index),
                              forward, regex=regex)
        finally:
            os.close(fd)
        self.post_message(self.Found(generation, line, query, wrapped, none_found))

    def on_log_view_found(self, message: Found) -> None:
        message.stop()
        if message.generation != self._generation:
            return
        if message.line is None:
            self.notify(message.none_found or f"No match for {message.query!r}", severity="warning", timeout=3)
            return
        if message.wrapped:
            self.notify("search wrapped around the end of the log", timeout=2)
        self.following = False
        self.pointer = message.line
        y = message.line - self.index.first
        height = self.scrollable_content_region.height
        self.scroll_to(y=max(0, y - height // 2), animate=False)
        self._strips.clear()
        self.refresh()
        self.post_message(self.Status(self))



class LogPanel(Vertical):
    """A `LogView` with a status line and a find box (``/``, Enter to search, Escape to close)."""

    HELP_TITLE = "Log tab (when the log has the focus)"
    DEFAULT_CSS = """
    LogPanel { height: 1fr; }
    LogPanel > #log-status { height: 1; color: $text-muted; }
    LogPanel > Input { display: none; height: 3; }
    LogPanel.-finding > Input { display: block; }
    LogPanel > LogView { height: 1fr; }
    LogView > .logview--error { color: $error; text-style: bold; }
    LogView > .logview--warning { color: $warning; }
    LogView > .logview--match { background: $secondary 60%; }
    LogView > .logview--pointer { background: $primary 40%; }
    """

    BINDINGS = [Binding("escape", "close_find", "Close find", show=False, id="log.close_find")]

    def __init__(self, max_lines: int = 2_000_000, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_lines = max_lines

    def compose(self) -> ComposeResult:
        yield Static("no log", id="log-status")
        yield LogView(max_lines=self.max_lines)
        yield Input(placeholder="find (text; /regex/ for a pattern), Enter", id="log-find")

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def follow(self, path: str | Path | None) -> None:
        self.view.follow(path)

    @on(FindRequested)
    def _open_find(self) -> None:
        self.add_class("-finding")
        self.query_one(Input).focus()

    @on(Input.Submitted, "#log-find")
    def _submit_find(self, event: Input.Submitted) -> None:
        event.stop()
        query = event.value.strip()
        regex = len(query) > 2 and query.startswith("/") and query.endswith("/")
        self.remove_class("-finding")
        self.view.focus()
        self.view.find(query[1:-1] if regex else query, True, regex=regex)

    def action_close_find(self) -> None:
        self.remove_class("-finding")
        self.view.focus()

    @on(LogView.Status)
    def _status(self, event: LogView.Status) -> None:
        event.stop()
        view = event.view
        if view.path is None:
            text = "no log"
        else:
            mode = "following" if view.following else "paused (End follows)"
            text = f"{view.path.name}  {view.line_count:,} lines  {mode}"
            if view.query_text:  # `e`'s pattern is an implementation detail: say what it looks for
                text += "  find: errors" if view.query_text == ERROR_PATTERN else f"  find: {view.query_text}"
        self.query_one("#log-status", Static).update(text)
