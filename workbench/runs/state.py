"""Derive a run's status from the process and the files, never from memory.

The rules (docs/runs.md repeats them):
1. the supervisor (pid + start time + boot id from ``pid.json``) or any process of its session is alive
   -> running;
2. else ``stop.json`` exists (written by `workbench stop` before its first signal) -> stopped;
3. else ``exit.json`` (written by the supervisor when the tool exits) -> finished if the code is 0,
   failed otherwise, with the reason taken from the end of ``stdout.log`` (the last exception line);
4. else -> lost (a reboot, or the supervisor itself was SIGKILLed).
Because nothing here depends on a workbench process having stayed alive, the answer is right after a
reboot, an SSH drop or a crash of workbench itself.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.runs import procs
from workbench.runs.events import ErrorEvent
from workbench.runs.logparse import LogParser
from workbench.runs.model import Run, RunStatus

STARTING_GRACE_S = 60.0  # a run with no pid.json yet is "starting", not lost, for this long
TAIL_BYTES = 256 << 10


@dataclass
class RunState:
    status: RunStatus
    exit_code: int | None = None
    ended_at: float | None = None
    reason: str | None = None
    pid: int | None = None


def exit_fallback(run_dir: Path) -> Path:
    """The supervisor's record of the exit when the run's folder could not take ``exit.json`` (a full disk)."""
    from workbench.runs.supervise import exit_fallback as where

    return where(run_dir)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _tail_lines(path: Path, nbytes: int = TAIL_BYTES) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - nbytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if size > nbytes else lines  # the first line may be cut


def last_error(path: Path, *, mmengine_records: bool = False) -> ErrorEvent | None:
    """The most telling error at the end of a log: the last exception that is not torchrun's summary."""
    parser = LogParser(str(path), mmengine_records=mmengine_records)
    errors: list[ErrorEvent] = []
    for line in _tail_lines(path):
        errors += [e for e in parser.feed(line) if isinstance(e, ErrorEvent)]
    errors += [e for e in parser.finish() if isinstance(e, ErrorEvent)]
    if not errors:
        return None
    real = [e for e in errors if "ChildFailedError" not in e.message]
    oom = [e for e in real if e.error == "oom"]
    return (oom or real or errors)[-1]


#: A Python exception's last line, as printed at the end of a traceback, also with torchrun's ``[rank0]:``
#: prefix. Matched line by line, so tracebacks of several ranks printed into each other still give it.
_EXCEPTION_LINE = re.compile(r"^(?:\[(?:default)?rank\d+\]:\s?)?((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*"
                             r"(?:Error|Exception|Interrupt|Failure|Warning)(?::.*)?)$")
#: Lines that end every torchrun failure and say nothing about the cause.
_LAUNCHER_NOISE = ("ChildFailedError", "SignalException")


def last_exception_line(lines: list[str]) -> str | None:
    """The last exception line of a console capture that is not the launcher's own summary."""
    for line in reversed(lines):
        m = _EXCEPTION_LINE.match(line.rstrip())
        if m and not any(n in m.group(1) for n in _LAUNCHER_NOISE) and "Warning" not in m.group(1).split(":")[0]:
            return m.group(1).strip()
    return None


#: Less free space than this where the run wrote, at its end, and a failure is put down to the full disk.
LOW_DISK_BYTES = 64 << 20
_DISK_FULL = re.compile(r"No space left on device|Errno 28|ENOSPC|file write failed|Disk quota exceeded")


