"""The model core's light modules must not pull torch or textual: `workbench --help`, the lmdeploy client
and the conversation list stay fast, and an lmdeploy-only box needs no xtuner."""

from __future__ import annotations

import subprocess
import sys

LIGHT = ["workbench.models.base", "workbench.models.templates", "workbench.models.generation",
         "workbench.models.openai_client", "workbench.models.conversations", "workbench.models.remote",
         "workbench.commands.chat"]


def test_light_model_modules_import_without_torch_textual_or_xtuner():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in LIGHT)
            + "bad = [m for m in ('torch', 'transformers', 'textual', 'xtuner', 'mmengine') if m in sys.modules]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
