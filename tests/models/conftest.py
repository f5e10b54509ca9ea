"""Model-core fixtures: a real tiny XTuner run's checkpoints, one converted by XTuner, and one loaded backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def converted_iter60(tiny_run_dir, tmp_path_factory) -> Path:
    """iter_60.pth converted by XTuner's own `pth_to_hf` (fp32, so weights compare exactly)."""
    out = tmp_path_factory.mktemp("converted") / "iter_60_hf"
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.xtuner_compat", "pth_to_hf", str(tiny_run_dir / "tiny_cpu_lora.py"),
         str(tiny_run_dir / "iter_60.pth"), str(out), "--fp32"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (out / "adapter_config.json").is_file()
    return out


@pytest.fixture(scope="session")
def hf_backend(tiny_world, tiny_run_dir, converted_iter60):
    """The tiny world loaded once with every checkpoint of the run read straight from XTuner's .pth files
    (iter_10 ... iter_60), plus iter_60 as converted by XTuner (PEFT folder, "iter_60_hf").
    Tests set the active one themselves."""
    from workbench.models.base import get_backend
    from workbench.xtuner.workdir import WorkDir

    backend = get_backend("transformers", tiny_world, device="cpu")
    for ckpt in WorkDir(tiny_run_dir).checkpoints():
        backend.add_adapter(ckpt.name, ckpt.path)
    backend.add_adapter("iter_60_hf", converted_iter60)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def internlm2():
    from workbench.models.templates import get_format

    return get_format("internlm2_chat")
