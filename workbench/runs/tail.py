"""Follow a growing text file by byte offset: the one file-tail primitive of the log follower, the
scalars reader and the TUI's log view.

`FileTail` owns a file and an offset. Each read is one ``os.pread`` from the stored offset, so following a
million-line log costs no more than a short one; only complete lines are returned (a line still being
written waits for its newline), and a file that is replaced (a new inode) or truncated is read again from
its start (`restarted` says so). Not thread-safe: one tail belongs to one thread.

`LineIndex` is what a viewer keeps instead of the text, the way toolong reads logs: the offsets of the line
breaks (8 bytes a line in an ``array``), bounded to `max_lines`; `read_line` reads one line back with
``pread`` when it is painted, and `search` scans the indexed lines in 1 MiB blocks.
"""

from __future__ import annotations

import os
import re
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path

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


class FileTail:
    """One file followed from byte `offset`: `read()` returns the complete lines appended since the last read.

    The file may not exist yet (a read returns nothing until it does). When it is replaced or truncated, the
    next read starts again from offset 0 and sets `restarted`, so the caller can drop what it derived from
    the old content.
    """

    def __init__(self, path: str | os.PathLike, *, offset: int = 0, max_bytes: int = 16 << 20):
        self.path = Path(path)
        self.offset = offset
        self.max_bytes = max_bytes
        #: Bytes read from disk so far (what a "reads only new bytes" check looks at).
        self.bytes_read = 0
        #: Set by a read that started the file over (replaced or truncated); cleared by the next read.
        self.restarted = False
        self._fd: int | None = None
        self._ino: int | None = None

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    @property
    def behind(self) -> int:
        """Bytes in the file not read yet."""
        return max(0, self.size - self.offset)

    def read(self, max_bytes: int | None = None) -> bytes:
        """The complete lines after `offset` (at most `max_bytes` of them; a single line longer than that
        comes cut at that length rather than stalling the tail); `offset` moves past them."""
        self.restarted = False
        fd = self._open()
        if fd is None:
            return b""
        size = os.fstat(fd).st_size
        if size < self.offset:  # truncated or rewritten in place: start again
            self.offset, self.restarted = 0, True
        limit = max_bytes or self.max_bytes
        want = min(size - self.offset, limit)
        if want <= 0:
            return b""
        data = os.pread(fd, want, self.offset)
        self.bytes_read += len(data)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) < limit:
                return b""  # a partial line: wait for its end
            end = len(data) - 1
        self.offset += end + 1
        return data[: end + 1]

    def read_rest(self) -> bytes:
        """Everything after `offset`, including a last line without a newline (the end of a finished file)."""
        out = []
        while True:
            data = self.read()
            if not data:
                break
            out.append(data)
        fd = self._open()
        if fd is not None:
            size = os.fstat(fd).st_size
            if size > self.offset:
                data = os.pread(fd, size - self.offset, self.offset)
                self.bytes_read += len(data)
                self.offset += len(data)
                out.append(data)
        return b"".join(out)

    def read_breaks(self, max_bytes: int = CHUNK) -> array:
        """`read` as the absolute offsets of the line breaks it passed (what a `LineIndex` keeps)."""
        data = self.read(max_bytes)
        breaks = scan_breaks(data, self.offset - len(data))
        if data and data[-1:] != b"\n":  # a line cut at `max_bytes`: its last byte stands for its end
            breaks.append(self.offset - 1)
        return breaks

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _open(self) -> int | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        if self._fd is not None and st.st_ino != self._ino:  # replaced: read the new file from its start
            self.close()
            self.offset, self.restarted = 0, True
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            self._ino = os.fstat(self._fd).st_ino
        return self._fd
