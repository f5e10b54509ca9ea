"""Processes, as seen through /proc: is this pid still the process we started, who is in its session.

A pid alone can be reused after a reboot or a long time; a pid plus its start time (field 22 of
/proc/PID/stat, in clock ticks since boot) plus the boot id names one process for good. Off Linux the
checks fall back to `os.kill(pid, 0)`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    start_ticks: int


def has_proc() -> bool:
    return (PROC / "self" / "stat").exists()


def boot_id() -> str | None:
    try:
        return (PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None


def proc_info(pid: int) -> ProcInfo | None:
    """Parse /proc/PID/stat (None when the process is gone)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces and parentheses.
    rest = raw[raw.rfind(")") + 2:].split()
    try:
        return ProcInfo(pid, int(rest[1]), int(rest[2]), int(rest[3]), rest[0], int(rest[19]))
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    info = proc_info(pid)
    return info.start_ticks if info else None


def is_alive(pid: int | None, ticks: int | None = None, boot: str | None = None) -> bool:
    """True if `pid` runs and is the process that started at `ticks` on boot `boot` (zombies are dead)."""
    if not pid:
        return False
    if boot and boot_id() not in (None, boot):
        return False
    if has_proc():
        info = proc_info(pid)
        if info is None or info.state in ("Z", "X"):
            return False
        return ticks is None or info.start_ticks == ticks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def all_procs() -> list[ProcInfo]:
    out = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            info = proc_info(int(entry.name))
            if info is not None:
                out.append(info)
    return out


def session_members(sid: int, *, since_ticks: int | None = None) -> list[ProcInfo]:
    """Live (non-zombie) processes of session `sid`.

    A run's supervisor starts a new session, so its session holds the tool, torchrun's workers and the
    data loader workers, even one that moved itself into a new process group. `since_ticks` drops
    processes older than the run (a reused session id).
    """
    if not has_proc():
        try:
            os.killpg(sid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [ProcInfo(sid, 0, sid, sid, "R", 0)]
    return [p for p in all_procs()
            if p.sid == sid and p.state not in ("Z", "X") and (since_ticks is None or p.start_ticks >= since_ticks)]


def signal_session(sid: int, sig: int, *, since_ticks: int | None = None) -> int:
    """Send `sig` to every process group of session `sid`; return how many groups were signalled."""
    groups = {p.pgid for p in session_members(sid, since_ticks=since_ticks)}
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    return len(groups)


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(PROC / str(pid) / "cwd"))
    except OSError:
        return None


def find_training_process(work_dir: Path) -> ProcInfo | None:
    """A running `xtuner train ... --work-dir W` (started outside workbench) whose W is `work_dir`."""
    if not has_proc():
        return None
    work_dir = work_dir.resolve()
    found = []
    for p in all_procs():
        if p.state in ("Z", "X"):
            continue
        args = cmdline(p.pid)
        if "--work-dir" not in args or not any("train" in a for a in args):
            continue
        i = args.index("--work-dir")
        if i + 1 >= len(args):
            continue
        base = cwd(p.pid) or Path("/")
        if (base / args[i + 1]).resolve() == work_dir:
            found.append(p)
    # The oldest one is the launcher (xtuner's entry point or torchrun), the root of the tree.
    return min(found, key=lambda p: p.start_ticks) if found else None


def signal_name(code: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(code).name
    return f"signal {code}"
