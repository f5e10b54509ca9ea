"""Helpers for the runs tests: the real `workbench` CLI in a subprocess, and polling with a deadline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from workbench.paths import configs_dir

TINY_CONFIG = configs_dir() / "tiny_cpu_lora.py"
RUN_DEADLINE_S = 600  # a 30-iteration run takes ~30 s alone on 2 cores; CI machines are shared


def cli(*args: str, home: Path, env: dict | None = None, timeout: float = 120, cwd: Path | None = None,
        check: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m workbench ARGS` with WORKBENCH_HOME=home; capture text output."""
    full_env = dict(os.environ, WORKBENCH_HOME=str(home), **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "workbench", *args], env=full_env, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"workbench {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(cond: Callable[[], object], timeout: float, what: str, every: float = 0.2):
    """Poll `cond` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def run_record(run_id: str, home: Path) -> dict:
    """The run as `workbench runs --json` reports it (status derived now)."""
    runs = json.loads(cli("runs", "--json", home=home, check=True).stdout)
    return next(r for r in runs if r["id"] == run_id)


def wait_ended(run_id: str, home: Path, timeout: float = RUN_DEADLINE_S) -> dict:
    def ended():
        record = run_record(run_id, home)
        return record if record["status"] != "running" else None

    return wait_for(ended, timeout, f"run {run_id} to end", every=1.0)


def session_alive(sid: int) -> list[int]:
    """Pids of live (non-zombie) processes in session `sid`."""
    from workbench.runs import procs

    return [p.pid for p in procs.session_members(sid)]
