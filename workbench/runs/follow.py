"""Follow a whole run: its mmengine log, its console capture and `vis_data/scalars.json`, all by offset.

`RunFollower(run).poll()` is the one call the TUI's worker thread and `workbench logs --follow` make. It
merges:
- the mmengine log file ``<work_dir>/<ts>/<ts>.log`` (rank 0 writes it; found once it appears): metrics,
  samples, checkpoint saves, warnings, mmengine errors;
- ``stdout.log`` in the run folder, for what only reaches the console: Python tracebacks, CUDA out of
  memory, stderr warnings (its copies of mmengine records are skipped, the log file has them);
- ``scalars.json``, to cross-check every logged loss against the full-precision value mmengine stored
  (a disagreement becomes a warning event);
and, once the process is gone, a `RunEndEvent` (plus an ``died`` error when training did not end).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path

from workbench.runs.events import ErrorEvent, LogEvent, MetricsEvent, RunEndEvent, WarningEvent
from workbench.runs.logparse import LogFollower
from workbench.runs.model import Run, RunStatus

TS_DIR = re.compile(r"^\d{8}_\d{6}$")


def timestamp_dirs(work_dir: str | Path) -> list[tuple[float, Path]]:
    """mmengine's ``<work_dir>/<YYYYmmdd_HHMMSS>/`` folders that hold a log, oldest first, with their time."""
    out = []
    try:
        entries = list(Path(work_dir).iterdir())
    except OSError:
        return []
    for d in entries:
        if TS_DIR.match(d.name) and (d / f"{d.name}.log").exists():
            when = dt.datetime.strptime(d.name, "%Y%m%d_%H%M%S").timestamp()  # local time, like mmengine
            out.append((when, d))
    return sorted(out)


def find_log_file(run: Run) -> Path | None:
    """The mmengine log of this run: the first timestamp folder made after it started (and before it ended).

    Several runs can share a work dir (a resume writes into the original's), so the folder is matched by
    time, not taken as "the newest".
    """
    if run.log_path:
        return Path(run.log_path)
    dirs = timestamp_dirs(run.work_dir)
    start = int(run.started_at) - 1  # the folder name has whole seconds
    end = run.ended_at + 1 if run.ended_at else None
    for when, d in dirs:
        if when >= start and (end is None or when <= end):
            return d / f"{d.name}.log"
    return None


_ITER_NAME = re.compile(r"iter_(\d+)\.pth$")


def resume_iteration(run: Run) -> int | None:
    """The iteration a resumed run continued from (from its ``iter_N.pth``), else None."""
    m = _ITER_NAME.search(run.resume_from or "")
    return int(m.group(1)) if m else None


def lineage_metrics(run: Run) -> list[MetricsEvent]:
    """The training metrics of the runs `run` resumed, up to where it took over, oldest first.

    A resumed run logs only from its checkpoint on; its curve starts with its parent's (and the parent's
    parent's...). Each event's `run_id` names the run that logged it. Empty for a run that resumed nothing.
    """
    from workbench.errors import BadInput
    from workbench.runs import registry
    from workbench.runs.logparse import parse_file

    chain: list[tuple[Run, int]] = []
    cur, upto, seen = run, resume_iteration(run), {run.id}
    while cur.parent_id and upto:
        try:
            parent = registry.get(cur.parent_id)
        except BadInput:  # the parent was removed from the registry: the curve starts where this run did
            break
        if parent.id in seen:
            break
        seen.add(parent.id)
        chain.append((parent, upto))
        cur, upto = parent, resume_iteration(parent)
    out: list[MetricsEvent] = []
    for parent, upto in reversed(chain):
        log = find_log_file(parent)
        if log is None or not log.is_file():
            continue
        start = resume_iteration(parent) or 0
        for ev in parse_file(log):
            if isinstance(ev, MetricsEvent) and ev.mode == "train" and start < ev.iter <= upto:
                ev.run_id = parent.id
                out.append(ev)
    return out