def failure_reason(run: Run, code: int | None, exit_info: dict | None = None) -> str:
    """One line saying why a run failed, from its own output: an out-of-memory error, else a full disk (the
    free space the supervisor recorded at the end, or the error saying so), else the last exception (of any
    rank; torchrun's summary skipped), else mmengine's last ERROR, else the signal that killed it, else the last
    lines the tool printed. Never just "exit code 1" when the output says more."""
    lines = _tail_lines(run.stdout_path)
    err = last_error(run.stdout_path)
    if err is not None and err.error == "oom":
        return err.message
    exc = last_exception_line(lines)
    free = (exit_info or {}).get("disk_free_bytes")
    if (free is not None and free < LOW_DISK_BYTES) or (exc and _DISK_FULL.search(exc)) or (
            exit_info or {}).get("exit_json_error"):
        where = f"{free / 2**20:.1f} MiB free" if free is not None else "full"
        said = f" ({exc})" if exc else ""
        return f"no space left on device: the run's disk was {where} when it ended ({run.run_dir}){said}"[:400]
    if exc:
        return exc
    if err is None and run.log_path:
        err = last_error(Path(run.log_path), mmengine_records=True)
    if err is not None:
        return err.message
    if code is not None and code < 0:
        name = procs.signal_name(-code)
        return f"killed by {name}" + (" (the kernel's out-of-memory killer sends this)" if name == "SIGKILL" else "")
    last = [ln.strip() for ln in lines if ln.strip()][-2:]
    if last:
        return f"exit code {code}: " + " | ".join(last)[-300:]
    return f"exit code {code}" if code is not None else "ended without an exit code"


def derive_state(run: Run) -> RunState:
    """The run's status now (see the module docstring for the rules)."""
    if run.imported:
        return _derive_imported(run)
    rd = Path(run.run_dir)
    pid_info = read_json(rd / "pid.json") or {}
    exit_info = read_json(rd / "exit.json") or read_json(exit_fallback(rd))
    stop_info = read_json(rd / "stop.json")
    pid = pid_info.get("pid") or run.pid
    sid = pid_info.get("sid") or run.pgid
    ticks = pid_info.get("start_ticks", run.meta.get("start_ticks"))
    boot = pid_info.get("boot_id", run.meta.get("boot_id"))
    host = pid_info.get("host") or run.host

    if exit_info is None and host and host != socket.gethostname():
        return RunState(RunStatus.RUNNING, reason=f"runs on {host}: its process cannot be checked from here",
                        pid=pid)
    alive = procs.is_alive(pid, ticks, boot)
    if not alive and sid and exit_info is None and (not boot or boot == procs.boot_id()):
        alive = bool(procs.session_members(sid, since_ticks=ticks))
    if alive and exit_info is None:
        return RunState(RunStatus.RUNNING, pid=pid)
    if not pid_info and exit_info is None and time.time() - run.started_at < STARTING_GRACE_S:
        return RunState(RunStatus.RUNNING, reason="starting", pid=pid)

    code = exit_info.get("code") if exit_info else None
    ended = (exit_info or {}).get("ended_at") or (stop_info or {}).get("ended_at") or _mtime(run.stdout_path)
    if stop_info is not None:
        how = stop_info.get("signal")
        return RunState(RunStatus.STOPPED, code, ended, "stopped by `workbench stop`" + (f" ({how})" if how else ""))
    if exit_info is not None:
        if code == 0:
            return RunState(RunStatus.FINISHED, 0, ended)
        return RunState(RunStatus.FAILED, code, ended, failure_reason(run, code, exit_info))
    if boot and boot == procs.boot_id():
        why = "the supervisor was killed (no exit was recorded; its training process was ended with it)"
    elif boot:
        why = "the machine rebooted while it ran (no exit was recorded)"
    else:
        why = "no process and no recorded exit: the machine rebooted or the supervisor was killed"
    return RunState(RunStatus.LOST, None, ended, why)


def _derive_imported(run: Run) -> RunState:
    proc = procs.find_training_process(Path(run.work_dir)) if run.meta.get("newest", True) else None
    if proc is not None:
        return RunState(RunStatus.RUNNING, pid=proc.pid)
    log = Path(run.log_path) if run.log_path else None
    ended = _mtime(log) if log else None
    if log is not None:
        parser = LogParser(str(log))
        last_iter = total = 0
        for line in _tail_lines(log, 1 << 20):
            for ev in parser.feed(line):
                if ev.kind == "metrics" and ev.mode == "train":  # type: ignore[attr-defined]
                    last_iter, total = ev.iter, ev.max_iters  # type: ignore[attr-defined]
        if parser.train_ended:
            return RunState(RunStatus.FINISHED, None, ended)
        if total:
            return RunState(RunStatus.LOST, None, ended,
                            f"ended at iter {last_iter}/{total}; started outside workbench, so no exit code was kept")
    return RunState(RunStatus.LOST, None, ended, "started outside workbench and not running: its end is unknown")


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime if path else None
    except OSError:
        return None
