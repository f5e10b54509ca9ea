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
