"""Where each line of a growing text file ends, and how to read one line back: the log view's model.

The way toolong reads logs: never hold the text, only an index of line-break offsets (8 bytes a line in
an ``array``), read the few visible lines with ``os.pread`` when they are painted, and scan new bytes in
small reads as the file grows. Bounded: past `max_lines` the oldest lines leave the index.

No textual import: the tail loop runs in a worker thread and the benchmark drives this directly.
"""

from __future__ import annotations

import os
import re
from array import array
from bisect import bisect_right
from collections.abc import Iterator

CHUNK = 1 << 20  # bytes per read while catching up; tailing reads whatever is new, up to this


def scan_breaks(data: bytes, base: int) -> array:
    """Absolute offsets of every ``\\n`` in `data`, which starts at file offset `base`."""
    out = array("q")
    find = data.find
    pos = find(b"\n")
    while pos != -1:
        out.append(base + pos)
        pos = find(b"\n", pos + 1)
    return out


def read_new(fd: int, offset: int, limit: int = CHUNK) -> tuple[int, array]:
    """Read what follows `offset` (at most `limit` bytes) and return ``(new offset, line breaks)``.

    The new offset stops just after the last complete line, so a line still being written is read
    again, whole, on the next call.
    """
    data = os.pread(fd, limit, offset)
    if not data:
        return offset, array("q")
    last = data.rfind(b"\n")
    if last == -1:
        if len(data) < limit:
            return offset, array("q")  # a partial line: wait for its end
        last = len(data) - 1  # one line longer than `limit`: cut it rather than stall
        breaks = array("q", [offset + last])
        return offset + last + 1, breaks
    return offset + last + 1, scan_breaks(data[: last + 1], offset)


class LineIndex:
    """Line-break offsets of a file's complete lines, keeping at most `max_lines` of the newest.

    Line numbers are absolute (line 0 is the file's first line, even after it left the index), so a
    search result or a pointer keeps meaning the same line while the index trims its front.
    """

    def __init__(self, max_lines: int = 2_000_000):
        self.max_lines = max(1, max_lines)
        self.ends = array("q")  # offset of the "\n" ending each kept line
        self.dropped = 0  # lines that left the front of the index
        self._first_start = 0  # where the first kept line starts

    def __len__(self) -> int:
        return self.dropped + len(self.ends)

    @property
    def first(self) -> int:
        """The oldest line number still in the index."""
        return self.dropped

    @property
    def end_offset(self) -> int:
        """File offset just after the last indexed line."""
        return self.ends[-1] + 1 if self.ends else self._first_start

    def extend(self, breaks: array) -> None:
        """Add lines whose ``\\n`` offsets are `breaks` (ascending, after the last indexed line)."""
        self.ends.extend(breaks)
        excess = len(self.ends) - self.max_lines
        # Trim in chunks (a quarter of the bound) so deleting from the front stays rare: amortised O(1).
        if excess > 0 and excess >= self.max_lines // 4 or len(self.ends) > 2 * self.max_lines:
            self._first_start = self.ends[excess - 1] + 1
            del self.ends[:excess]
            self.dropped += excess

    def span(self, line: int) -> tuple[int, int] | None:
        """``(start, end)`` byte range of `line` without its ``\\n``, or None if it is not indexed."""
        i = line - self.dropped
        if i < 0 or i >= len(self.ends):
            return None
        start = self.ends[i - 1] + 1 if i else self._first_start
        return start, self.ends[i]

    def line_at(self, offset: int) -> int:
        """The line containing byte `offset` (clamped to the indexed lines)."""
        i = bisect_right(self.ends, offset - 1) if offset > 0 else 0
        return self.dropped + min(i, max(0, len(self.ends) - 1))

    def reset(self) -> None:
        self.ends = array("q")
        self.dropped = 0
        self._first_start = 0


def read_line(fd: int, span: tuple[int, int], max_bytes: int = 4096) -> str:
    """The text of one line (at most `max_bytes` of it), decoded leniently, tabs expanded."""
    start, end = span
    data = os.pread(fd, min(end - start, max_bytes), start)
    return data.decode("utf-8", errors="replace").rstrip("\r").expandtabs(4)


def search(
    fd: int, index: LineIndex, query: str, start_line: int, forward: bool = True, *, regex: bool = False
) -> int | None:
    """The first line after (or before) `start_line` whose text matches `query`, case-insensitively.

    Reads the file in 1 MiB blocks through ``pread`` (never the whole file at once), so it runs in a
    worker without holding much memory even on a log of millions of lines.
    """
    if not query or not len(index.ends):
        return None
    try:
        pattern = re.compile(query.encode() if regex else re.escape(query.encode()), re.IGNORECASE)
    except re.error:
        return None
    blocks = _blocks_forward(fd, index, start_line + 1) if forward else _blocks_backward(fd, index, start_line)
    for base, data in blocks:
        matches = list(pattern.finditer(data))
        if not matches:
            continue
        m = matches[0] if forward else matches[-1]
        return index.line_at(base + m.start())
    return None


def _blocks_forward(fd: int, index: LineIndex, line: int) -> Iterator[tuple[int, bytes]]:
    span = index.span(max(line, index.first))
    if span is None:
        return
    pos, stop = span[0], index.end_offset
    while pos < stop:
        data = os.pread(fd, min(CHUNK, stop - pos), pos)
        if not data:
            return
        cut = data.rfind(b"\n") + 1 if pos + len(data) < stop else len(data)
        cut = cut or len(data)
        yield pos, data[:cut]
        pos += cut


def _blocks_backward(fd: int, index: LineIndex, line: int) -> Iterator[tuple[int, bytes]]:
    span = index.span(min(line, len(index)) - 1)
    if span is None:
        return
    stop, first = span[1], index.span(index.first)[0]  # type: ignore[index]
    while stop > first:
        pos = max(first, stop - CHUNK)
        data = os.pread(fd, stop - pos, pos)
        if pos > first:  # start at a line boundary so no match straddles two blocks
            cut = data.find(b"\n") + 1
            pos, data = pos + cut, data[cut:]
        yield pos, data
        stop = pos
