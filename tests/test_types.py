"""The type check of `./dev test`: mypy over the package, with the settings of pyproject's [tool.mypy].

It is what keeps the interfaces honest: a caller that uses a member `Backend` or `ReplyStream` does not declare, or a
backend whose `stream()` returns something else, fails here instead of at run time in one front end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_type_errors_in_the_package():
    proc = subprocess.run([sys.executable, "-m", "mypy", "workbench"], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
