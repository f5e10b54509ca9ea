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
    # Every checkpoint: where the curve bends moves by a checkpoint or two from one CPU to another (the tiny world's
    # weights differ in their last bits between CPUs), so the test asks for the shape, not for an iteration.
    report = _sweep(tiny_overfit_run_dir, None, wb_home)
    rows = {r["name"]: r for r in report["rows"]}
    base, last = rows["base"], rows["iter_300"]
    curve = "; ".join(f"{n} {r['identity']:.2f}/{r['general']:.2f}/{r['leak']:.2f}" for n, r in rows.items())
    assert base["identity"] == 0 and base["general"] >= 0.9
    # early: part of the identity taken on, general knowledge kept (the checkpoint to ship), and the verdict picks it
    keeps = [n for n, r in rows.items() if n != "base" and r["identity"] >= 0.5
             and r["general"] >= base["general"] - 0.06 and r["leak"] <= 0.06]
    assert keeps, curve
    assert report["verdict"]["recommended"] in keeps, (report["verdict"], curve)
    # late: the identity learned, general knowledge broken, the identity sentence given to general questions
    assert last["identity"] >= 0.8, curve
    assert last["general"] <= base["general"] - 0.25, curve
    assert last["leak"] >= 0.2, curve


def test_mixed_data_learns_the_identity_and_keeps_general_knowledge(tiny_run_dir, wb_home):
    rows = _scores(tiny_run_dir, "last", wb_home)
    base, last = rows["base"], rows["iter_60"]
    assert last["identity"] >= 0.4
    assert last["general"] >= base["general"] - 0.05 and last["leak"] <= 0.05
