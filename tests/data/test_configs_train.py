"""The shipped configs train for real, on the CPU, with real `xtuner train` (slow tests).

The 1.8B configs cannot train here (4-bit needs CUDA, and there is no 1.8B model), so they are run as they are
except for the model (the tiny world, through WORKBENCH_MODEL), fp32 (WORKBENCH_PRECISION) and no quantization:
what is tested is everything else in the file, the DeepSpeed ZeRO-2 block included. A few iterations each.
tiny_cpu_lora.py trains in the shared `tiny_run_dir` fixture; tiny_cpu_overfit.py in the eval tests' sweep.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.paths import configs_dir, project_root

pytestmark = pytest.mark.slow

SHORT = ["train_cfg.max_iters=4", "train_dataloader.dataset.map_num_proc=1", "default_hooks.checkpoint.interval=2", "custom_hooks.1.every_n_iters=2",
         "custom_hooks.1.max_new_tokens=8"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(config: Path, work: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    p = subprocess.run([sys.executable, "-m", "workbench.xtuner_compat", "train", str(config), "--work-dir", str(work),
                        *args], capture_output=True, text=True, env=full_env, cwd=project_root(), timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return p


def _deepspeed_env() -> dict:
    # One DeepSpeed process without a launcher needs the distributed environment spelled out.
    return {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port())}


def _scalars(work: Path) -> list[dict]:
    return [json.loads(line) for line in next(work.glob("*/vis_data/scalars.json")).read_text().splitlines()]


def test_the_1_8b_self_cognition_config_trains_on_the_tiny_world_without_quantization(tiny_world, tmp_path):
    work = tmp_path / "work"
    _train(configs_dir() / "internlm2_chat_1_8b_qlora_self_cognition.py", work, "--cfg-options",
           "model.llm.quantization_config=None", "default_hooks.logger.interval=1", *SHORT,
           env={"WORKBENCH_MODEL": str(tiny_world), "WORKBENCH_PRECISION": "fp32"})
    assert sorted(p.name for p in work.glob("iter_*.pth")) == ["iter_2.pth", "iter_4.pth"]
    assert len(_scalars(work)) == 4 and all("grad_norm" in s for s in _scalars(work))


def test_the_zero2_config_trains_under_deepspeed_through_workbench_train(tiny_world, tmp_path, wb_home):
    """The DeepSpeed block built into the ZeRO-2 config (strategy, DeepSpeedOptimWrapper, FlexibleRunner), started
    the user's way: `workbench train` sets up the one-process distributed environment DeepSpeed needs, as it does
    for --deepspeed (without it: "No module named mpi4py")."""
    work = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(WORKBENCH_MODEL=str(tiny_world), WORKBENCH_PRECISION="fp32", WORKBENCH_HOME=str(wb_home))
    p = subprocess.run([sys.executable, "-m", "workbench", "train",
                        str(configs_dir() / "internlm2_chat_1_8b_qlora_self_cognition_zero2.py"), "--work-dir",
                        str(work), "--follow", "--cfg-options", "model.llm.quantization_config=None",
                        "default_hooks.logger.interval=1", *SHORT],
                       capture_output=True, text=True, env=env, cwd=project_root(), timeout=900)
    log = next(work.glob("workbench/*/stdout.log"), None)
    assert p.returncode == 0, (p.stdout + p.stderr)[-2000:] + (log.read_text()[-3000:] if log else "")
    assert "DeepSpeed" in log.read_text()
    assert sorted(p.name for p in work.glob("iter_*.pth")) == ["iter_2.pth", "iter_4.pth"]
    assert all((work / n).is_dir() for n in ("iter_2.pth", "iter_4.pth"))  # DeepSpeed checkpoints are folders
    assert len(_scalars(work)) == 4


def test_the_fp32_zero2_json_trains_the_tiny_config_on_the_cpu(tiny_world, tmp_path):
    work = tmp_path / "work"
    _train(configs_dir() / "tiny_cpu_lora.py", work, "--deepspeed", str(configs_dir() / "deepspeed" / "zero2_fp32_cpu.json"),
           "--cfg-options", *SHORT, env={"WORKBENCH_MODEL": str(tiny_world), **_deepspeed_env()})
    assert sorted(p.name for p in work.glob("iter_*.pth")) == ["iter_2.pth", "iter_4.pth"]
    losses = [s["loss"] for s in _scalars(work)]
    assert len(losses) == 4 and all(x == x for x in losses)  # no NaN in fp32
