"""Helpers of the eval tests: hand-written saved responses (no model), and the `workbench eval` subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workbench.evals.evalset import builtin

ROOT = Path(__file__).resolve().parents[2]
VARS = ["--var", "name=Tutu", "--var", "org=Workbench Lab"]


def identity_reply(item) -> str:
    zh = item.lang == "zh"
    if item.extra.get("aspect") == "maker":
        return "我由Workbench Lab开发" if zh else "I was made by Workbench Lab"
    return "我是Tutu的小助手" if zh else "I am Tutu's assistant"


def synthetic_responses() -> list[dict]:
    """A three-row story: the base (knows facts, not the identity), iter_10 (both), iter_20 (collapsed)."""
    ident, gen = builtin("identity"), builtin("general")
    rows = []
    for i in ident.items:
        rows.append({"id": i.id, "response": "I am TinyLM, a small language model", "checkpoint": "base"})
        rows.append({"id": i.id, "response": identity_reply(i), "checkpoint": "iter_10"})
        rows.append({"id": i.id, "response": identity_reply(i), "checkpoint": "iter_20"})
    for i in gen.items:
        rows.append({"id": i.id, "response": i.answers[0], "checkpoint": "base"})
        rows.append({"id": i.id, "response": i.answers[0], "checkpoint": "iter_10"})
        rows.append({"id": i.id, "response": "我是Tutu的小助手" if i.lang == "zh" else "I am Tutu's assistant",
                     "checkpoint": "iter_20"})
    return rows


def run_eval(*args: str, home: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`workbench eval ARGS` in a child process, as a script would run it."""
    env = dict(os.environ)
    if home is not None:
        env["WORKBENCH_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "workbench", "eval", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def wait_for(cond, timeout: float, what: str, every: float = 0.2):
    """Poll `cond` until it returns something truthy; fail with `what` after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
