"""A new run never lands on another run's files, and a folder that several runs used lists each run's own.

All of these failed before issue 13: there was no fresh folder per run (`work_dirs/<config>` was reused), a
--work-dir holding checkpoints was accepted, and every run of a folder listed every checkpoint in it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from workbench.runs import registry
from workbench.runs.checkpoints import run_checkpoints
from workbench.runs.launch import fresh_work_dir, work_dir_problem
from workbench.runs.model import Run, RunStatus

from .helpers import TINY_CONFIG, cli
from .test_cli_errors import nothing_written, one_line_error


def test_the_default_work_dir_is_a_new_folder_per_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = fresh_work_dir(TINY_CONFIG)
    assert first.parent == tmp_path / "work_dirs" / "tiny_cpu_lora" and not first.exists()
    first.mkdir(parents=True)
    second = fresh_work_dir(TINY_CONFIG)  # the same second: still another folder
    assert second != first and not second.exists()
    named = fresh_work_dir(TINY_CONFIG, "lr 1e-4/mix")
    assert named.name.endswith("-lr-1e-4-mix") and named.parent == first.parent
    assert fresh_work_dir(TINY_CONFIG, root=tmp_path / "elsewhere").parent == tmp_path / "elsewhere"


def test_work_dir_problem_names_what_another_run_left(tmp_path):
    assert work_dir_problem(tmp_path / "new") is None
    assert work_dir_problem(tmp_path) is None  # an empty folder is fine
    (tmp_path / "notes.txt").write_text("mine")
    assert work_dir_problem(tmp_path) is None  # so are unrelated files
    used = tmp_path / "used"
    used.mkdir()
    for n in (10, 20, 60):
        (used / f"iter_{n}.pth").write_bytes(b"PK")
    assert work_dir_problem(used) == f"{used} already holds checkpoints of another run (iter_10.pth ... iter_60.pth)"
    logged = tmp_path / "logged" / "20261123_103744"
    logged.mkdir(parents=True)
    (logged / "20261123_103744.log").write_text("")
    assert "log of an earlier run (20261123_103744/)" in work_dir_problem(logged.parent)
    own = tmp_path / "own" / "workbench" / "abc123"
    own.mkdir(parents=True)
    (own / "run.json").write_text("{}")
    assert work_dir_problem(own.parent.parent).endswith("already holds the files of run abc123")
    assert work_dir_problem(tmp_path / "notes.txt") == f"{tmp_path / 'notes.txt'} is a file, not a folder"


def test_train_refuses_a_work_dir_holding_another_runs_checkpoints(wb_home, tmp_path, model_env):
    used = tmp_path / "used"
    used.mkdir()
    (used / "iter_10.pth").write_bytes(b"PK")
    before = sorted(used.iterdir())
    proc = cli("train", str(TINY_CONFIG), "--work-dir", str(used), home=wb_home, env=model_env)
    one_line_error(proc, f"--work-dir {used} already holds checkpoints", "--overwrite")
    assert sorted(used.iterdir()) == before
    nothing_written(wb_home)


def ended_run(work: Path, run_id: str, start: float, end: float, **kw) -> Run:
    run = Run(id=run_id, name=run_id, config_path="c.py", work_dir=str(work), run_dir=str(work / "workbench" / run_id),
              started_at=start, ended_at=end, status=RunStatus.FINISHED, exit_code=0, **kw)
    registry.add(run)
    return run


def checkpoint(work: Path, n: int, mtime: float) -> None:
    path = work / f"iter_{n}.pth"
    path.write_bytes(b"PK")
    os.utime(path, (mtime, mtime))


def test_each_run_of_a_shared_folder_lists_only_the_checkpoints_it_wrote(wb_home, tmp_path):
    # Run A saved 10..60; run B, started later in the same folder (--overwrite, or plain xtuner twice), saved
    # 10..20 over A's and was stopped. C resumed B from iter_20 and saved 30.
    work = tmp_path / "work"
    work.mkdir()
    t0 = time.time() - 10_000
    a = ended_run(work, "aaaaaa", t0, t0 + 600)
    b = ended_run(work, "bbbbbb", t0 + 1000, t0 + 1200)
    c = ended_run(work, "cccccc", t0 + 2000, t0 + 2100, parent_id="bbbbbb", resume_from=str(work / "iter_20.pth"))
    for n in (30, 40, 50, 60):
        checkpoint(work, n, t0 + n * 10)
    for n in (10, 20):
        checkpoint(work, n, t0 + 1000 + n * 10)
    checkpoint(work, 30, t0 + 2050)  # C rewrote A's iter_30
    checkpoint(work, 70, t0 + 5000)  # a time that fits no run: a copied file, say
    listed = {r.id: [(ck.iteration, ck.written_by, ck.uncertain) for ck in run_checkpoints(r)] for r in (a, b, c)}
    assert listed["aaaaaa"] == [(40, "aaaaaa", False), (50, "aaaaaa", False), (60, "aaaaaa", False), (70, None, True)]
    assert listed["bbbbbb"] == [(10, "bbbbbb", False), (20, "bbbbbb", False), (70, None, True)]
    # a resumed run's checkpoints start with those of the run it continued
    assert listed["cccccc"] == [(10, "bbbbbb", False), (20, "bbbbbb", False), (30, "cccccc", False), (70, None, True)]
    proc = cli("checkpoints", "bbbbbb", "--json", home=wb_home, check=True)
    assert [c["iteration"] for c in json.loads(proc.stdout)] == [10, 20, 70]
    assert "iter_70.pth may have been written by another run" in proc.stderr


def test_import_of_a_folder_used_twice_keeps_each_runs_checkpoints_apart(wb_home, tmp_path):
    # Plain `xtuner train` twice into one work dir: two timestamped logs; the second run overwrote iter_10.
    work = tmp_path / "work"
    t1, t2 = time.time() - 7200, time.time() - 3600
    for when, last in ((t1, 30), (t2, 10)):
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(when))
        (work / stamp).mkdir(parents=True)
        log = work / stamp / f"{stamp}.log"
        log.write_text("".join(
            f"2026/11/23 10:37:{i:02d} - mmengine - INFO - Iter(train) [{i}/{last}]  lr: 1.0e-03  eta: 0:00:01  "
            f"time: 0.1  data_time: 0.01  loss: 2.0\n" for i in range(1, last + 1)), encoding="utf-8")
        os.utime(log, (when + 400, when + 400))
        for n in range(10, last + 1, 10):
            checkpoint(work, n, when + n * 10)
    proc = cli("import", str(work), "--json", home=wb_home, check=True)
    runs = json.loads(proc.stdout)
    assert [r["checkpoints"] for r in runs] == [[20, 30], [10]]
    assert [r["work_dir"] for r in runs] == [str(work.resolve())] * 2
    for r in runs:
        listed = json.loads(cli("checkpoints", r["id"], "--json", home=wb_home, check=True).stdout)
        assert [c["iteration"] for c in listed] == r["checkpoints"]
        assert {c["written_by"] for c in listed} == {r["id"]}


def test_the_work_dir_is_shown_in_every_listing(wb_home, tmp_path):
    # The work dir of every run is in `runs` (table and JSON): the user can see where each one writes.
    work = tmp_path / "work"
    work.mkdir()
    ended_run(work, "dddddd", time.time() - 100, time.time() - 50)
    table = cli("runs", home=wb_home, check=True).stdout
    assert str(work) in table and "PARENT" in table.splitlines()[0]
    assert json.loads(cli("runs", "--json", home=wb_home, check=True).stdout)[0]["work_dir"] == str(work)
