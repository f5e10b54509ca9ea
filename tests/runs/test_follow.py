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


def _ended(run: Run, code: int = 0) -> None:
    """Make `run` look ended with exit `code` (a process that is gone, an exit record)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = procs.start_ticks(dead.pid)
    dead.wait()
    atomic.write_json(run.run_dir + "/pid.json", {"pid": dead.pid, "sid": dead.pid, "start_ticks": ticks,
                                                    "boot_id": procs.boot_id(), "host": ""})
    atomic.write_json(run.run_dir + "/exit.json", {"code": code, "ended_at": time.time()})


def test_follow_run_hands_every_batch_over_and_returns_once_the_run_ended(tmp_path):
    from workbench.runs.follow import follow_run

    started = time.time() - 100
    log = stamp_folder(tmp_path, started + 1)
    run = make_run(tmp_path, "eeeeee", started)
    with open(log, "w", encoding="utf-8") as f:
        f.writelines(metrics_line(i, 3, 5.0 - i / 10) for i in (1, 2, 3))
    _ended(run)
    seen: list = []
    assert follow_run(run, lambda events, follower: seen.extend(events), idle=0.01) is True
    assert [e.kind for e in seen] == ["metrics", "metrics", "metrics", "train_end", "run_end"]
    assert seen[-1].status == "finished"


def test_follow_run_stops_when_cancelled_or_caught_up(tmp_path):
    import threading

    from workbench.runs.follow import follow_run

    started = time.time() - 100
    log = stamp_folder(tmp_path, started + 1)
    run = make_run(tmp_path, "ffffff", started)
    run.stdout_path.write_text("", encoding="utf-8")
    with open(log, "w", encoding="utf-8") as f:
        f.write(metrics_line(1, 10, 4.0))
    atomic.write_json(run.run_dir + "/pid.json", {"pid": 0, "sid": 0, "start_ticks": 0, "boot_id": procs.boot_id(),
                                                    "host": ""})
    seen: list = []
    # Not until its end: what was written so far, then back (the run counts as still going or not: no matter).
    assert follow_run(run, lambda events, _f: seen.extend(e for e in events if e.kind == "metrics"),
                      until_end=False, idle=0.01) in (False, True)
    assert [e.iter for e in seen] == [1]
    cancel = threading.Event()
    cancel.set()
    calls: list = []
    assert follow_run(run, lambda *a: calls.append(a), cancel) is False and calls == []


def test_latest_metrics_of_a_run_and_of_many_without_reading_a_followed_log_twice(tmp_path):
    from workbench.runs.follow import LatestMetrics, latest_metrics

    started = time.time() - 100
    log = stamp_folder(tmp_path, started + 1)
    run = make_run(tmp_path, "gggggg", started)
    assert latest_metrics(run) is None  # nothing logged yet
    with open(log, "w", encoding="utf-8") as f:
        f.writelines(metrics_line(i, 10, 5.0 - i / 10) for i in (1, 2))
    last = latest_metrics(run)
    assert (last.iter, last.max_iters, last.loss, last.eta) == (2, 10, 4.8, "0:00:01")

    tracker = LatestMetrics()
    assert tracker.update([run])["gggggg"].iter == 2
    with open(log, "a", encoding="utf-8") as f:
        f.write(metrics_line(3, 10, 4.7))
    assert tracker.update([run])["gggggg"].iter == 3  # followed by offset: the new line only
    with open(log, "a", encoding="utf-8") as f:
        f.write(metrics_line(4, 10, 4.6))
    # The caller follows this run's log itself: the tracker leaves it alone (and closes its own tail).
    assert tracker.update([run], followed={"gggggg"})["gggggg"].iter == 3 and not tracker._tails
    tracker.close()


def test_logs_prints_an_ended_runs_events_with_and_without_follow(wb_home, tmp_path):
    from .helpers import cli
    from .test_cli_errors import fake_finished_work_dir

    work = fake_finished_work_dir(tmp_path / "work")
    run_id = cli("import", str(work), "--json", home=wb_home, check=True).stdout.split('"id": "')[1][:6]
    plain = cli("logs", run_id, home=wb_home, check=True).stdout
    assert "iter 1/2  loss 2.0000" in plain and "iter 2/2  loss 1.0000" in plain, plain
    followed = cli("logs", run_id, "--follow", "--json", home=wb_home, check=True).stdout.splitlines()
    kinds = [json.loads(line)["kind"] for line in followed]
    assert kinds.count("metrics") == 2 and kinds[-1] == "run_end"
