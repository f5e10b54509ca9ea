"""Bad input: a one-line error, a non-zero exit, and nothing written."""

from __future__ import annotations

import os
import shutil

import pytest

from .helpers import TINY_CONFIG, cli


def one_line_error(proc, *fragments: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("workbench: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert proc.stdout == ""
    return lines[0]


def nothing_written(home, *paths):
    assert not (home / "data" / "runs.sqlite3").exists()
    for p in paths:
        assert not os.path.exists(p), p


def fake_finished_work_dir(root):
    """A work dir as plain `xtuner train` leaves it: a timestamp folder with a log that reached the end."""
    folder = root / "20261123_103744"
    folder.mkdir(parents=True)
    (folder / "20261123_103744.log").write_text(
        "2026/11/23 10:37:44 - mmengine - INFO - Iter(train) [1/2]  lr: 1.0e-03  eta: 0:00:01  time: 0.1  "
        "data_time: 0.01  loss: 2.0\n"
        "2026/11/23 10:37:45 - mmengine - INFO - Iter(train) [2/2]  lr: 1.0e-03  eta: 0:00:00  time: 0.1  "
        "data_time: 0.01  loss: 1.0\n", encoding="utf-8")
    return root


def test_a_missing_config_is_refused(wb_home, tmp_path):
    proc = cli("train", str(tmp_path / "nope.py"), "--work-dir", str(tmp_path / "w"), home=wb_home)
    one_line_error(proc, "nope.py: no such config file")
    nothing_written(wb_home, tmp_path / "w")


def test_a_config_that_does_not_load_shows_mmengines_first_line(wb_home, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("lr = 1e-4\nmodel = dict(\n", encoding="utf-8")
    proc = cli("train", str(bad), "--work-dir", str(tmp_path / "w"), home=wb_home)
    one_line_error(proc, "bad.py: does not load: SyntaxError:", "was never closed")
    nothing_written(wb_home, tmp_path / "w")


def test_bad_cfg_options_and_deepspeed_values_are_refused(wb_home, tmp_path):
    proc = cli("train", str(TINY_CONFIG), "--work-dir", str(tmp_path / "w"), "--cfg-options", "max_iters", home=wb_home)
    one_line_error(proc, "--cfg-options: 'max_iters' is not key=value")
    proc = cli("train", str(TINY_CONFIG), "--work-dir", str(tmp_path / "w"), "--deepspeed", "zero9", home=wb_home)
    one_line_error(proc, "--deepspeed zero9: neither a file nor one of deepspeed_zero1")
    nothing_written(wb_home, tmp_path / "w")


def test_a_work_dir_that_cannot_be_written_is_refused(wb_home, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = cli("train", str(TINY_CONFIG), "--work-dir", str(blocker / "w"), home=wb_home)
    one_line_error(proc, f"--work-dir {blocker / 'w'}: not writable")
    if os.geteuid() == 0:
        target = "/sys/workbench-test-work-dir"  # even root cannot create folders in sysfs
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        target = str(ro / "w")
    proc = cli("train", str(TINY_CONFIG), "--work-dir", target, home=wb_home)
    one_line_error(proc, f"--work-dir {target}: not writable")
    nothing_written(wb_home, target)


@pytest.mark.parametrize("command", [["logs", "zz9"], ["stop", "zz9"], ["checkpoints", "zz9"], ["resume", "zz9"],
                                     ["convert", "zz9", "--all"]])
def test_an_unknown_run_id_is_refused(wb_home, command):
    one_line_error(cli(*command, home=wb_home), "no run 'zz9'")
    nothing_written(wb_home)


def test_stopping_a_run_that_already_ended_is_refused(wb_home, tmp_path):
    work = fake_finished_work_dir(tmp_path / "work")
    run_id = cli("import", str(work), "--json", home=wb_home, check=True).stdout.split('"id": "')[1][:6]
    db = wb_home / "data" / "runs.sqlite3"
    before = db.read_bytes()
    one_line_error(cli("stop", run_id, home=wb_home), f"run {run_id} already ended (finished)")
    one_line_error(cli("convert", run_id, "--iter", "7", home=wb_home), "--iter 7: no iter_7.pth")
    # a finished run is continued only when asked for more iterations (a stray resume made a useless run)
    one_line_error(cli("resume", run_id, home=wb_home), f"run {run_id} finished", "--max-iters N")
    one_line_error(cli("resume", run_id, "--max-iters", "5", home=wb_home), "no checkpoint")
    assert sorted(p.name for p in work.iterdir()) == ["20261123_103744"]
    assert db.read_bytes() == before


def test_merge_refuses_a_checkpoint_or_a_folder_that_is_not_an_adapter(wb_home, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    pth = tmp_path / "iter_10.pth"
    pth.write_bytes(b"PK")
    one_line_error(cli("merge", str(base), str(pth), str(tmp_path / "out"), home=wb_home),
                   "a training checkpoint, not an adapter")
    one_line_error(cli("merge", str(base), str(base), str(tmp_path / "out"), home=wb_home),
                   "not a PEFT adapter folder")
    shutil.rmtree(base)
    assert not (tmp_path / "out").exists()


def test_merge_never_runs_model_code_from_the_base_folder_unless_trusted(wb_home, tmp_path):
    # InternLM2 folders ship modeling code (auto_map): running it must be the user's choice, as in chat
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"auto_map": {"AutoModelForCausalLM": "modeling_x.X"}}')
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    one_line_error(cli("merge", str(base), str(adapter), str(tmp_path / "out"), home=wb_home),
                   "ships its own model code")
    assert not (tmp_path / "out").exists()


def test_runs_shows_the_progress_loss_and_eta_a_run_last_logged(wb_home, tmp_path):
    import json

    work = fake_finished_work_dir(tmp_path / "work")
    run_id = cli("import", str(work), "--json", home=wb_home, check=True).stdout.split('"id": "')[1][:6]
    (record,) = json.loads(cli("runs", "--json", home=wb_home, check=True).stdout)
    assert record["id"] == run_id and record["work_dir"] == str(work)  # the run record's keys stay
    assert (record["iter"], record["loss"], record["eta"]) == (2, 1.0, None)  # no eta once it ended
    header, row = cli("runs", home=wb_home, check=True).stdout.splitlines()[:2]
    assert header.lower().split()[:6] == ["id", "name", "status", "progress", "loss", "eta"]
    assert row.split()[2:5] == ["finished", "2/2", "1"]


def test_merge_of_a_run_checkpoint_takes_iter_and_no_paths(wb_home):
    one_line_error(cli("merge", "--run", "zz9", home=wb_home), "--run takes --iter N")
    one_line_error(cli("merge", "base", home=wb_home), "BASE ADAPTER OUT, or --run RUN --iter N")
