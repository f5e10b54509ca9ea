"""CPU threads shared between training and the torch work beside it (workbench/cpushare.py): the eval or chat takes
the cores training leaves, posts a claim while it generates, and a real XTuner training process gives way to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench import cpushare
from workbench.paths import configs_dir, project_root

SLEEP = "import time; time.sleep(300)"


@pytest.fixture
def board(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "board"
    monkeypatch.setenv(cpushare.BOARD_ENV, str(path))
    monkeypatch.delenv(cpushare.CPU_SHARE_ENV, raising=False)
    return path


def started(*argv: str) -> subprocess.Popen:
    """A child whose command line is `argv`, once it shows in /proc (between fork and exec a child still carries
    its parent's command line: a scan right after Popen can miss it)."""
    proc = subprocess.Popen(list(argv))
    wanted = "\0".join(argv[-2:]).encode()
    deadline = time.monotonic() + 60
    while wanted not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, f"{argv} never showed in /proc"
        time.sleep(0.01)
    return proc


@pytest.fixture
def fake_trainer():
    """A process whose command line is a training run's (what `training_processes` looks for)."""
    proc = started(sys.executable, "-c", SLEEP, "workbench.xtuner_compat", "train", "cfg.py")
    yield proc
    proc.kill()
    proc.wait()


def test_threads_left_for_work_beside_training():
    assert cpushare.shared_threads(cores=2, trainers=0) is None  # nothing to share with
    assert cpushare.shared_threads(cores=2, trainers=1) == 1
    assert cpushare.shared_threads(cores=16, trainers=1) == 8
    assert cpushare.shared_threads(cores=2, trainers=3) == 1  # never fewer than one


def test_the_share_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(cpushare.CPU_SHARE_ENV, "0")
    assert cpushare.shared_threads(cores=2, trainers=1) is None


def test_a_trainer_runs_on_the_cores_the_claims_leave_and_never_on_more_than_it_started_with():
    assert cpushare.trainer_threads(cores=2, own=2, trainers=1, claimed=1) == 1
    assert cpushare.trainer_threads(cores=16, own=16, trainers=1, claimed=8) == 8
    assert cpushare.trainer_threads(cores=16, own=4, trainers=1, claimed=8) == 4  # its own limit stands
    assert cpushare.trainer_threads(cores=16, own=16, trainers=2, claimed=8) == 4  # two trainers split the rest
    assert cpushare.trainer_threads(cores=2, own=2, trainers=1, claimed=5) == 1  # never fewer than one


def test_training_processes_are_found_and_their_supervisors_are_not():
    trainer = started(sys.executable, "-c", SLEEP, "workbench.xtuner_compat", "train", "cfg.py")
    supervisor = started(sys.executable, "-c", SLEEP, "workbench.runs.supervise", "--",
                         "python", "-m", "workbench.xtuner_compat", "train", "cfg.py")
    try:
        found = cpushare.training_processes()
        assert trainer.pid in found and supervisor.pid not in found
    finally:
        for p in (trainer, supervisor):
            p.kill()
            p.wait()
    assert trainer.pid not in cpushare.training_processes()


def test_a_claim_is_posted_only_while_generating_beside_training_and_a_dead_process_claim_is_dropped(
        board, fake_trainer):
    with cpushare.cpu_turn(1):
        with cpushare.cpu_turn(1):  # re-entrant: the inner end does not withdraw the claim
            pass
        posted = json.loads((board / str(os.getpid())).read_text())
        assert posted["threads"] == 1
    assert not (board / str(os.getpid())).exists()

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (board / str(gone.pid)).write_text(json.dumps({"threads": 1}))
    (board / str(fake_trainer.pid)).write_text(json.dumps({"threads": 2}))
    assert cpushare.claims(board) == {fake_trainer.pid: 2}
    assert not (board / str(gone.pid)).exists()


def test_the_trainer_gives_way_while_a_claim_stands_and_takes_its_threads_back_after(board, fake_trainer):
    class Torch:  # the two calls the share makes, recorded
        threads = 4

        def get_num_threads(self):
            return self.threads

        def set_num_threads(self, n):
            self.threads = n

    torch, lines = Torch(), []
    share = cpushare.TrainerShare(torch, log=lines.append, cores=4)
    assert share.adjust() == 4 and lines == []  # nobody beside it
    board.mkdir(parents=True)
    (board / str(fake_trainer.pid)).write_text(json.dumps({"threads": 2}))
    assert share.adjust() == 1 and torch.threads == 1  # 4 cores - 2 claimed, split with the other trainer
    assert f"training on 1 of 4 CPU threads while chat/eval (pid {fake_trainer.pid})" in lines[-1]
    (board / str(fake_trainer.pid)).unlink()
    assert share.adjust() == 4 and torch.threads == 4 and lines[-1] == "workbench: training back on 4 CPU threads"


def test_no_claim_when_no_training_runs(board, monkeypatch):
    # the scan is what says "no training": controlled here, since another run on the test machine is a trainer
    monkeypatch.setattr(cpushare, "training_processes", lambda: [])
    with cpushare.cpu_turn(2):
        assert not board.exists() or not any(board.iterdir())
    with cpushare.cpu_turn(2, trainers=0):  # the caller's own count, when it has just looked
        assert not board.exists() or not any(board.iterdir())


def test_a_tiny_models_generation_beside_training_claims_its_share(board, fake_trainer, tiny_world):
    from workbench.models.base import GenerationSettings
    from workbench.models.hf import TransformersBackend
    from workbench.models.templates import get_format

    seen = []
    backend = TransformersBackend(str(tiny_world), device="cpu")
    try:
        backend.generate([[{"role": "user", "content": "Who are you?"}]], get_format("internlm2_chat"),
                         GenerationSettings(max_new_tokens=4),
                         progress=lambda *a: seen.append(json.loads((board / str(os.getpid())).read_text())))
    finally:
        backend.close()
    import torch

    assert seen and seen[0]["threads"] == torch.get_num_threads()
    assert backend.cpu_note is None or "torch threads" in backend.cpu_note
    assert not (board / str(os.getpid())).exists()  # withdrawn when the generation ended


@pytest.mark.slow
@pytest.mark.skipif(cpushare.cpu_count() < 2, reason="a trainer on one core has nothing to give")
def test_a_real_xtuner_training_run_gives_way_to_a_claim(board, tiny_world, tmp_path):
    neighbour = subprocess.Popen([sys.executable, "-c", SLEEP])
    board.mkdir(parents=True)
    claim = board / str(neighbour.pid)
    claim.write_text(json.dumps({"threads": cpushare.cpu_count() - 1}))
    work = tmp_path / "work"
    env = dict(os.environ, WORKBENCH_MODEL=str(tiny_world), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=str(cpushare.cpu_count()))
    try:
        p = subprocess.run([sys.executable, "-m", "workbench.xtuner_compat", "train",
                            str(configs_dir() / "tiny_cpu_lora.py"), "--work-dir", str(work), "--cfg-options",
                            "train_cfg.max_iters=2", "default_hooks.checkpoint.interval=100",
                            "custom_hooks.1.every_n_iters=100", "train_dataloader.dataset.map_num_proc=1"],
                           capture_output=True, text=True, env=env, cwd=project_root(), timeout=600)
    finally:
        neighbour.kill()
        neighbour.wait()
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    log = p.stdout + p.stderr
    assert f"training on 1 of {cpushare.cpu_count()} CPU threads while chat/eval (pid {neighbour.pid})" in log
