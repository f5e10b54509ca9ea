"""Turn mmengine/XTuner training logs into events, line by line, and follow a log file by byte offset.

Two layers:
- `LogParser`: a state machine fed one decoded line at a time. It understands mmengine's file format
  (``2026/11/23 10:37:44 - mmengine - INFO - msg``) and its console format (no year), multi-line records
  (EvaluateChatHook's ``Sample output:`` blocks, the config dump), and the lines a console capture mixes in
  from stderr (Python tracebacks, Python and DeepSpeed warnings, CUDA out-of-memory messages).
- `LogFollower`: a parser over a `workbench.runs.tail.FileTail` (a file and a byte offset). `poll()` reads
  only the bytes appended since the last call, so following a million-line log costs no more than a short
  one. It is what the TUI calls from a worker thread; it touches nothing but its own file.
"""

from __future__ import annotations

import math
import os
import re

from workbench.runs.events import (
    CheckpointEvent,
    ErrorEvent,
    LogEvent,
    MetricsEvent,
    SampleEvent,
    TrainEndEvent,
    WarningEvent,
)
from workbench.runs.tail import FileTail
from workbench.xtuner.templates import BUILTIN_TEMPLATES

HEADER = re.compile(
    r"^(?:(\d{4})/)?(\d{2}/\d{2} \d{2}:\d{2}:\d{2}) - (\S+) - (DEBUG|INFO|WARNING|ERROR|CRITICAL) - ?(.*)$"
)
ITER = re.compile(r"^Iter\((\w+)\)\s*\[\s*(\d+)/(\d+)\]\s*(.*)$")
EPOCH = re.compile(r"^Epoch\((\w+)\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]\s*(.*)$")
SAVING = re.compile(r"^Saving checkpoint at (\d+) iterations")
RESUMED = re.compile(r"^resumed epoch: (\d+), iter: (\d+)")
HOOK_PHASE = re.compile(r"^(\w+) in EvaluateChatHook\.")
PY_WARNING = re.compile(r"^\S.*:\d+: (\w*Warning): (.*)$")
DS_LOG = re.compile(r"^\[\d{4}-\d{2}-\d{2} [\d:,]+\] \[(WARNING|ERROR|CRITICAL)\] (?:\[[^\]]*\] )?(.*)$")
RANK_PREFIX = re.compile(r"^\[(?:default)?rank\d+\]:\s?")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
OOM = re.compile(r"out of memory|OutOfMemoryError", re.IGNORECASE)
CHAIN = ("During handling of the above exception", "The above exception was the direct cause")

NAMED_METRICS = {"lr", "loss", "grad_norm", "time", "data_time", "memory"}
MAX_RECORD_LINES = 400  # a Sample output or a traceback longer than this is cut (the file keeps it all)


def _sample_markers() -> list[tuple[str, str, tuple[str, ...]]]:
    """(text before the input, text between the input and the answer, stop words) of every XTuner template
    (`workbench.xtuner.templates.BUILTIN_TEMPLATES`), one per distinct pair of markers, longest "between" first
    so that e.g. llama3 wins over a bare "[/INST]"."""
    markers: dict[tuple[str, str], list[str]] = {}
    for entry in BUILTIN_TEMPLATES.values():
        before, _, between = entry["INSTRUCTION"].partition("{input}")
        before = re.split(r"\{\w+\}", before)[-1]  # after chatglm2's "[Round {round}]"
        stops = markers.setdefault((before, between), [])
        stops += [w for w in entry.get("STOP_WORDS") or () if w not in stops]
    return sorted(((b, m, tuple(w)) for (b, m), w in markers.items()), key=lambda t: -len(t[1]))


TEMPLATES: list[tuple[str, str, tuple[str, ...]]] = _sample_markers()
COMMON_STOPS = ("</s>", "<|endoftext|>", "<eos>")


def split_sample(text: str) -> tuple[str | None, str, str]:
    """Split a ``Sample output:`` text into (user input, prompt, answer) using XTuner's chat templates.

    The prompt ends at the first assistant marker of the template that matches; the answer is what
    follows, without the template's stop word. Unrecognised formats give (None, "", text).
    """
    for before, between, stops in TEMPLATES:
        cut = text.find(between)
        if cut < 0:
            continue
        start = text.rfind(before, 0, cut)
        user = text[start + len(before):cut] if start >= 0 else None
        prompt = text[: cut + len(between)]
        answer = text[cut + len(between):]
        for stop in (*stops, *COMMON_STOPS):
            idx = answer.find(stop)
            if idx >= 0:
                answer = answer[:idx]
        return user, prompt, answer.strip()
    return None, "", text.strip()


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


