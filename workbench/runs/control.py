"""Stop a run: SIGINT, then SIGTERM, then SIGKILL to every process of its session, with grace periods.

The supervisor started the run in a new session, so the session holds everything the run spawned
(torchrun's workers, data loader workers, even a child that made its own process group). Stopping ends
when no process of the session is left, so nothing is orphaned.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from workbench import atomic
from workbench.errors import BadInput, OperationFailed
from workbench.progress import ProgressFn
from workbench.runs import procs, registry
from workbench.runs.model import Run
from workbench.runs.state import read_json

#: Seconds to wait after each signal: SIGINT lets mmengine unwind, SIGTERM is firmer, SIGKILL is final.
GRACE: dict[int, float] = {signal.SIGINT: 20.0, signal.SIGTERM: 10.0, signal.SIGKILL: 5.0}


def _targets(run: Run) -> tuple[str, int, int | None]:
    """("session" | "group", id, start ticks) of what to signal."""
    if run.imported:
        # Started from a user's shell: its session is the shell's. Only its own process group is ours to stop.
        info = procs.proc_info(run.pid) if run.pid else None
        if info is None:
            raise BadInput(f"run {run.id}: its process is gone")
        return "group", info.pgid, None
    pid_info = read_json(Path(run.run_dir) / "pid.json") or {}
    host = pid_info.get("host") or run.host
    if host and host != socket.gethostname():
        raise BadInput(f"run {run.id} runs on {host}; stop it there (`workbench stop {run.id}` on {host})")
    sid = pid_info.get("sid") or run.pgid
    if not sid:
        raise BadInput(f"run {run.id}: no process recorded for it")
    return "session", sid, pid_info.get("start_ticks", run.meta.get("start_ticks"))


def _members(kind: str, ident: int, ticks: int | None) -> list[procs.ProcInfo]:
    if kind == "session":
        return procs.session_members(ident, since_ticks=ticks)
    return [p for p in procs.all_procs() if p.pgid == ident and p.state not in ("Z", "X")]


def stop_run(ref: str | Run, *, grace: dict[int, float] | None = None, progress: ProgressFn | None = None) -> Run:
    """Stop a running run and wait until none of its processes is left; return it with its new status.

    `grace` maps a signal to the seconds to wait after it (default `GRACE`). A run that already ended is
    a `BadInput`; a process that survives SIGKILL (stuck in the kernel) is an `OperationFailed`.
    """
    run = registry.get(ref) if isinstance(ref, str) else registry.refresh(ref)
    if run.status.ended:
        raise BadInput(f"run {run.id} already ended ({run.status.value}); nothing to stop")
    kind, ident, ticks = _targets(run)
    stop_file = Path(run.run_dir) / "stop.json"
    info = {"requested_at": time.time(), "by_pid": os.getpid(), "host": socket.gethostname(), "signal": None}
    if not run.imported:
        atomic.write_json(stop_file, info)
    waits = {**GRACE, **(grace or {})}
    for step, sig in enumerate((signal.SIGINT, signal.SIGTERM, signal.SIGKILL), start=1):
        if progress:
            progress(step, 3, f"{sig.name} to run {run.id}")
        if kind == "session":
            procs.signal_session(ident, sig, since_ticks=ticks)
        else:
            try:
                os.killpg(ident, sig)
            except ProcessLookupError:
                pass
        info["signal"] = sig.name
        deadline = time.monotonic() + waits[sig]
        while time.monotonic() < deadline and _members(kind, ident, ticks):
            time.sleep(0.1)
        if not _members(kind, ident, ticks):
            break
    left = _members(kind, ident, ticks)
    info["ended_at"] = time.time()
    if not run.imported:
        atomic.write_json(stop_file, info)
    else:
        registry.update(run.id, status="stopped", ended_at=info["ended_at"], reason=f"stopped ({info['signal']})")
    if left:
        raise OperationFailed(f"run {run.id}: {len(left)} process(es) survived SIGKILL: "
                              + ", ".join(str(p.pid) for p in left[:5]))
    return registry.get(run.id)
