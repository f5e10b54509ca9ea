"""`workbench demo --headless --world tiny`: the demo on the tiny world where there is no terminal, end to end (slow:
it trains). The real world's demo is tests/test_real_world.py."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow


def test_the_demo_trains_sweeps_and_recommends_a_checkpoint_before_general_knowledge_breaks(demo_run):
    out, err = demo_run.stdout, demo_run.stderr
    assert re.search(r"demo run \w+ \(identity-only data\): tiny_cpu_overfit\.py in ", err)
    # the progress bars on stderr, with counts: the training's iterations, then the sweep's generations
    assert re.search(r"^training.*\] 300/300 100%", err, re.M), err[-2000:]
    assert re.search(r"^iter_300 \[#+\] (\d+)/\1 100%", err, re.M), err[-2000:]
    curve = out.split("By language")[0]  # the curve table, not the per-language breakdown below it
    rows = {m.group(1): m.groups() for m in re.finditer(r"^(base|iter_\d+)\s+(\d*)\s+([\d.]+)\s+([\d.]+)", curve, re.M)}
    assert "base" in rows and "iter_300" in rows and len(rows) == 16  # the base and every checkpoint, 20 to 300
    rec = re.search(r"Recommended: iteration (\d+)", out)
    assert rec, out
    picked, last = rows[f"iter_{rec.group(1)}"], rows["iter_300"]
    assert int(rec.group(1)) < 300
    assert float(picked[2]) >= 0.5 and float(picked[3]) >= float(rows["base"][3]) - 0.05  # identity, general kept
    assert float(last[3]) < float(picked[3]) - 0.2  # and the overfit one lost it
    assert re.search(r"^iter_300 .*forgetting", curve, re.M)


def test_the_demo_leaves_its_run_in_the_registry_and_its_checkpoints_on_disk(demo_run):
    import json
    import os
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "workbench", "runs", "--json"], capture_output=True, text=True,
                       env=dict(os.environ, WORKBENCH_HOME=str(demo_run.home)), timeout=120)
    assert p.returncode == 0, p.stderr
    runs = json.loads(p.stdout)
    assert [(r["name"], r["status"]) for r in runs] == [("demo-identity-only", "finished")]
    assert sorted(int(c.stem.split("_")[1]) for c in demo_run.work.glob("iter_*.pth")) == list(range(20, 301, 20))
