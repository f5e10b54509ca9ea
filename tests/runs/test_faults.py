"""Faults injected into the real runs core: processes killed with SIGKILL, damaged checkpoints, a locked
registry, a log truncated or rotated while it is followed. docs/reliability.md lists them with their outcome.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workbench import atomic
from workbench.runs import procs, registry
from workbench.runs.follow import RunFollower
from workbench.runs.model import Run, RunStatus

from .helpers import RUN_DEADLINE_S, TINY_CONFIG, cli, run_record, session_alive, wait_ended, wait_for
from .test_cli_errors import one_line_error

LINE = ("2026/11/23 10:37:{s:02d} - mmengine - INFO - Iter(train) [{i}/100]  lr: 1.0000e-03  eta: 0:00:01  "
        "time: 0.1000  data_time: 0.0100  grad_norm: 1.0000  loss: {loss:.4f}\n")


# -- SIGKILL -------------------------------------------------------------------------------------------------
def start_long_run(home: Path, work: Path, tiny_world: Path) -> dict:
    proc = cli("train", str(TINY_CONFIG), "--work-dir", str(work), "--cfg-options", "train_cfg.max_iters=2000",
               "--json", home=home, env={"WORKBENCH_MODEL": str(tiny_world), "OMP_NUM_THREADS": "1"}, check=True)
    run = json.loads(proc.stdout)
    stdout = Path(run["run_dir"]) / "stdout.log"
    wait_for(lambda: "Iter(train)" in stdout.read_text(errors="replace"), RUN_DEADLINE_S, "training to start")
    return run


def the_tool(sid: int, supervisor: int) -> int:
    (tool,) = [p.pid for p in procs.session_members(sid) if p.ppid == supervisor]
    return tool


@pytest.mark.slow
def test_sigkill_of_the_supervisor_ends_the_run_as_lost_and_leaves_no_process(wb_home, tmp_path, tiny_world):
    # Before issue 13 the training process trained on without anyone to record its end.
    run = start_long_run(wb_home, tmp_path / "work", tiny_world)
    sid = run["pid"]  # the supervisor leads its own session
    tool = the_tool(sid, run["pid"])
    killed = time.monotonic()
    os.kill(run["pid"], signal.SIGKILL)
    wait_for(lambda: session_alive(sid) == [], 30, "the run's processes to end", every=0.05)
    gone_after = time.monotonic() - killed
    record = run_record(run["id"], wb_home)
    assert record["status"] == "lost" and "supervisor was killed" in record["reason"], record
    assert not procs.is_alive(tool)
    assert gone_after < 10, gone_after  # measured about 0.3 s on 2 busy cores (docs/reliability.md)


@pytest.mark.slow
def test_sigkill_of_the_training_process_fails_the_run_with_the_signal(wb_home, tmp_path, tiny_world):
    run = start_long_run(wb_home, tmp_path / "work", tiny_world)
    sid = run["pid"]
    os.kill(the_tool(sid, run["pid"]), signal.SIGKILL)
    wait_for(lambda: session_alive(sid) == [], 30, "the run's processes to end", every=0.05)
    record = run_record(run["id"], wb_home)
    assert (record["status"], record["exit_code"]) == ("failed", -9), record
    assert record["reason"].startswith("killed by SIGKILL")


# -- the disk filling while a checkpoint is written ------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path, tiny_run_dir):
    """A tmpfs that holds one of the tiny run's checkpoints and its logs, not two (root can mount one: CI does)."""
    one = (tiny_run_dir / "iter_10.pth").stat().st_size
    disk = tmp_path / "disk"
    disk.mkdir()
    size_kb = (one * 3 // 2 + (256 << 10)) // 1024
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(disk)], capture_output=True,
                       text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({p.stderr.strip()}): the full-disk test needs one")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.slow
