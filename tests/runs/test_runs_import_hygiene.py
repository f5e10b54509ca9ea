"""The runs core and its CLI module load no UI and no ML stack at import time (the TUI and `--help` rely on it)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import workbench.runs


def test_importing_the_runs_core_loads_neither_textual_nor_torch():
    modules = [f"workbench.runs.{m.name}" for m in pkgutil.iter_modules(workbench.runs.__path__)]
    assert {"workbench.runs.launch", "workbench.runs.follow", "workbench.runs.supervise"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules + ['workbench.commands.runs']!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = [m for m in ('textual', 'torch', 'transformers', 'peft', 'mmengine', 'xtuner') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
