"""RunFollower: which log belongs to which run, the scalars cross-check, and how a run's end is reported."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

from workbench import atomic
from workbench.runs import procs
from workbench.runs.follow import RunFollower, find_log_file
from workbench.runs.model import Run


def metrics_line(it: int, total: int, loss: float) -> str:
    return (f"2026/11/23 10:37:{it:02d} - mmengine - INFO - Iter(train) [{it}/{total}]  lr: 1.0000e-03  "
            f"eta: 0:00:01  time: 0.1000  data_time: 0.0100  grad_norm: 1.0000  loss: {loss:.4f}\n")


def stamp_folder(work, when: float) -> str:
    name = dt.datetime.fromtimestamp(when).strftime("%Y%m%d_%H%M%S")
    (work / name / "vis_data").mkdir(parents=True)
    (work / name / f"{name}.log").write_text("", encoding="utf-8")
    return str(work / name / f"{name}.log")


def make_run(work, run_id: str, started: float, ended: float | None = None) -> Run:
    run_dir = work / "workbench" / run_id
    run_dir.mkdir(parents=True)
    return Run(id=run_id, name="t", config_path="c.py", work_dir=str(work), run_dir=str(run_dir),
               started_at=started, ended_at=ended)


def test_each_run_of_a_shared_work_dir_finds_its_own_log(tmp_path):
    # A resume writes into the original's work dir: the folders are told apart by time, not "the newest".
    t0 = time.time() - 1000
    first, second = stamp_folder(tmp_path, t0 + 2), stamp_folder(tmp_path, t0 + 500)
    original = make_run(tmp_path, "aaaaaa", t0, ended=t0 + 400)
    resumed = make_run(tmp_path, "bbbbbb", t0 + 499)
    assert str(find_log_file(original)) == first
    assert str(find_log_file(resumed)) == second
    crashed_early = make_run(tmp_path, "cccccc", t0 + 450, ended=t0 + 460)  # died before writing a log
    assert find_log_file(crashed_early) is None


def test_a_failed_run_ends_with_its_traceback_a_died_error_and_its_status(tmp_path):
    started = time.time() - 100
    log = stamp_folder(tmp_path, started + 1)
    run = make_run(tmp_path, "dddddd", started)
    with open(log, "w", encoding="utf-8") as f:
        f.writelines(metrics_line(i, 10, 5.0 - i / 10) for i in (1, 2, 3))
    scalars = [{"iter": i, "loss": 5.0 - i / 10, "lr": 1e-3} for i in (1, 2, 3)]
    scalars[1]["loss"] = 4.0  # disagrees with the log's 4.8000 at iter 2
    (tmp_path / log).parent.joinpath("vis_data", "scalars.json").write_text(
        "".join(json.dumps(r) + "\n" for r in scalars), encoding="utf-8")
    run.stdout_path.write_text("Traceback (most recent call last):\n  File \"sft.py\", line 9, in forward\n"
                               "RuntimeError: boom\n", encoding="utf-8")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = procs.start_ticks(dead.pid)
    dead.wait()
    atomic.write_json(run.run_dir + "/pid.json", {"pid": dead.pid, "sid": dead.pid, "start_ticks": ticks,
                                                    "boot_id": procs.boot_id(), "host": ""})
    atomic.write_json(run.run_dir + "/exit.json", {"code": 1, "ended_at": time.time()})

    follower = RunFollower(run)
    events = follower.poll()
    summary = [(e.kind, getattr(e, "iter", None) or getattr(e, "error", None) or getattr(e, "status", None))
               for e in events]
    assert summary == [("metrics", 1), ("metrics", 2), ("metrics", 3), ("error", "traceback"),
                       ("warning", None), ("error", "died"), ("run_end", "failed")]
    warning = events[4]
    assert "iter 2" in warning.message and "4.8" in warning.message and "4.0" in warning.message
    assert events[5].message.startswith("the training process ended at iter 3/10 without reaching after_train")
    assert events[-1].reason == "RuntimeError: boom" and events[-1].exit_code == 1
    assert follower.done and follower.poll() == []


def test_following_from_now_skips_what_was_already_written(tmp_path):
    started = time.time() - 100
    log = stamp_folder(tmp_path, started + 1)
    run = make_run(tmp_path, "eeeeee", started)
    run.stdout_path.write_text("", encoding="utf-8")
    atomic.write_json(run.run_dir + "/pid.json", {"pid": 1, "sid": 1, "start_ticks": procs.start_ticks(1),
                                                    "boot_id": procs.boot_id(), "host": ""})
    with open(log, "w", encoding="utf-8") as f:
        f.write(metrics_line(1, 10, 5.0))
    follower = RunFollower(run, from_start=False)
    follower.poll()
    with open(log, "a", encoding="utf-8") as f:
        f.write(metrics_line(2, 10, 4.9))
    assert [e.iter for e in follower.poll() if e.kind == "metrics"] == [2]
