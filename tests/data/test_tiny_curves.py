"""What the shipped tiny data and configs are for, measured with the eval core (`workbench eval`) on real runs:
identity-only data learns the identity and then breaks general knowledge; mixed data keeps it (slow tests).

The runs are the shared session fixtures (`tiny_run_dir`: tiny_cpu_lora.py, mixed data, 60 iterations;
`tiny_overfit_run_dir`: tiny_cpu_overfit.py, identity-only, 300 iterations, the demo's run). The figures are in docs/data.md;
the thresholds here leave room for another CPU's rounding.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.paths import project_root

from .curve_shape import curve_text, overfit_curve_problems

pytestmark = pytest.mark.slow


def _sweep(work: Path, iters: str | None, home: Path) -> dict:
    p = subprocess.run(
        [sys.executable, "-m", "workbench", "eval", "--checkpoints", str(work), *(["--iters", iters] if iters else []),
         "--var", "name=Tutu", "--var", "org=Workbench Lab", "--format", "json", "-q", "--no-cache"],
        capture_output=True, text=True, cwd=project_root(), timeout=1200,
        env={**__import__("os").environ, "WORKBENCH_HOME": str(home)})
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


def _scores(work: Path, iters: str | None, home: Path) -> dict[str, dict]:
    return {r["name"]: r for r in _sweep(work, iters, home)["rows"]}


def test_identity_only_data_learns_the_identity_then_breaks_general_knowledge(tiny_overfit_run_dir, wb_home):
    # Every checkpoint, and the curve's shape rather than an iteration: the shape is what must hold for any seed
    # (bench/curve_matrix.py runs it over threads x seeds); the tiny world and the run are bit for bit the same on
    # every CPU under the portable numerics (tests/conftest.py), so the figures in docs/data.md are this machine's too.
    report = _sweep(tiny_overfit_run_dir, None, wb_home)
    assert not overfit_curve_problems(report), (overfit_curve_problems(report), curve_text(report))


def test_mixed_data_learns_the_identity_and_keeps_general_knowledge(tiny_run_dir, wb_home):
    rows = _scores(tiny_run_dir, "last", wb_home)
    base, last = rows["base"], rows["iter_60"]
    assert last["identity"] >= 0.4
    assert last["general"] >= base["general"] - 0.05 and last["leak"] <= 0.05