def test_a_disk_that_fills_while_a_checkpoint_is_written_fails_the_run_as_such_and_keeps_the_earlier_one(
        wb_home, small_disk, tiny_world):
    # Before: the supervisor could not write exit.json on the full disk and died, so the run read as "lost: the
    # supervisor was killed", with no word of the disk.
    work = small_disk / "work"
    proc = cli("train", str(TINY_CONFIG), "--work-dir", str(work), "--cfg-options", "train_cfg.max_iters=30", "--json",
               home=wb_home, env={"WORKBENCH_MODEL": str(tiny_world), "OMP_NUM_THREADS": "1"}, check=True)
    run = json.loads(proc.stdout)
    record = wait_ended(run["id"], wb_home)
    assert record["status"] == "failed", record
    assert record["reason"].startswith("no space left on device"), record
    import torch

    kept = torch.load(work / "iter_10.pth", map_location="cpu", weights_only=False)  # the earlier one is whole
    assert kept["meta"]["iter"] == 10
    assert (work / "last_checkpoint").read_text().strip().endswith("iter_10.pth")  # resume would start there
    assert [r["id"] for r in json.loads(cli("runs", "--json", home=wb_home, check=True).stdout)] == [run["id"]]


# -- damaged checkpoints ---------------------------------------------------------------------------------------
@pytest.fixture
def damaged_run(tiny_run_dir, tmp_path, wb_home) -> dict:
    """A copy of the tiny run, imported, with iter_20.pth cut in half and iter_30.pth damaged in the middle."""
    work = tmp_path / "work"
    shutil.copytree(tiny_run_dir, work)
    cut = work / "iter_20.pth"
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    hit = work / "iter_30.pth"
    data = bytearray(hit.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)  # the zip directory at the end is intact: only a CRC can tell
    hit.write_bytes(bytes(data))
    (run,) = json.loads(cli("import", str(work), "--json", home=wb_home, check=True).stdout)
    return {"id": run["id"], "work": work, "cut": cut, "hit": hit}


def test_convert_names_a_cut_or_damaged_checkpoint_in_one_line_and_writes_nothing(damaged_run, wb_home):
    one_line_error(cli("convert", damaged_run["id"], "--all", home=wb_home), str(damaged_run["cut"]), "not a checkpoint")
    one_line_error(cli("convert", damaged_run["id"], "--iter", "30", home=wb_home), str(damaged_run["hit"]),
                   "damaged checkpoint")
    assert not (damaged_run["work"] / "hf").exists()


def test_chat_names_a_damaged_checkpoint_before_loading_anything(damaged_run, wb_home, tiny_world):
    for path in (damaged_run["cut"], damaged_run["hit"]):
        proc = cli("chat", str(tiny_world), "--adapter", f"x={path}", home=wb_home)
        line = one_line_error(proc, f"--adapter x={path}")
        assert "loading" not in proc.stderr and ("damaged" in line or "not a checkpoint" in line)


