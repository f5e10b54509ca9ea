"""Listing checkpoints, recognising what is not one, and the save_total_limit warning."""

from __future__ import annotations

import pytest

from workbench.errors import BadInput
from workbench.runs.checkpoints import (
    checkpoint_at,
    limit_warning,
    list_checkpoints,
    run_limit_warning,
    validate_checkpoint,
)
from workbench.runs.launch import build_command


def test_every_checkpoint_of_the_tiny_run_is_listed(tiny_run_dir):
    ckpts = list_checkpoints(tiny_run_dir)
    assert [c.iteration for c in ckpts] == [10, 20, 30, 40, 50, 60]
    assert all(c.size_bytes > 100_000 and not c.deepspeed and not c.converted for c in ckpts)
    assert [c.is_last for c in ckpts] == [False] * 5 + [True]
    assert ckpts == sorted(ckpts, key=lambda c: c.mtime)
    for c in ckpts:
        validate_checkpoint(c.path)
    assert run_limit_warning(tiny_run_dir) is None  # the tiny config keeps every checkpoint


def test_a_deepspeed_checkpoint_folder_is_listed_with_its_total_size(tmp_path):
    folder = tmp_path / "iter_20.pth"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "latest").write_text("checkpoint")
    (folder / "checkpoint" / "mp_rank_00_model_states.pt").write_bytes(b"x" * 1000)
    (folder / "checkpoint" / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"x" * 500)
    (c,) = list_checkpoints(tmp_path)
    assert (c.iteration, c.deepspeed, c.size_bytes) == (20, True, 1510)
    validate_checkpoint(folder)


def test_files_that_are_not_checkpoints_are_refused_in_one_line(tmp_path):
    fake = tmp_path / "iter_5.pth"
    fake.write_text("not a checkpoint")
    empty = tmp_path / "iter_6.pth"
    empty.mkdir()
    for path, why in ((fake, "not a file torch.save wrote"), (empty, "without DeepSpeed model states"),
                      (tmp_path / "iter_7.pth", "no such checkpoint")):
        with pytest.raises(BadInput, match=why) as exc:
            validate_checkpoint(path)
        assert "\n" not in exc.value.message
    with pytest.raises(BadInput, match=r"--iter 8: no iter_8.pth .*checkpoints: 5, 6"):
        checkpoint_at(tmp_path, 8)


def test_save_total_limit_warns_when_it_will_delete_checkpoints(tmp_path):
    assert limit_warning({"max_keep_ckpts": -1, "max_iters": 600, "save_interval": 100}) is None
    assert limit_warning({"max_keep_ckpts": 6, "max_iters": 600, "save_interval": 100}) is None
    w = limit_warning({"max_keep_ckpts": 2, "max_iters": 600, "save_interval": 100})
    assert "only the last 2 of the 6" in w and "iter_100..iter_400 will be deleted" in w
    # The work dir's dumped config is what the run really used (cfg-options included).
    (tmp_path / "my_cfg.py").write_text(
        "max_iters = 600\nsave_total_limit = 2\ndefault_hooks = dict(\n    checkpoint=dict(\n        by_epoch=False,\n"
        "        interval=50,\n        max_keep_ckpts=3,\n        type='mmengine.hooks.CheckpointHook'))\n"
        "train_cfg = dict(max_iters=600, type='xtuner.engine.runner.TrainLoop')\n", encoding="utf-8")
    assert "only the last 3 of the 12" in run_limit_warning(tmp_path)


def test_distributed_settings_become_torchrun_or_srun_as_xtuner_does(tmp_path):
    cfg, wd = tmp_path / "c.py", tmp_path / "w"
    single = build_command(cfg, wd, deepspeed=None, resume=None, cfg_options=["a=1"], env={})
    assert single[1:4] == ["-m", "workbench.xtuner_compat", "train"] and single[-2:] == ["--cfg-options", "a=1"]
    env = {"NPROC_PER_NODE": "8", "NNODES": "2", "NODE_RANK": "1", "ADDR": "10.0.0.1", "PORT": "29500"}
    multi = build_command(cfg, wd, deepspeed="/ds.json", resume=None, cfg_options=[], env=env)
    assert multi[1:3] == ["-m", "torch.distributed.run"]
    assert multi[3:8] == ["--nnodes=2", "--node_rank=1", "--nproc_per_node=8", "--master_addr=10.0.0.1",
                          "--master_port=29500"]
    assert multi[8:11] == ["-m", "workbench.xtuner_compat", "train"] and multi[-2:] == ["--launcher", "pytorch"]
    assert "--deepspeed" in multi
    slurm = build_command(cfg, wd, deepspeed=None, resume="/w/iter_10.pth", cfg_options=[], env=env,
                          srun="-p gpu --ntasks=16 --gres=gpu:8")
    assert slurm[:4] == ["srun", "-p", "gpu", "--ntasks=16"] and slurm[-2:] == ["--launcher", "slurm"]
    assert slurm[slurm.index("--resume") + 1] == "/w/iter_10.pth"
