"""Pre-flight: what cannot run on this machine is refused before anything starts, with `inspect`'s codes;
and a run that dies anyway is failed with the reason its own output gives.

Before issue 13 every refusal here started a run that died at iteration 0, and the recorded torchrun
failure was reported as `runpy.run_module(TOOLS[tool], ...` (a line of one of the interleaved tracebacks).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench import atomic
from workbench.runs import procs
from workbench.runs.model import Run
from workbench.runs.state import derive_state

from .helpers import TINY_CONFIG, cli
from .test_cli_errors import nothing_written

DATA = Path(__file__).parent / "data"


def cuda_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def refused(proc, *codes: str) -> list[str]:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert [line.split("]")[0] for line in lines] == [f"workbench: error: [{c}" for c in codes], lines
    return lines


def test_more_gpus_than_visible_is_refused_before_start(wb_home, tmp_path, model_env):
    wanted = cuda_gpus() + 1 if cuda_gpus() else 2
    proc = cli("train", str(TINY_CONFIG), "--work-dir", str(tmp_path / "w"), "--gpus", str(wanted), home=wb_home,
               env=model_env)
    (line,) = refused(proc, "gpus_unavailable")
    assert f"{wanted} GPUs requested" in line
    nothing_written(wb_home, tmp_path / "w")


@pytest.mark.skipif(sys.platform != "linux", reason="the CPU-only checks need a machine without CUDA")
def test_fp16_4bit_and_missing_paths_are_each_one_line(wb_home, tmp_path, model_env):
    if cuda_gpus():
        pytest.skip("this machine has CUDA: fp16 and 4-bit can run here")
    proc = cli("train", str(TINY_CONFIG), "--work-dir", str(tmp_path / "w"), "--cfg-options",
               "model.llm.torch_dtype=torch.float16", "model.llm.quantization_config.load_in_4bit=True", home=wb_home,
               env={"WORKBENCH_MODEL": str(tmp_path / "no-model"), "WORKBENCH_DATA": str(tmp_path / "no-data.json")})
    lines = refused(proc, "model_not_found", "data_not_found", "fp16_unsupported", "quantization_needs_cuda")
    assert str(tmp_path / "no-model") in lines[0] and str(tmp_path / "no-data.json") in lines[1]
    nothing_written(wb_home, tmp_path / "w")


def test_the_codes_are_the_ones_inspect_reports(wb_home, tmp_path):
    proc = cli("inspect", str(TINY_CONFIG), "--json", home=wb_home, timeout=600,
               env={"WORKBENCH_DATA": str(tmp_path / "no-data.json")})
    assert "data_not_found" in [w["code"] for w in json.loads(proc.stdout)["warnings"]]


def dead_run(tmp_path, stdout: Path, code: int) -> Run:
    run_dir = tmp_path / "work" / "workbench" / "abc123"
    run_dir.mkdir(parents=True)
    shutil.copy(stdout, run_dir / "stdout.log")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = procs.start_ticks(proc.pid)
    proc.wait()
    atomic.write_json(run_dir / "pid.json", {"pid": proc.pid, "sid": proc.pid, "start_ticks": ticks,
                                             "boot_id": procs.boot_id(), "host": ""})
    atomic.write_json(run_dir / "exit.json", {"code": code, "ended_at": time.time()})
    return Run(id="abc123", name="t", config_path="c.py", work_dir=str(tmp_path / "work"), run_dir=str(run_dir),
               started_at=time.time() - 60)


def test_a_torchrun_failure_is_reported_with_the_workers_error(tmp_path):
    # Recorded from `workbench train configs/tiny_cpu_lora.py --gpus 2` on a CPU machine before the pre-flight
    # existed: two ranks' tracebacks printed into each other, then torchrun's ChildFailedError summary.
    state = derive_state(dead_run(tmp_path, DATA / "torchrun_no_cuda.stdout.log", 1))
    assert state.reason.startswith("RuntimeError: Found no NVIDIA driver on your system")


def test_output_without_an_exception_gives_its_last_lines_not_just_the_code(tmp_path):
    out = tmp_path / "out.log"
    out.write_text("loading shards\nsrun: error: node7: task 0: Exited with exit code 3\n", encoding="utf-8")
    state = derive_state(dead_run(tmp_path, out, 3))
    assert state.reason == "exit code 3: loading shards | srun: error: node7: task 0: Exited with exit code 3"