class LogParser:
    """Feed lines (without their newline) with `feed`; call `finish` at the end of the input.

    `mmengine_records=False` drops everything that comes through mmengine's logger and keeps only the
    other lines (tracebacks, stderr warnings): `RunFollower` reads stdout.log that way, because the same
    mmengine records also reach the log file, which it reads in full.
    """

    def __init__(self, source: str = "", *, mmengine_records: bool = True):
        self.source = source
        self.mmengine_records = mmengine_records
        self.iteration = 0  # the last training iteration seen (what a sample block belongs to)
        self.max_iters = 0
        self.phase = ""
        self.train_ended = False
        # The record in progress: (kind, ts, offset, lines). kind: sample | traceback | other
        self._kind: str | None = None
        self._ts: str | None = None
        self._offset = 0
        self._lines: list[str] = []

    # -- public -------------------------------------------------------------------------------------
    def feed(self, line: str, offset: int = 0) -> list[LogEvent]:
        if "\x1b" in line:
            line = ANSI.sub("", line)
        if line.startswith("[") and "rank" in line[:16]:
            line = RANK_PREFIX.sub("", line)
        m = HEADER.match(line)
        if m:
            out = self._close()
            year, stamp, _name, level, msg = m.groups()
            ts = f"{year}/{stamp}" if year else stamp
            if self.mmengine_records:
                out += self._record(ts, level, msg, offset)
            else:
                self._open("other", ts, offset)
            return out
        if self._kind == "traceback":
            return self._traceback_line(line, offset)
        if line.startswith("Traceback (most recent call last)"):
            out = self._close()
            self._open("traceback", None, offset, line)
            return out
        w = PY_WARNING.match(line)
        if w:
            return [*self._close(), WarningEvent(None, self.source, offset, f"{w.group(1)}: {w.group(2)}")]
        d = DS_LOG.match(line)
        if d:
            out = self._close()
            if d.group(1) == "WARNING":
                out.append(WarningEvent(None, self.source, offset, d.group(2)))
            else:
                out.append(self._error(d.group(2), offset))
            return out
        if self._kind is not None:
            if self._kind == "sample" and len(self._lines) < MAX_RECORD_LINES:
                self._lines.append(line)
            return []
        if OOM.search(line):
            return [ErrorEvent(None, self.source, offset, "oom", line.strip(), "", self.iteration or None)]
        return []

    def finish(self) -> list[LogEvent]:
        """End of input: emit the record in progress (a last sample block, an unfinished traceback)."""
        return self._close()

    # -- records ------------------------------------------------------------------------------------
    def _record(self, ts: str, level: str, msg: str, offset: int) -> list[LogEvent]:
        if msg.startswith("Iter(") or msg.startswith("Epoch("):
            return self._metrics(ts, msg, offset)
        if msg.startswith("Sample output:"):
            first = msg[len("Sample output:"):].strip()
            self._open("sample", ts, offset, *([first] if first else []))
            return []
        out: list[LogEvent] = []
        if level in ("ERROR", "CRITICAL"):
            ev = self._error(msg.strip(), offset)
            ev.ts = ts
            out.append(ev)
        elif level == "WARNING":
            out.append(WarningEvent(ts, self.source, offset, msg.strip()))
        elif m := SAVING.match(msg):
            out.append(CheckpointEvent(ts, self.source, offset, int(m.group(1))))
        elif m := HOOK_PHASE.match(msg):
            self.phase = m.group(1)
            if self.phase == "after_train" and not self.train_ended:
                self.train_ended = True
                out.append(TrainEndEvent(ts, self.source, offset, self.iteration))
        elif m := RESUMED.match(msg):
            self.iteration = int(m.group(2))
        self._open("other", ts, offset)
        return out

    def _metrics(self, ts: str, msg: str, offset: int) -> list[LogEvent]:
        m = ITER.match(msg)
        epoch = None
        if m:
            mode, it, total, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        else:
            e = EPOCH.match(msg)
            if not e:
                self._open("other", ts, offset)
                return []
            mode, epoch, it, total, rest = e.group(1), int(e.group(2)), int(e.group(3)), int(e.group(4)), e.group(5)
        named: dict = {}
        extra: dict[str, float] = {}
        # mmengine joins "key: value" pairs with two spaces (an eta like "1 day, 2:03:04" has single ones).
        for part in rest.split("  "):
            key, sep, value = part.partition(": ")
            if not sep:
                continue
            key, value = key.strip(), value.strip()
            if key == "eta":
                named["eta"] = value
            elif key in NAMED_METRICS:
                named[key] = _number(value)
            elif (num := _number(value)) is not None:
                extra[key] = num
        ev = MetricsEvent(ts, self.source, offset, mode, it, total, epoch, extra=extra, **named)
        out: list[LogEvent] = [ev]
        if mode == "train":
            self.iteration, self.max_iters = it, total
            if ev.loss is not None and not math.isfinite(ev.loss):
                out.append(ErrorEvent(ts, self.source, offset, "nan_loss", f"loss is {ev.loss} at iter {it}/{total}",
                                      msg, it))
            if it == total and not self.train_ended and epoch is None:
                self.train_ended = True
                out.append(TrainEndEvent(ts, self.source, offset, it))
        self._kind = None
        return out

    def _traceback_line(self, line: str, offset: int) -> list[LogEvent]:
        if line[:1] in (" ", "\t") or not line.strip() or line.startswith(CHAIN) or line.startswith("Traceback ("):
            if len(self._lines) < MAX_RECORD_LINES:
                self._lines.append(line)
            return []
        # The first unindented line ends the traceback: it is the exception itself.
        self._lines.append(line)
        detail = "\n".join(self._lines)
        kind = "oom" if OOM.search(line) else "traceback"
        ev = ErrorEvent(self._ts, self.source, self._offset, kind, line.strip(), detail, self.iteration or None)
        self._kind, self._lines = None, []
        return [ev]

    def _error(self, message: str, offset: int) -> ErrorEvent:
        kind = "oom" if OOM.search(message) else "error"
        return ErrorEvent(None, self.source, offset, kind, message, "", self.iteration or None)

    def _open(self, kind: str, ts: str | None, offset: int, *lines: str) -> None:
        self._kind, self._ts, self._offset, self._lines = kind, ts, offset, list(lines)

    def _close(self) -> list[LogEvent]:
        kind, lines = self._kind, self._lines
        self._kind, self._lines = None, []
        if kind == "sample":
            text = "\n".join(lines).strip("\n")
            user, prompt, answer = split_sample(text)
            return [SampleEvent(self._ts, self.source, self._offset, self.iteration, self.phase, user, prompt,
                                answer, text)]
        if kind == "traceback":  # cut off (the process died mid-write, or input ended)
            detail = "\n".join(lines)
            last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "Traceback")
            return [ErrorEvent(self._ts, self.source, self._offset, "oom" if OOM.search(detail) else "traceback",
                               last, detail, self.iteration or None)]
        return []


