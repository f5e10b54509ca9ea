"""Fixtures of the TUI tests: a recorded run (deterministic screens) and the session's real tiny run.

`recorded_home`: a fresh WORKBENCH_HOME whose registry holds run ``rec001``, a real run of
workbench/configs/tiny_cpu_lora.py recorded into tests/tui/fixtures/recorded_run (logs, scalars, config and the
run's records; its checkpoints are empty placeholders). Used by snapshots and by flows that only read.

`tiny_home`: a WORKBENCH_HOME whose registry holds a copy of the session's finished `tiny_run_dir`
(real checkpoints: chat and eval load them). Shared by the whole session; tests must not start runs in it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .helpers import import_run, install_recorded_run, install_stopped_run


@pytest.fixture
def recorded_home(tmp_path, monkeypatch) -> Path:
    """A fresh home with the recorded run ``rec001`` registered; returns its work dir."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    work = install_recorded_run(tmp_path / "work")
    runs = import_run(work)
    assert [r.id for r in runs] == ["rec001"], runs
    return work


@pytest.fixture
def two_runs(recorded_home, tmp_path) -> Path:
    """rec001 (finished, 300/300) and rec002 (stopped at 125/300, also named `demo`, listed below rec001)."""
    work = install_stopped_run(tmp_path / "work2")
    assert [r.id for r in import_run(work)] == ["rec002"]
    return work


@pytest.fixture(scope="session")
def tiny_session_home(tiny_run_dir, tmp_path_factory) -> Path:
    """A home (shared by the session) whose registry holds a copy of the finished tiny run."""
    root = tmp_path_factory.mktemp("tui_tiny")
    home, work = root / "home", root / "work"
    shutil.copytree(tiny_run_dir, work)
    saved = os.environ.get("WORKBENCH_HOME")
    os.environ["WORKBENCH_HOME"] = str(home)
    try:
        (run,) = import_run(work)
    finally:
        if saved is None:
            os.environ.pop("WORKBENCH_HOME", None)
        else:
            os.environ["WORKBENCH_HOME"] = saved
    assert str(run.status) == "finished", run
    return home


@pytest.fixture
def tiny_home(tiny_session_home, tiny_world, monkeypatch) -> Path:
    monkeypatch.setenv("WORKBENCH_HOME", str(tiny_session_home))
    return tiny_session_home
