"""The runs list as a user over SSH drives it: `workbench` in an 80x24 tmux pane on two recorded runs, keys only:
mark both, compare their loss curves, go back, delete one (after the question), see it gone from the list and
from `workbench runs`. No training: the runs are the recorded ones (tests/tui/fixtures).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from .helpers import import_run, install_recorded_run, install_stopped_run
from .test_tmux import WORKBENCH, Pane

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


def test_compare_two_runs_then_delete_one(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    import_run(install_recorded_run(tmp_path / "work"))
    work2 = install_stopped_run(tmp_path / "work2")
    import_run(work2)
    pane = Pane(WORKBENCH, tmp_path, {"WORKBENCH_HOME": str(home), "PYTHONUNBUFFERED": "1"})
    try:
        pane.wait(r"rec002 .*stopped .*125/300", 60)
        pane.keys("Space", "Space")  # both marked; the cursor ends on rec002
        pane.wait(r"2 marked")
        pane.keys("C")
        pane.wait(r"Compare 2 runs")
        text = pane.wait(r"rec002 +demo +stopped +1–125")
        assert re.search(r"rec001 +demo +finished +1–300 +1\.562 +1\.521 @276", text), text
        pane.keys("Escape")
        pane.wait(r"●rec002")

        pane.keys("d")
        text = pane.wait(r"Delete run rec002 \(demo, stopped\)\?")
        assert "work dir" in text
        pane.keys("y")
        deadline = time.monotonic() + 15
        while "rec002" in pane.text():
            assert time.monotonic() < deadline, pane.text()
            time.sleep(0.2)
        assert not work2.exists()
        listed = subprocess.run([WORKBENCH, "runs", "--json"], capture_output=True, text=True, check=True,
                                env=dict(os.environ, WORKBENCH_HOME=str(home)))
        assert [r["id"] for r in json.loads(listed.stdout)] == ["rec001"]
    finally:
        pane.close()
