"""Status is derived from processes and files (so it is right after a reboot or a workbench crash)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from workbench import atomic
from workbench.runs import procs, registry
from workbench.runs.model import Run, RunStatus
from workbench.runs.state import derive_state


def make_run(tmp_path, **pid_fields) -> Run:
    run_dir = tmp_path / "work" / "workbench" / "abc123"
    run_dir.mkdir(parents=True)
    if pid_fields:
        atomic.write_json(run_dir / "pid.json", {"host": "", **pid_fields})
    return Run(id="abc123", name="t", config_path="c.py", work_dir=str(tmp_path / "work"), run_dir=str(run_dir),
               started_at=time.time() - 3600)


def test_a_live_supervisor_means_running(tmp_path):
    me = os.getpid()
    run = make_run(tmp_path, pid=me, sid=os.getsid(0), start_ticks=procs.start_ticks(me), boot_id=procs.boot_id())
    assert derive_state(run).status is RunStatus.RUNNING


def test_a_reused_pid_is_not_taken_for_the_run(tmp_path):
    # Same pid, different start time: another process got the pid after a reboot or a long time.
    me = os.getpid()
    run = make_run(tmp_path, pid=me, sid=None, start_ticks=procs.start_ticks(me) - 1, boot_id=procs.boot_id())
    state = derive_state(run)
    assert state.status is RunStatus.LOST and "no exit was recorded" in state.reason


def test_another_boot_means_the_process_is_gone(tmp_path):
    me = os.getpid()
    run = make_run(tmp_path, pid=me, sid=os.getsid(0), start_ticks=procs.start_ticks(me), boot_id="not-this-boot")
    assert derive_state(run).status is RunStatus.LOST


def dead_pid() -> tuple[int, int]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = procs.start_ticks(proc.pid)
    proc.wait()
    return proc.pid, ticks


@pytest.mark.parametrize(("exit_info", "stop", "status", "reason"), [
    ({"code": 0}, False, RunStatus.FINISHED, None),
    ({"code": 1}, False, RunStatus.FAILED, "FileNotFoundError: Unable to find '/nope.json'"),
    ({"code": -9}, False, RunStatus.FAILED, "FileNotFoundError: Unable to find '/nope.json'"),
    ({"code": 1}, True, RunStatus.STOPPED, "stopped by `workbench stop` (SIGINT)"),
    (None, True, RunStatus.STOPPED, "stopped by `workbench stop` (SIGINT)"),
])
def test_exit_and_stop_records_decide_the_end_status(tmp_path, exit_info, stop, status, reason):
    pid, ticks = dead_pid()
    run = make_run(tmp_path, pid=pid, sid=pid, start_ticks=ticks, boot_id=procs.boot_id())
    run.stdout_path.write_text("noise\nTraceback (most recent call last):\n  File \"x.py\", line 3, in f\n"
                               "FileNotFoundError: Unable to find '/nope.json'\n", encoding="utf-8")
    if exit_info is not None:
        atomic.write_json(f"{run.run_dir}/exit.json", {**exit_info, "ended_at": 123.0})
    if stop:
        atomic.write_json(f"{run.run_dir}/stop.json", {"signal": "SIGINT", "ended_at": 124.0})
    state = derive_state(run)
    assert (state.status, state.reason) == (status, reason)
    assert state.exit_code == (exit_info or {}).get("code")


def test_a_signal_without_a_traceback_is_named(tmp_path):
    pid, ticks = dead_pid()
    run = make_run(tmp_path, pid=pid, sid=pid, start_ticks=ticks, boot_id=procs.boot_id())
    atomic.write_json(f"{run.run_dir}/exit.json", {"code": -9, "ended_at": 1.0})
    assert derive_state(run).reason.startswith("killed by SIGKILL")


def test_registry_stores_the_end_once_derived_and_finds_runs_by_prefix_and_name(tmp_path, wb_home):
    pid, ticks = dead_pid()
    run = make_run(tmp_path, pid=pid, sid=pid, start_ticks=ticks, boot_id=procs.boot_id())
    atomic.write_json(f"{run.run_dir}/exit.json", {"code": 0, "ended_at": 99.0})
    registry.add(run, "config text")
    got = registry.get("abc")
    assert (got.status, got.exit_code, got.ended_at) == (RunStatus.FINISHED, 0, 99.0)
    os.unlink(f"{run.run_dir}/exit.json")  # stored: no longer derived
    assert registry.get("t").status is RunStatus.FINISHED
    assert registry.config_text("abc123") == "config text"
