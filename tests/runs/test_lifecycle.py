"""Real detached XTuner runs on the tiny world: survive the launcher (SIGHUP, SIGKILL), stop, crash, resume.

Each run is started through the real `workbench` CLI in a subprocess, with its own WORKBENCH_HOME.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from workbench.runs.follow import read_scalars

from .helpers import RUN_DEADLINE_S, TINY_CONFIG, cli, run_record, session_alive, wait_ended, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lifecycle") / "wbhome"


@pytest.fixture(scope="module")
def env(tiny_world) -> dict:
    # One math thread: the same summation order in every run (so a resume can be compared bit for bit
    # even on a loaded machine, where MKL would otherwise vary its thread count), and less contention.
    return dict(os.environ, WORKBENCH_MODEL=str(tiny_world), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
                MKL_NUM_THREADS="1")


def stdout_log(home: Path, run_id: str) -> Path:
    return Path(run_record(run_id, home)["run_dir"]) / "stdout.log"


def training_started(home: Path, run_id: str) -> bool:
    log = stdout_log(home, run_id)
    return log.exists() and "Iter(train)" in log.read_text(errors="replace")


def controlling_tty():  # runs in the child after setsid(): the pty becomes its controlling terminal
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture(scope="module")
def finished_run(home, env, tmp_path_factory) -> dict:
    """A 30-iteration run (checkpoint every 10) whose launcher's terminal hangs up while it trains.

    The launcher (`workbench train --follow`) runs on a pseudo-terminal; closing the terminal's master side
    is what an SSH drop does: the kernel sends SIGHUP to the terminal's session.
    """
    work = tmp_path_factory.mktemp("finished") / "work"
    master, slave = pty.openpty()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "workbench", "train", str(TINY_CONFIG), "--work-dir", str(work),
         "--cfg-options", "train_cfg.max_iters=30", "--follow"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=controlling_tty,
        env=dict(env, WORKBENCH_HOME=str(home)))
    os.close(slave)
    seen = bytearray()

    def read_terminal():
        if select.select([master], [], [], 0.2)[0]:
            try:
                seen.extend(os.read(master, 65536))
            except OSError:
                return False
        return b"iter " in seen  # --follow printed a parsed metrics line: training is under way

    try:
        wait_for(read_terminal, RUN_DEADLINE_S, "the launcher to show training", every=0)
        # stdout's first line is the run id (stderr's warnings and hints share the terminal)
        run_id = re.search(r"^([0-9a-f]{6})\r?$", seen.decode(errors="replace"), re.M).group(1)
        os.close(master)  # the connection drops
        hung_up = launcher.wait(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    record = wait_ended(run_id, home)
    return {"id": run_id, "work": work, "record": record, "launcher_exit": hung_up}


def test_a_run_survives_the_hangup_of_its_terminal_and_finishes(finished_run):
    # The kernel delivers the hang-up asynchronously: a launcher that writes to the dead terminal first ends on its
    # I/O error (exit 1) instead of the signal. Either way the launcher is gone and the run is not.
    assert finished_run["launcher_exit"] in (-signal.SIGHUP, 1)
    record = finished_run["record"]
    assert (record["status"], record["exit_code"], record["reason"]) == ("finished", 0, None)
    assert record["ended_at"] > record["started_at"]


def test_parsed_events_match_scalars_and_samples_group_by_iteration(finished_run, home):
    proc = cli("logs", finished_run["id"], "--json", home=home, check=True)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    metrics = [e for e in events if e["kind"] == "metrics"]
    assert [m["iter"] for m in metrics] == list(range(1, 31))
    log_path = Path(run_record(finished_run["id"], home)["log_path"])
    scalars = read_scalars(log_path.parent / "vis_data" / "scalars.json")
    for m in metrics:
        assert abs(m["loss"] - scalars[m["iter"]]["loss"]) <= 5.01e-5
    samples: dict[int, list] = {}
    for e in events:
        if e["kind"] == "sample":
            samples.setdefault(e["iteration"], []).append(e)
    assert sorted(samples) == [0, 10, 20, 30]
    assert [len(samples[i]) for i in (0, 10, 20)] == [4, 4, 4]
    assert samples[10][0]["input"] == "你是谁" and samples[10][0]["answer"]
    assert [e["iteration"] for e in events if e["kind"] == "checkpoint"] == [10, 20, 30]
    assert not [e for e in events if e["kind"] == "error"]
    assert events[-1] == {"kind": "run_end", "ts": None, "source": "", "offset": 0, "status": "finished",
                          "exit_code": 0, "reason": None}


def test_checkpoints_of_the_run_are_listed(finished_run, home):
    ckpts = json.loads(cli("checkpoints", finished_run["id"], "--json", home=home, check=True).stdout)
    assert [(c["iteration"], c["is_last"], c["converted"]) for c in ckpts] == [
        (10, False, False), (20, False, False), (30, True, False)]


def test_stop_ends_the_run_and_every_process_of_its_session(home, env, tmp_path):
    proc = cli("train", str(TINY_CONFIG), "--work-dir", str(tmp_path / "work"), "--cfg-options",
               "train_cfg.max_iters=500", "--json", home=home,
               env={k: env[k] for k in ("WORKBENCH_MODEL", "OMP_NUM_THREADS")}, check=True)
    run = json.loads(proc.stdout)
    wait_for(lambda: training_started(home, run["id"]), RUN_DEADLINE_S, "training to start")
    assert session_alive(run["pid"])
    stopped = cli("stop", run["id"], home=home, check=True, timeout=120)
    assert stopped.stdout.split() == [run["id"], "stopped"]
    assert session_alive(run["pid"]) == []
    record = run_record(run["id"], home)
    assert record["status"] == "stopped" and record["reason"].startswith("stopped by `workbench stop`")
    again = cli("stop", run["id"], home=home)
    assert again.returncode == 2 and "already ended (stopped)" in again.stderr


def test_a_crashing_run_is_failed_with_its_reason(home, env, tmp_path):
    # Data that exists (a missing file is refused before start now) but is not JSON: the run dies in XTuner.
    broken = tmp_path / "broken.json"
    broken.write_text('[{"messages": [', encoding="utf-8")
    proc = cli("train", str(TINY_CONFIG), "--work-dir", str(tmp_path / "work"), "--json", home=home,
               env={"WORKBENCH_MODEL": env["WORKBENCH_MODEL"], "OMP_NUM_THREADS": "1", "WORKBENCH_DATA": str(broken)},
               check=True)
    run = json.loads(proc.stdout)
    record = wait_ended(run["id"], home)
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert record["reason"] == ("datasets.exceptions.DatasetGenerationError: An error occurred while generating "
                                "the dataset")
    events = [json.loads(line) for line in cli("logs", run["id"], "--json", home=home).stdout.splitlines()]
    errors = [(e["error"], e["message"]) for e in events if e["kind"] == "error"]
    assert ("traceback", record["reason"]) in errors
    assert any(kind == "died" for kind, _ in errors)
    follow = cli("logs", run["id"], "--follow", home=home)
    assert follow.returncode == 3  # following a failed run ends with the "operation failed" code


def test_a_resumed_run_survives_sigkill_of_its_launcher_and_reproduces_the_losses(finished_run, home, env):
    # Runs last in this module: it rewrites iter_20/iter_30 of the finished run's work dir.
    original = Path(run_record(finished_run["id"], home)["log_path"])
    expected = read_scalars(original.parent / "vis_data" / "scalars.json")
    out = finished_run["work"].parent / "resume.out"
    with open(out, "w") as stdout:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "workbench", "resume", finished_run["id"], "--iter", "10", "--follow"],
            stdout=stdout, stderr=subprocess.DEVNULL, env=dict(env, WORKBENCH_HOME=str(home)))
    try:
        new_id = wait_for(lambda: (out.read_text().split() or [None])[0], 120, "the new run id")
        wait_for(lambda: training_started(home, new_id), RUN_DEADLINE_S, "training to start")
        assert launcher.poll() is None, "the launcher should still be following the run"
        launcher.send_signal(signal.SIGKILL)
        assert launcher.wait(timeout=30) == -signal.SIGKILL
    finally:
        if launcher.poll() is None:
            launcher.kill()
    record = wait_ended(new_id, home)
    assert (record["status"], record["exit_code"]) == ("finished", 0)
    assert record["parent_id"] == finished_run["id"] and record["resume_from"].endswith("iter_10.pth")
    assert record["work_dir"] == str(finished_run["work"]) and record["log_path"] != str(original)
    resumed = read_scalars(Path(record["log_path"]).parent / "vis_data" / "scalars.json")
    assert sorted(resumed) == list(range(11, 31))
    diffs = {it: abs(row["loss"] - expected[it]["loss"]) for it, row in resumed.items()}
    assert all(math.isclose(resumed[it]["loss"], expected[it]["loss"], rel_tol=1e-6) for it in diffs), diffs
