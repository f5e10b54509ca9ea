"""Resuming: a finished run is continued only when asked for more iterations, the new run names its parent,
and its loss curve starts with the parent's. (Before issue 13: a finished run was resumed at once into a
useless run, and `logs` of a resumed run began at its checkpoint.)"""

from __future__ import annotations

import json

import pytest

from .helpers import TINY_CONFIG, cli, wait_ended

pytestmark = pytest.mark.slow


def test_a_finished_run_continues_past_its_end_only_when_asked_and_links_to_its_parent(wb_home, tmp_path, tiny_world):
    env = {"WORKBENCH_MODEL": str(tiny_world), "OMP_NUM_THREADS": "1"}
    first = json.loads(cli("train", str(TINY_CONFIG), "--work-dir", str(tmp_path / "work"), "--cfg-options",
                           "train_cfg.max_iters=20", "--json", home=wb_home, env=env, check=True).stdout)
    assert wait_ended(first["id"], wb_home)["status"] == "finished"

    refused = cli("resume", first["id"], home=wb_home, env=env)
    assert refused.returncode == 2 and "finished all 20 iterations" in refused.stderr and "--max-iters" in refused.stderr
    assert cli("resume", first["id"], "--max-iters", "20", home=wb_home, env=env).returncode == 2

    second = json.loads(cli("resume", first["id"], "--max-iters", "30", "--json", home=wb_home, env=env,
                            check=True).stdout)
    record = wait_ended(second["id"], wb_home)
    assert (record["status"], record["parent_id"]) == ("finished", first["id"])
    table = cli("runs", home=wb_home, check=True).stdout.splitlines()
    at = table[0].index("PARENT")
    row = next(line for line in table if line.startswith(second["id"]))
    assert row[at:].split()[0] == first["id"]

    events = [json.loads(line) for line in cli("logs", second["id"], "--json", home=wb_home, check=True).stdout.splitlines()]
    curve = [(e["iter"], e["run_id"]) for e in events if e["kind"] == "metrics"]
    assert curve == [(i, first["id"]) for i in range(1, 21)] + [(i, None) for i in range(21, 31)]

    own = json.loads(cli("checkpoints", second["id"], "--json", home=wb_home, check=True).stdout)
    assert [(c["iteration"], c["written_by"]) for c in own] == [(10, first["id"]), (20, first["id"]), (30, second["id"])]
    parents = json.loads(cli("checkpoints", first["id"], "--json", home=wb_home, check=True).stdout)
    assert [c["iteration"] for c in parents] == [10, 20]


def test_train_resume_from_a_middle_checkpoint_branches_into_a_new_folder_and_keeps_the_later_ones(
        wb_home, tmp_path, tiny_run_dir, tiny_world):
    # Before: `workbench train CONFIG --resume iter_30.pth` resumed in the checkpoint's folder and wrote its
    # iter_40.pth over the earlier run's.
    import shutil
    from pathlib import Path

    work = tmp_path / "work"
    shutil.copytree(tiny_run_dir, work)
    (parent,) = json.loads(cli("import", str(work), "--json", home=wb_home, check=True).stdout)
    before = {p.name: p.read_bytes() for p in work.glob("iter_*.pth")}
    env = {"WORKBENCH_MODEL": str(tiny_world), "OMP_NUM_THREADS": "1"}

    same = cli("train", str(TINY_CONFIG), "--resume", str(work / "iter_30.pth"), "--work-dir", str(work),
               "--cfg-options", "train_cfg.max_iters=40", home=wb_home, env=env)
    assert same.returncode == 2 and "iter_40.pth, iter_50.pth, iter_60.pth come after iter_30.pth" in same.stderr

    started = cli("train", str(TINY_CONFIG), "--resume", str(work / "iter_30.pth"), "--cfg-options",
                  "train_cfg.max_iters=40", "--json", home=wb_home, env=env, cwd=tmp_path, check=True)
    assert "the resumed run writes to a new one, so they stay" in started.stderr
    branch = json.loads(started.stdout)
    record = wait_ended(branch["id"], wb_home)
    assert (record["status"], record["parent_id"]) == ("finished", parent["id"])
    assert Path(record["work_dir"]).parent == tmp_path / "work_dirs" / "tiny_cpu_lora"
    assert sorted(p.name for p in Path(record["work_dir"]).glob("iter_*.pth")) == ["iter_40.pth"]
    assert {p.name: p.read_bytes() for p in work.glob("iter_*.pth")} == before  # the parent's files untouched
