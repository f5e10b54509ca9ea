"""Turn mmengine/XTuner training logs into events, line by line, and follow a log file by byte offset.

Two layers:
- `LogParser`: a state machine fed one decoded line at a time. It understands mmengine's file format
  (``2026/11/23 10:37:44 - mmengine - INFO - msg``) and its console format (no year), multi-line records
  (EvaluateChatHook's ``Sample output:`` blocks, the config dump), and the lines a console capture mixes in
  from stderr (Python tracebacks, Python and DeepSpeed warnings, CUDA out-of-memory messages).
- `LogFollower`: owns a file and a byte offset. `poll()` reads only the bytes appended since the last call
  (``os.pread`` from the stored offset), so following a million-line log costs no more than a short one.
  It is what the TUI calls from a worker thread; it touches nothing but its own file.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from workbench.runs.events import (
    CheckpointEvent,
    ErrorEvent,
    LogEvent,
    MetricsEvent,
    SampleEvent,
    TrainEndEvent,
    WarningEvent,
)

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

# (text before the input, text between the input and the answer, stop words) of XTuner 0.2.0's
# PROMPT_TEMPLATE, longest marker first so that e.g. llama3 wins over a bare "[/INST]".
TEMPLATES: list[tuple[str, str, tuple[str, ...]]] = sorted(
    [
        ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n", ("<|im_end|>", "<|endoftext|>")),
        ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
         ("<|eot_id|>",)),
        ("<|START_OF_TURN_TOKEN|><|USER_TOKEN|>", "<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
         ("<|END_OF_TURN_TOKEN|>",)),
        ("<start_of_turn>user\n", "<end_of_turn>\n<start_of_turn>model\n", ("<end_of_turn>",)),
        ("<|user|>\n", "<|end|>\n<|assistant|>\n", ("<|end|>",)),
        ("<|user|>\n", "\n<|assistant|>\n", ()),
        ("<|user|>\n", "<|assistant|>\n", ()),
        ("<|User|>:", "<eoh>\n<|Bot|>:", ("<eoa>",)),
        ("<|User|>:", "\n<|Bot|>:", ()),
        ("<|Human|>: ", "<eoh>\n", ("<eoc>", "<eom>")),
        ("User: ", "\n\nAssistant: ", ("<｜end▁of▁sentence｜>",)),
        ("### Instruction:\n", "\n\n### Response:", ()),
        ("### Instruction:\n", "\n### Response:\n", ()),
        ("<reserved_106>", "<reserved_107>", ()),
        ("<reserved_102>", "<reserved_103>", ()),
        ("问：", "\n\n答：", ()),
        ("USER: ", " ASSISTANT:", ()),
        ("<用户> ", " <AI>", ()),
        ("[INST] ", " [/INST]", ()),
    ],
    key=lambda t: -len(t[1]),
)
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
    starts over from its beginning. Not thread-safe: one follower belongs to one thread.
    """

    def __init__(self, path: str | os.PathLike, *, offset: int = 0, mmengine_records: bool = True,
                 max_bytes: int = 16 << 20):
        self.path = Path(path)
        self.offset = offset
        self.max_bytes = max_bytes
        self.parser = LogParser(str(self.path), mmengine_records=mmengine_records)
        self._mmengine_records = mmengine_records
        self._fd: int | None = None
        self._ino: int | None = None
        #: Bytes read from disk so far (what a "reads only new bytes" check looks at).
        self.bytes_read = 0

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    @property
    def behind(self) -> int:
        """Bytes in the file not parsed yet (the TUI shows a "catching up" state while this is large)."""
        return max(0, self.size - self.offset)

    def poll(self, max_bytes: int | None = None) -> list[LogEvent]:
        """Parse the complete lines appended since the last call (at most `max_bytes` of them)."""
        fd = self._open()
        if fd is None:
            return []
        size = os.fstat(fd).st_size
        if size < self.offset:  # truncated or rewritten: start again
            self._reset(0)
            return self.poll(max_bytes)
        limit = min(size, self.offset + (max_bytes or self.max_bytes))
        if limit <= self.offset:
            return []
        data = os.pread(fd, limit - self.offset, self.offset)
        self.bytes_read += len(data)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) < (max_bytes or self.max_bytes):
                return []
            end = len(data) - 1  # one line longer than a whole poll: take it as it is
        return self._parse(data[: end + 1])

    def finish(self) -> list[LogEvent]:
        """Parse whatever is left, including a last line without a newline, and end open records."""
        events = []
        while True:
            batch = self.poll()
            events += batch
            if not batch or self.behind == 0:
                break
        fd = self._open()
        if fd is not None:
            size = os.fstat(fd).st_size
            if size > self.offset:
                tail = os.pread(fd, size - self.offset, self.offset)
                self.bytes_read += len(tail)
                events += self._parse(tail + b"\n", consumed=len(tail))
        return events + self.parser.finish()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LogFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------
    def _parse(self, data: bytes, consumed: int | None = None) -> list[LogEvent]:
        events: list[LogEvent] = []
        pos = self.offset
        feed = self.parser.feed
        for raw in data.split(b"\n")[:-1]:
            line = raw.decode("utf-8", "replace")
            if line.endswith("\r"):
                line = line[:-1]
            events += feed(line, pos)
            pos += len(raw) + 1
        self.offset += len(data) if consumed is None else consumed
        return events

    def _open(self) -> int | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        if self._fd is not None and st.st_ino != self._ino:
            self._reset(0)
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            self._ino = os.fstat(self._fd).st_ino
        return self._fd

    def _reset(self, offset: int) -> None:
        self.close()
        self.offset = offset
        self.parser = LogParser(str(self.path), mmengine_records=self._mmengine_records)


def parse_file(path: str | os.PathLike) -> list[LogEvent]:
    """Every event of a whole log file (for a finished run, or a test). Reads the file once, in chunks."""
    with LogFollower(path) as follower:
        return follower.finish()
