"""Only workbench.tui imports textual: the CLI's help, the headless demo and the settings never load it
(checked in a fresh interpreter, the way harlequin checks its headless modules)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workbench.paths import project_root


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=project_root(), check=True, capture_output=True,
                         text=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", ["workbench.settings", "workbench.demo.run", "workbench.commands.tui",
                                    "workbench.commands.demo"])
def test_module_does_not_import_textual(module):
    assert "textual" not in _loaded_after(f"import {module}")


def test_workbench_help_does_not_import_textual():
    loaded = _loaded_after("from workbench.cli import main\n"
                           "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert "textual" not in loaded and "torch" not in loaded


def test_tui_command_refuses_to_start_without_a_terminal(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "workbench", "tui"], cwd=project_root(), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin",
                                                                    "WORKBENCH_HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert "the TUI needs a terminal" in proc.stderr and "demo --headless" in proc.stderr