class ScalarsReader:
    """`vis_data/scalars.json` (one JSON object a logged iteration), read incrementally by offset."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.by_iter: dict[int, dict] = {}

    def poll(self) -> dict[int, dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return self.by_iter
        end = data.rfind(b"\n")
        if end < 0:
            return self.by_iter
        for raw in data[: end + 1].splitlines():
            try:
                row = json.loads(raw)
            except ValueError:
                continue
            if "iter" in row and "loss" in row:
                self.by_iter[int(row["iter"])] = row
        self.offset += end + 1
        return self.by_iter


def read_scalars(path: str | Path) -> dict[int, dict]:
    """Every training row of a scalars.json, keyed by iteration."""
    return ScalarsReader(path).poll()


def _agree(logged: float, stored: float) -> bool:
    if math.isnan(logged) or math.isnan(stored):
        return math.isnan(logged) and math.isnan(stored)
    # mmengine prints 4 decimals (or 4 significant digits in e-notation): allow that rounding.
    return abs(logged - stored) <= max(5.01e-5, 5.01e-4 * abs(stored))


class RunFollower:
    """Follow one run from its start (or from now with `from_start=False`); `poll()` returns new events.

    `done` turns True after the `RunEndEvent`; later polls return nothing. Status checks cost a few
    /proc reads and are made at most every `status_every` seconds.
    """

    def __init__(self, run: Run, *, from_start: bool = True, status_every: float = 1.0, lineage: bool = True):
        self.run = run
        self.from_start = from_start
        #: A resumed run's first poll starts with its parents' metrics up to the resume point
        #: (`lineage_metrics`, each with `run_id` set), so its loss curve is whole.
        self._stitch = lineage and from_start and bool(run.parent_id)
        self.status_every = status_every
        self.log: LogFollower | None = None
        self.console = LogFollower(run.stdout_path, mmengine_records=False)
        if not from_start:
            self.console.offset = self.console.size
        self.scalars: ScalarsReader | None = None
        self._unchecked: list[MetricsEvent] = []
        self._last_status = 0.0
        self.done = False
        self.train_ended = False
        self.last_iter = 0
        self.max_iters = run.max_iters or 0

    def poll(self) -> list[LogEvent]:
        if self.done:
            return []
        import time

        now = time.monotonic()
        ended = None
        if now - self._last_status >= self.status_every:
            self._last_status = now
            ended = self._ended_state()
        events = self._read()
        if self._stitch:
            self._stitch = False
            events = [*lineage_metrics(self.run), *events]
        if ended is not None:
            events += self._finish(ended)
        return events

    # -- internals ----------------------------------------------------------------------------------
    def _read(self, final: bool = False) -> list[LogEvent]:
        if self.log is None:
            path = find_log_file(self.run)
            if path is not None:
                self.log = LogFollower(path)
                if not self.from_start:
                    self.log.offset = self.log.size
                self.scalars = ScalarsReader(path.parent / "vis_data" / "scalars.json")
        events: list[LogEvent] = []
        if self.log is not None:
            events += self.log.finish() if final else self.log.poll()
        events += self.console.finish() if final else self.console.poll()
        for ev in events:
            if isinstance(ev, MetricsEvent) and ev.mode == "train":
                self.last_iter, self.max_iters = ev.iter, ev.max_iters
                if ev.loss is not None:
                    self._unchecked.append(ev)
            elif ev.kind == "train_end":
                self.train_ended = True
        return events + self._cross_check()

    def _cross_check(self) -> list[LogEvent]:
        if self.scalars is None or not self._unchecked:
            return []
        stored = self.scalars.poll()
        out: list[LogEvent] = []
        keep = []
        for ev in self._unchecked:
            row = stored.get(ev.iter)
            if row is None:
                keep.append(ev)
            elif not _agree(ev.loss, float(row["loss"])):  # type: ignore[arg-type]
                out.append(WarningEvent(ev.ts, str(self.scalars.path), 0,
                                        f"iter {ev.iter}: the log says loss {ev.loss}, scalars.json {row['loss']}"))
        self._unchecked = keep[-1000:]  # rows never written (a crash) must not pile up
        return out

    def _ended_state(self):
        from workbench.runs.state import derive_state

        state = derive_state(self.run)
        return state if state.status.ended else None

    def _finish(self, state) -> list[LogEvent]:
        events = self._read(final=True)
        self.done = True
        if state.status in (RunStatus.FAILED, RunStatus.LOST) and not self.train_ended:
            where = f" at iter {self.last_iter}/{self.max_iters}" if self.max_iters else ""
            events.append(ErrorEvent(None, "", 0, "died",
                                     f"the training process ended{where} without reaching after_train"
                                     + (f": {state.reason}" if state.reason else ""), "", self.last_iter or None))
        events.append(RunEndEvent(None, "", 0, state.status.value, state.exit_code, state.reason))
        return events

    def close(self) -> None:
        self.console.close()
        if self.log is not None:
            self.log.close()
