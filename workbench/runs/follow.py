"""Follow a whole run: its mmengine log, its console capture and `vis_data/scalars.json`, all by offset.

`RunFollower(run).poll()` returns a run's new events; `follow_run` is the loop around it that `workbench logs`,
the demo and the TUI's Runs screen run. It merges:
- the mmengine log file ``<work_dir>/<ts>/<ts>.log`` (rank 0 writes it; found once it appears): metrics,
  samples, checkpoint saves, warnings, mmengine errors;
- ``stdout.log`` in the run folder, for what only reaches the console: Python tracebacks, CUDA out of
  memory, stderr warnings (its copies of mmengine records are skipped, the log file has them);
- ``scalars.json``, to cross-check every logged loss against the full-precision value mmengine stored
  (a disagreement becomes a warning event);
and, once the process is gone, a `RunEndEvent` (plus an ``died`` error when training did not end).

`latest_metrics(run)` (and `LatestMetrics` for many runs) is a run's progress, loss and eta from the tail of
its log: the runs list of `workbench runs` and of the TUI. `wait_until_ended` waits for a run's end by its
status alone.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Container
from pathlib import Path

from workbench.runs.events import ErrorEvent, LogEvent, MetricsEvent, RunEndEvent, WarningEvent
from workbench.runs.logparse import LogFollower
from workbench.runs.model import Run, RunStatus
from workbench.runs.tail import FileTail
from workbench.xtuner.workdir import WorkDir, checkpoint_iter


def timestamp_dirs(work_dir: str | Path) -> list[tuple[float, Path]]:
    """mmengine's ``<work_dir>/<YYYYmmdd_HHMMSS>/`` folders that hold a log, oldest first (`WorkDir.log_dirs`)."""
    return WorkDir(work_dir).log_dirs()


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


def resume_iteration(run: Run) -> int | None:
    """The iteration a resumed run continued from (from its ``iter_N.pth``), else None."""
    return checkpoint_iter(run.resume_from) if run.resume_from else None


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
        self.tail = FileTail(path)
        self.path = self.tail.path
        self.by_iter: dict[int, dict] = {}

    def poll(self) -> dict[int, dict]:
        while data := self.tail.read():
            if self.tail.restarted:
                self.by_iter = {}
            for raw in data.splitlines():
                try:
                    row = json.loads(raw)
                except ValueError:
                    continue
                if "iter" in row and "loss" in row:
                    self.by_iter[int(row["iter"])] = row
        return self.by_iter

    def close(self) -> None:
        self.tail.close()


def read_scalars(path: str | Path) -> dict[int, dict]:
    """Every training row of a scalars.json, keyed by iteration."""
    reader = ScalarsReader(path)
    try:
        return reader.poll()
    finally:
        reader.close()


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
        if self.scalars is not None:
            self.scalars.close()


# -- the loops every front end runs over a run ----------------------------------------------------------
def follow_run(run: Run, on_events: Callable[[list[LogEvent], RunFollower], None],
               cancel: threading.Event | None = None, *, until_end: bool = True, idle: float = 0.5,
               busy: float = 0.0) -> bool:
    """The poll-until-done loop of `workbench logs --follow`, the demo and the Runs screen: a `RunFollower`
    over `run` from its start, each poll's events handed to `on_events(events, follower)` (also an empty
    batch: the follower may have found its log file). It waits `idle` seconds after a poll with no events,
    `busy` after one with some.

    Ends when the run has ended and its last events were handed over (returns True), when `cancel` is set,
    or, with `until_end=False`, once everything written so far was read (both return False)."""
    follower = RunFollower(run)
    try:
        while cancel is None or not cancel.is_set():
            events = follower.poll()
            on_events(events, follower)
            if follower.done:
                return True
            if not until_end and not events and all(f.behind == 0 for f in (follower.log, follower.console) if f):
                return False
            pause = busy if events else idle
            if pause and cancel is not None:
                cancel.wait(pause)
            elif pause:
                time.sleep(pause)
        return False
    finally:
        follower.close()


def wait_until_ended(run_id: str, cancel: threading.Event | None = None, interval: float = 1.0) -> Run | None:
    """Wait for a run to end without reading its logs (its status, from the registry, every `interval`
    seconds); returns the ended `Run`, or None when `cancel` was set first."""
    from workbench.runs import registry

    while cancel is None or not cancel.is_set():
        run = registry.get(run_id)
        if run.status.ended:
            return run
        if cancel is not None:
            cancel.wait(interval)
        else:
            time.sleep(interval)
    return None


TAIL_BYTES = 256 << 10  # the latest metrics of a run are looked for this far before its log's end


def latest_metrics(run: Run, tail_bytes: int = TAIL_BYTES) -> MetricsEvent | None:
    """The last training metrics a run logged (progress ``iter``/``max_iters``, ``loss``, ``eta``...), read
    from the tail of its mmengine log; None before it logged any."""
    path = find_log_file(run)
    if path is None or not path.exists():
        return None
    with LogFollower(path, offset=max(0, path.stat().st_size - tail_bytes)) as follower:
        events = follower.poll()
    return _last_train(events)


def _last_train(events: list[LogEvent]) -> MetricsEvent | None:
    return next((ev for ev in reversed(events) if isinstance(ev, MetricsEvent) and ev.mode == "train"), None)


class LatestMetrics:
    """`latest_metrics` of many runs, kept up to date: a running run's log is followed by offset (one tail
    each, from `tail_bytes` before its end), an ended run's read once (its numbers no longer change).

    `update(runs, followed=...)` skips the running runs whose log the caller already follows (the Runs
    screen's selected run has a `RunFollower`), so no log is read twice. Not thread-safe: one caller at a
    time (the Runs screen holds a lock around it).
    """

    def __init__(self, tail_bytes: int = TAIL_BYTES):
        self.tail_bytes = tail_bytes
        self.latest: dict[str, MetricsEvent] = {}
        self._tails: dict[str, LogFollower] = {}
        self._read_once: set[str] = set()

    def update(self, runs: list[Run], followed: Container[str] = ()) -> dict[str, MetricsEvent]:
        """The latest train metrics of every run of `runs` that logged some, by run id."""
        for run in runs:
            if run.status.ended or run.id in followed:
                self._drop(run.id)
                if run.status.ended and run.id not in self._read_once:
                    self._read_once.add(run.id)
                    if (last := latest_metrics(run, self.tail_bytes)) is not None:
                        self.latest[run.id] = last
                continue
            tail = self._tails.get(run.id)
            if tail is None:
                path = find_log_file(run)
                if path is None or not path.exists():
                    continue
                tail = self._tails[run.id] = LogFollower(path, offset=max(0, path.stat().st_size - self.tail_bytes))
            if (last := _last_train(tail.poll())) is not None:
                self.latest[run.id] = last
        return dict(self.latest)

    def _drop(self, run_id: str) -> None:
        tail = self._tails.pop(run_id, None)
        if tail is not None:
            tail.close()

    def close(self) -> None:
        for run_id in list(self._tails):
            self._drop(run_id)
