"""The TUI as a user over SSH runs it: `workbench` in an 80x24 tmux pane, keys only, panes captured and read.

Start a tiny run from its config, watch it finish, open Chat on two of its checkpoints, ask, swap the
adapter, compare side by side, open Eval. Every wait polls `capture-pane` with a deadline.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.paths import configs_dir

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
_PANES = itertools.count()


class Pane:
    """One tmux server (its own socket) with one 80x24 session running a command."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str], name: str = ""):
        # a socket of its own: `kill-server` returns before the last pane's server has gone, and a new session on
        # the same socket can reach that dying server ("server exited unexpectedly", seen on a loaded machine)
        self.socket = f"wbtest{os.getpid()}-{next(_PANES)}{name}"
        self.env = env
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        self._tmux("new-session", "-d", "-s", "wb", "-x", "80", "-y", "24", "-c", str(cwd),
                   f"env {exports} TERM=xterm-256color {command}; sleep 600")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True,
                              text=True).stdout

    def text(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "wb")

    def keys(self, *keys: str) -> None:
        for key in keys:
            self._tmux("send-keys", "-t", "wb", key)
            time.sleep(0.05)  # one key at a time, as typed: lets the app read each key on its own

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "wb", "-l", text)

    def wait(self, pattern: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if re.search(pattern, text, re.M):
                return text
            if time.monotonic() > deadline:
                errors = Path(self.env["WORKBENCH_HOME"]) / "cache" / "tui-errors.log"
                logged = errors.read_text() if errors.exists() else "(no errors logged)"
                pytest.fail(f"pane never showed {pattern!r} within {timeout:.0f} s; it shows:\n{text}\n"
                            f"errors the app reported:\n{logged}")
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def pane(tiny_world, tmp_path):
    env = {"WORKBENCH_HOME": str(tmp_path / "home"), "WORKBENCH_MODEL": str(tiny_world),
           "WORKBENCH_MAX_NEW_TOKENS": "24", "PYTHONUNBUFFERED": "1"}
    p = Pane(WORKBENCH, tmp_path, env)
    try:
        yield p
    finally:
        p.close()


def test_start_a_run_watch_it_finish_chat_swap_compare_and_open_eval(pane):
    pane.wait(r"F1 Runs.*F2 Chat.*F3 Eval", 60)

    # The keys of the screen, its own first; the tab keys on the tabs.
    pane.keys("F10")
    pane.wait(r"Keys: Runs screen")
    pane.wait(r"n +New run")
    pane.keys("Escape")
    pane.wait(r"Metrics m +Log l +Samples a +Checkpoints k")

    # Runs: start the tiny run from the form; its work dir is a fresh folder, the inspection is in the form.
    pane.keys("n")
    pane.wait(r"Start a run")
    pane.type(str(configs_dir() / "tiny_cpu_lora.py"))
    pane.wait(r"max_iters\s+60", 90)
    pane.wait(r"work dir +\S*work_dirs/tiny_cpu_lora/\d{8}-\d{6}")
    pane.wait(r"Start \(ctrl\+s\)")
    pane.keys("C-s")
    pane.wait(r"tiny_cpu_lora\s+running", 60)
    pane.wait(r"iter \d+/60", 180)
    text = pane.wait(r"tiny_cpu_lora\s+finished", 900)
    assert "60/60" in text

    # Chat: pick two of its checkpoints in the models picker, ask, swap, compare.
    pane.keys("F2")
    pane.wait(r"no model loaded")
    pane.keys("C-o")
    pane.wait(r"tiny_cpu_lora/iter_60  run \w+", 60)
    pane.wait(r"tiny-world", 30)  # the base, from the run's config
    pane.keys("Space", "Down", "Space", "C-s")  # the list has the focus: pick iter_60 and iter_50; load
    pane.wait(r"answering: iter_60", 120)
    pane.wait(r"template: internlm2_chat \(training config\)")
    pane.type("Who are you?")
    pane.keys("Enter")
    pane.wait(r"\d+ tokens · .* · iter_60", 120)
    pane.keys("C-t")
    text = pane.wait(r"answering: iter_50", 10)
    assert "Who are you?" in text  # the conversation stays
    pane.keys("C-b")
    pane.wait(r"Compare: choose 2 to 4")
    pane.keys("Enter")
    pane.wait(r"comparing 3 variants", 10)
    pane.wait(r"─ base ─.*─ iter_60 ─.*─ iter_50 ─", 10)
    pane.type("What is the capital of Germany?")
    pane.keys("Enter")
    deadline = time.monotonic() + 120
    while len(re.findall(r"\d+ tokens", pane.text())) < 3:  # one reply under each of the three panes
        assert time.monotonic() < deadline, pane.text()
        time.sleep(0.2)

    # The palette reaches a tab of the Runs screen from Chat.
    pane.keys("C-p")
    pane.type("log")
    pane.wait(r"Runs › Log tab")
    pane.keys("Enter")
    pane.wait(r"stdout\.log +[\d,]+ lines")

    # Eval: the screen opens on the run.
    pane.keys("F3")
    pane.wait(r"run \w+ \(tiny_cpu_lora\)", 30)
    pane.wait(r"forgetting curve")
    pane.keys("C-q")
    deadline = time.monotonic() + 15
    while "F1 Runs" in pane.text():  # the app is gone and the terminal is given back
        assert time.monotonic() < deadline, pane.text()
        time.sleep(0.2)


def test_workbench_with_screen_opens_that_screen_as_workbench_tui_does(tiny_world, tmp_path):
    # Before: `workbench --screen chat` was "No such option" while `workbench tui --screen chat` worked.
    env = {"WORKBENCH_HOME": str(tmp_path / "home"), "WORKBENCH_MODEL": str(tiny_world)}
    p = Pane(f"{WORKBENCH} --screen eval", tmp_path, env)
    try:
        p.wait(r"F1 Runs.*F2 Chat.*F3 Eval", 60)
        p.wait(r"forgetting curve", 30)  # the Eval screen itself, not the Runs screen it used to open on
        assert "No such option" not in p.text()
    finally:
        p.close()


def test_two_tuis_open_on_one_home_follow_a_run_to_its_end_without_an_error(tiny_world, tmp_path):
    # Two terminals on one machine (two SSH sessions): both poll the registry and store the run's end.
    from workbench.paths import configs_dir

    home = tmp_path / "home"
    env = {"WORKBENCH_HOME": str(home), "WORKBENCH_MODEL": str(tiny_world), "OMP_NUM_THREADS": "1"}
    started = subprocess.run([WORKBENCH, "train", str(configs_dir() / "tiny_cpu_lora.py"), "--work-dir",
                              str(tmp_path / "work"), "--cfg-options", "train_cfg.max_iters=20", "--json"],
                             capture_output=True, text=True, env=dict(os.environ, **env), timeout=300)
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["id"]
    panes = [Pane(WORKBENCH, tmp_path, env, name=n) for n in ("a", "b")]
    try:
        for p in panes:
            p.wait(rf"{run_id} .*(running|starting)|{run_id} .*finished", 60)
        for p in panes:
            p.wait(rf"{run_id} .*finished .* 20/20", 600)
        errors = home / "cache" / "tui-errors.log"
        assert not errors.exists(), errors.read_text()
    finally:
        for p in panes:
            p.close()
