"""The detached supervisor of one run: ``python -m workbench.runs.supervise RUN_DIR -- CMD...``.

The launcher starts this in a new session (so an SSH hang-up, closing the TUI or killing the launcher
does not reach it), with stdin from /dev/null and stdout/stderr already pointing at RUN_DIR/stdout.log.
It writes ``pid.json``, runs CMD (the training tool) in the same session, waits, and writes ``exit.json``
(the tool's real exit code, negative for a signal, and the end time) atomically. That file is how the
status of a run is known later without any workbench process having stayed alive.

SIGINT and SIGTERM sent to the session by `workbench stop` reach the tool directly; the supervisor only
notes them and keeps waiting, so it can still record how the tool ended. If the supervisor itself is
killed, the tool gets SIGTERM (PR_SET_PDEATHSIG) instead of training on unrecorded.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from workbench import atomic
from workbench.runs import procs


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m workbench.runs.supervise RUN_DIR -- CMD...", file=sys.stderr)
        return 2
    run_dir, cmd = Path(argv[0]), argv[2:]
    pid = os.getpid()
    atomic.write_json(run_dir / "pid.json", {
        "pid": pid, "sid": os.getsid(0), "pgid": os.getpgid(0), "start_ticks": procs.start_ticks(pid),
        "boot_id": procs.boot_id(), "host": socket.gethostname(), "started_at": time.time(), "command": cmd,
    })
    received: list[str] = []

    def note(signum: int, _frame: object) -> None:
        # A Python handler, not SIG_IGN: handlers are reset in the child at exec, SIG_IGN would be inherited.
        received.append(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, note)
    try:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent(pid))
    except OSError as exc:
        print(f"workbench: could not start {cmd[0]}: {exc}", file=sys.stderr, flush=True)
        _write_exit(run_dir, 127, received)
        return 127
    code = child.wait()
    _write_exit(run_dir, code, received)
    return code if code >= 0 else 128 - code


def _die_with_parent(parent: int):
    """A preexec function: the tool gets SIGTERM when the supervisor dies (even by SIGKILL), so a killed
    supervisor leaves no training process behind that nobody records; torchrun passes SIGTERM on to its
    workers. Linux only (prctl); elsewhere the tool outlives a killed supervisor, as before."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None

    def set_pdeathsig() -> None:
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return set_pdeathsig if sys.platform.startswith("linux") else None


def exit_fallback(run_dir: Path) -> Path:
    """Where the exit is recorded when the run's own folder cannot take it (its disk is full): workbench's state
    folder, on another disk as a rule. `derive_state` reads it when ``exit.json`` is missing."""
    from workbench.paths import data_dir

    return data_dir() / "run-exits" / f"{run_dir.name}.json"


def _write_exit(run_dir: Path, code: int, received: list[str]) -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # stdout.log is on a full disk: the exit is still recorded below
        pass
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    info: dict = {"code": code, "ended_at": time.time(), "signals_received": received,
                  "max_rss_mb": round(usage.ru_maxrss / 1024, 1)}  # Linux reports KiB
    if code < 0:
        info["signal"] = procs.signal_name(-code)
    try:  # the free space where the run wrote, so a failure on a full disk is named as such
        info["disk_free_bytes"] = shutil.disk_usage(run_dir).free
    except OSError:
        pass
    try:
        atomic.write_json(run_dir / "exit.json", info)
    except OSError as exc:
        info["exit_json_error"] = f"{run_dir / 'exit.json'}: {exc.strerror or exc}"
        atomic.write_json(exit_fallback(run_dir), info)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