class LogFollower:
    """Follow one log file from a byte offset; `poll()` returns the events of the lines added since.

    Only complete lines are parsed: a line still being written stays unread until its newline arrives
    (or `finish()` is called at the end of the run). If the file is replaced or truncated, the follower
    starts over from its beginning. The reading is a `workbench.runs.tail.FileTail`'s. Not thread-safe: one
    follower belongs to one thread.
    """

    def __init__(self, path: str | os.PathLike, *, offset: int = 0, mmengine_records: bool = True,
                 max_bytes: int = 16 << 20):
        self.tail = FileTail(path, offset=offset, max_bytes=max_bytes)
        self.path = self.tail.path
        self.parser = LogParser(str(self.path), mmengine_records=mmengine_records)
        self._mmengine_records = mmengine_records

    @property
    def offset(self) -> int:
        return self.tail.offset

    @offset.setter
    def offset(self, value: int) -> None:
        self.tail.offset = value

    @property
    def bytes_read(self) -> int:
        """Bytes read from disk so far (what a "reads only new bytes" check looks at)."""
        return self.tail.bytes_read

    @property
    def size(self) -> int:
        return self.tail.size

    @property
    def behind(self) -> int:
        """Bytes in the file not parsed yet (the TUI shows a "catching up" state while this is large)."""
        return self.tail.behind

    def poll(self, max_bytes: int | None = None) -> list[LogEvent]:
        """Parse the complete lines appended since the last call (at most `max_bytes` of them)."""
        data = self.tail.read(max_bytes)
        return self._parse(data, self.tail.offset - len(data))

    def finish(self) -> list[LogEvent]:
        """Parse whatever is left, including a last line without a newline, and end open records."""
        data = self.tail.read_rest()
        start = self.tail.offset - len(data)
        if data and not data.endswith(b"\n"):
            data += b"\n"
        return self._parse(data, start) + self.parser.finish()

    def close(self) -> None:
        self.tail.close()

    def __enter__(self) -> LogFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------
    def _parse(self, data: bytes, pos: int) -> list[LogEvent]:
        if self.tail.restarted:  # a new file: what was parsed belonged to the old one
            self.parser = LogParser(str(self.path), mmengine_records=self._mmengine_records)
        events: list[LogEvent] = []
        feed = self.parser.feed
        for raw in data.split(b"\n")[:-1]:
            line = raw.decode("utf-8", "replace")
            if line.endswith("\r"):
                line = line[:-1]
            events += feed(line, pos)
            pos += len(raw) + 1
        return events


def parse_file(path: str | os.PathLike) -> list[LogEvent]:
    """Every event of a whole log file (for a finished run, or a test). Reads the file once, in chunks."""
    with LogFollower(path) as follower:
        return follower.finish()