def test_chat_on_a_run_leaves_its_damaged_checkpoints_out_by_name_and_chats_with_the_others(damaged_run, wb_home,
                                                                                           tiny_world):
    # Before: `chat --run` loaded every checkpoint and ended in torch's PytorchStreamReader traceback.
    proc = subprocess.run([sys.executable, "-m", "workbench", "chat", str(tiny_world), "--run", damaged_run["id"]],
                          input="/models\n/quit\n", capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, WORKBENCH_HOME=str(wb_home)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    left_out = [line for line in proc.stderr.splitlines() if line.startswith("left out (damaged):")]
    assert sorted(Path(line.split(": ")[1]).name for line in left_out) == ["iter_20.pth", "iter_30.pth"]
    listed = proc.stdout + proc.stderr
    assert "iter_10" in listed and "iter_60" in listed and " iter_20 " not in listed


@pytest.mark.slow
def test_the_sweep_goes_on_without_a_damaged_checkpoint_and_names_it(damaged_run, wb_home):
    proc = cli("eval", "--run", damaged_run["id"], "--iters", "10,20", "--evalset", "identity", "--format", "json",
               "-q", home=wb_home, timeout=900)
    assert proc.returncode in (0, 1), proc.stderr  # 1: a gate not met is fine; the sweep ran
    report = json.loads(proc.stdout)
    assert sorted({r["name"] for r in report["rows"]} - {"base"}) == ["iter_10"]
    (warning,) = [w for w in report["warnings"] if "left out (damaged)" in w]
    assert str(damaged_run["cut"]) in warning


# -- the registry locked by another process --------------------------------------------------------------------
HOLDER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
con.execute("UPDATE runs SET name = 'renamed-by-holder' WHERE id = ?", (sys.argv[2],))
print("locked", flush=True)
time.sleep(float(sys.argv[3]))  # the fault: a writer that holds the lock this long
con.execute("COMMIT")
"""


def dead_run_with_exit(tmp_path, run_id: str) -> Run:
    run_dir = tmp_path / "work" / "workbench" / run_id
    run_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = procs.start_ticks(dead.pid)
    dead.wait()
    atomic.write_json(run_dir / "pid.json", {"pid": dead.pid, "sid": dead.pid, "start_ticks": ticks,
                                             "boot_id": procs.boot_id(), "host": ""})
    atomic.write_json(run_dir / "exit.json", {"code": 0, "ended_at": time.time()})
    run = Run(id=run_id, name="t", config_path="c.py", work_dir=str(tmp_path / "work"), run_dir=str(run_dir),
              started_at=time.time() - 60, pid=dead.pid, pgid=dead.pid)
    registry.add(run)
    return run


def hold_lock(run_id: str, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(registry.db_path()), run_id, str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_listing_while_another_process_holds_the_registry_is_no_error(wb_home, tmp_path, monkeypatch):
    run = dead_run_with_exit(tmp_path, "aaa111")  # stored as running: the listing wants to store "finished"
    holder = hold_lock(run.id, 30)
    try:
        monkeypatch.setattr(registry, "BUSY_TIMEOUT_S", 0.3, raising=False)
        started = time.monotonic()
        (listed,) = registry.list_runs()
        assert listed.status is RunStatus.FINISHED  # derived, though it could not be stored
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    assert registry.get(run.id).status is RunStatus.FINISHED  # stored by the next read


def test_a_write_waits_for_another_processs_lock_and_neither_update_is_lost(wb_home, tmp_path):
    run = dead_run_with_exit(tmp_path, "bbb222")
    registry.update(run.id, status=RunStatus.FINISHED, exit_code=0)
    holder = hold_lock(run.id, 1.0)
    errors = []

    def write():
        try:
            registry.update(run.id, reason="written while locked")
        except Exception as exc:  # the fault would surface here
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(timeout=30)
    assert holder.wait(timeout=30) == 0
    assert errors == [] and not writer.is_alive()
    got = registry.get(run.id)
    assert (got.name, got.reason) == ("renamed-by-holder", "written while locked")
    with sqlite3.connect(registry.db_path()) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- the log truncated or rotated while followed ---------------------------------------------------------------
def follower_on(tmp_path) -> tuple[RunFollower, Path]:
    work = tmp_path / "work"
    stamp = time.strftime("%Y%m%d_%H%M%S")
    (work / stamp / "vis_data").mkdir(parents=True)
    log = work / stamp / f"{stamp}.log"
    log.write_text("".join(LINE.format(s=i, i=i, loss=5 - i / 10) for i in (1, 2, 3)), encoding="utf-8")
    run_dir = work / "workbench" / "ccc333"
    run_dir.mkdir(parents=True)
    (run_dir / "stdout.log").write_text("", encoding="utf-8")
    atomic.write_json(run_dir / "pid.json", {"pid": os.getpid(), "sid": os.getsid(0), "host": "",
                                             "start_ticks": procs.start_ticks(os.getpid()), "boot_id": procs.boot_id()})
    run = Run(id="ccc333", name="t", config_path="c.py", work_dir=str(work), run_dir=str(run_dir),
              started_at=time.time() - 5, log_path=str(log))
    return RunFollower(run, status_every=3600), log


def iters(events) -> list[int]:
    return [e.iter for e in events if e.kind == "metrics"]


def test_a_log_truncated_while_followed_is_read_again_from_its_start(tmp_path):
    follower, log = follower_on(tmp_path)
    assert iters(follower.poll()) == [1, 2, 3]
    with open(log, "r+", encoding="utf-8") as f:  # what `: > log` or logrotate's copytruncate does
        f.truncate(0)
    with open(log, "a", encoding="utf-8") as f:
        f.write(LINE.format(s=4, i=4, loss=4.6))
    assert iters(follower.poll()) == [4]
    with open(log, "a", encoding="utf-8") as f:
        f.write(LINE.format(s=5, i=5, loss=4.5)[:40])  # half a line: left until its newline comes
    assert follower.poll() == []
    assert not follower.done


def test_a_log_rotated_while_followed_continues_in_the_new_file(tmp_path):
    follower, log = follower_on(tmp_path)
    assert iters(follower.poll()) == [1, 2, 3]
    log.rename(log.with_suffix(".log.1"))
    log.write_text(LINE.format(s=4, i=4, loss=4.6), encoding="utf-8")
    assert iters(follower.poll()) == [4]
