"""The eval on the tiny world, for real: an XTuner LoRA run on identity-only data with too many steps
(workbench/configs/tiny_cpu_overfit.py) is swept by `workbench eval` in a child process, interrupted and resumed,
and the same run is scored from its log, under two templates, and adapter-vs-merged.

One training run and one sweep for the whole module (session fixtures); the other tests reuse them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ROOT, VARS, run_eval, wait_for

pytestmark = pytest.mark.slow

TOTAL_ITEMS = 48 + 170


def _cli(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, WORKBENCH_HOME=str(home))
    p = subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=timeout)
    assert p.returncode == 0, f"workbench {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="session")
def overfit_run(tiny_overfit_run_dir, tmp_path_factory) -> Path:
    """A copy of the shared finished run of workbench/configs/tiny_cpu_overfit.py (identity-only data, too many steps):
    these tests convert its checkpoints, which writes into the work dir.

    Its data has a recipe beside it, so the sweep finds {name}/{org} without --var."""
    work = tmp_path_factory.mktemp("overfit") / "work"
    shutil.copytree(tiny_overfit_run_dir, work)
    return work


@pytest.fixture(scope="session")
def eval_home(tmp_path_factory) -> Path:
    """The WORKBENCH_HOME of these tests: its eval cache and run registry are shared by them."""
    return tmp_path_factory.mktemp("evalhome")


def _cache_files(home: Path) -> list[Path]:
    d = home / "cache" / "eval"
    return sorted(p for p in d.glob("*.jsonl")) if d.is_dir() else []


def _cached_rows(home: Path) -> int:
    return sum(sum(1 for ln in p.read_text(encoding="utf-8").splitlines() if '"_meta"' not in ln)
               for p in _cache_files(home))


@pytest.fixture(scope="session")
def swept(overfit_run, eval_home, tmp_path_factory) -> dict:
    """The sweep of every checkpoint: started, killed once two targets are cached, then run to the end."""
    out = tmp_path_factory.mktemp("swept")
    args = ["--checkpoints", str(overfit_run), "--format", "json", "-q"]  # {name}/{org}: the data's recipe
    env = dict(os.environ, WORKBENCH_HOME=str(eval_home))
    first = subprocess.Popen([sys.executable, "-m", "workbench", "eval", *args, "--out", str(out / "never.json")],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(_cache_files(eval_home)) >= 2 or first.poll() is not None, 600,
                 "the sweep to cache two targets", every=0.05)
    finally:
        first.send_signal(signal.SIGKILL)  # a crash, not a polite stop
        first.wait()
    cached_before = _cached_rows(eval_home)
    second = run_eval(*args, "--out", str(out / "report.json"), "--save-responses", str(out / "responses.jsonl"),
                      "--plot", str(out / "curve.png"), home=eval_home, timeout=1200)
    assert second.returncode == 0, second.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return {"dir": out, "report": report, "cached_before": cached_before, "stderr": second.stderr,
            "killed_early": not (out / "never.json").exists()}


@pytest.fixture(scope="session")
def registered(overfit_run, eval_home) -> Path:
    """The overfit run registered with `workbench import` (for --run and `workbench convert`)."""
    _cli("import", str(overfit_run), home=eval_home)
    return overfit_run


def rows_of(report: dict) -> dict[str, dict]:
    return {r["name"]: r for r in report["rows"]}


def test_interrupted_sweep_resumes_without_regenerating_what_it_had(swept):
    meta = swept["report"]["meta"]
    assert swept["killed_early"], "the first sweep finished before it could be interrupted"
    assert swept["cached_before"] >= TOTAL_ITEMS  # at least one whole target survived the kill, intact
    assert meta["cached"] == swept["cached_before"]
    assert meta["generated"] + meta["cached"] == TOTAL_ITEMS * len(swept["report"]["rows"])


def test_curve_shows_identity_rising_and_general_falling(swept):
    assert swept["report"]["meta"]["vars"] == {"name": "Tutu", "org": "Workbench Lab"}  # from the data's recipe
    assert "variables from the recipe" in swept["stderr"]
    rows = swept["report"]["rows"]
    base, last = rows[0], rows[-1]
    assert base["name"] == "base" and base["general"] >= 0.9 and base["identity"] <= 0.1
    assert [r["iteration"] for r in rows[1:]] == sorted(r["iteration"] for r in rows[1:])
    assert max(r["identity"] for r in rows[1:]) >= 0.8
    assert last["general"] < base["general"] - 0.1
    assert last["leak"] > 0.1 and last["leak"] > rows[1]["leak"]
    assert all(len(r["items"]) == TOTAL_ITEMS for r in rows)


def test_verdict_picks_an_early_checkpoint_and_flags_the_last(swept):
    report = swept["report"]
    v, rows = report["verdict"], rows_of(report)
    last = report["rows"][-1]
    assert v["recommended"] is not None and v["recommended"] != last["name"]
    rec = rows[v["recommended"]]
    assert rec["identity"] >= 0.5 and rec["general"] >= rows["base"]["general"] - v["tolerance"]
    assert {"forgetting", "leaking"} <= set(v["flags"][last["name"]])
    assert rec["iteration"] < last["iteration"] and v["identity_learned_at"] is not None
    assert f"iteration {rec['iteration']}" in v["explanation"]
    assert v["general_broke_at"] is not None
    assert (swept["dir"] / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_rescoring_saved_responses_gives_the_same_numbers(swept, eval_home):
    p = run_eval("--responses", str(swept["dir"] / "responses.jsonl"), *VARS, "--format", "json", home=eval_home)
    assert p.returncode == 0, p.stderr
    again = json.loads(p.stdout)
    assert again["verdict"] == swept["report"]["verdict"]
    keys = ("identity", "general", "general_vs_base", "leak", "loop", "distinct", "identity_score", "general_score")
    for a, b in zip(swept["report"]["rows"], again["rows"], strict=True):
        assert a["name"] == b["name"] and a["template"] == b["template"]
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
        assert a["items"] == b["items"]


def test_repeated_sweep_generates_nothing_and_loads_no_model(swept, overfit_run, eval_home):
    p = run_eval("--checkpoints", str(overfit_run), "--format", "json", "-q", home=eval_home)
    assert p.returncode == 0, p.stderr
    again = json.loads(p.stdout)
    assert again["meta"]["generated"] == 0
    assert again["meta"]["cached"] == TOTAL_ITEMS * len(again["rows"])
    assert "loaded" not in p.stderr
    assert [r["identity"] for r in again["rows"]] == [r["identity"] for r in swept["report"]["rows"]]


def test_compare_templates_shows_the_wrong_template_losing_the_identity(swept, overfit_run, eval_home):
    p = run_eval("--checkpoints", str(overfit_run), "--iters", "last", "--evalset", "identity", *VARS,
                 "--compare-templates", "internlm2_chat,default", "--format", "json", "-q", home=eval_home)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    last = swept["report"]["rows"][-1]["name"]
    cmp = {c["name"]: c for c in report["comparison"]}[last]["templates"]
    assert cmp["internlm2_chat"]["training"] and not cmp["default"]["training"]
    assert cmp["internlm2_chat"]["identity"] > cmp["default"]["identity"] + 0.3
    assert any("not the one used in training" in w for w in report["warnings"])
    assert "not the one used in training" in p.stderr


def test_from_log_scores_the_hook_samples_without_a_model(swept, registered, eval_home):
    p = run_eval("--run", str(registered), "--from-log", *VARS, "--format", "json", home=eval_home)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    rows = report["rows"]
    assert rows[0]["name"] == "base" and rows[0]["identity"] == 0.0
    # the hook runs every evaluation_freq iterations and once after training: the last checkpoint's iteration
    assert rows[-1]["iteration"] == swept["report"]["rows"][-1]["iteration"]
    assert len(rows) >= 3
    assert rows[-1]["identity"] > rows[0]["identity"]
    assert 0 < rows[0]["n_identity"] + rows[0]["n_general"] < TOTAL_ITEMS  # only the hook's prompts
    assert any("hook prompt" in w for w in report["warnings"])


def test_parity_finds_merged_equal_to_its_adapter_and_tells_another_model_apart(swept, registered, eval_home,
                                                                                   tiny_world, tmp_path):
    last = swept["report"]["rows"][-1]["iteration"]
    _cli("convert", str(registered), "--iter", str(last), home=eval_home)
    adapter = registered / "hf" / f"iter_{last}"
    merged = tmp_path / "merged"
    _cli("merge", str(tiny_world), str(adapter), str(merged), home=eval_home)

    same = run_eval("--parity", str(adapter), str(merged), "--evalset", "identity", *VARS,
                    "--format", "json", "-q", "--fail-under", "agreement=1.0", home=eval_home)
    assert same.returncode == 0, same.stderr
    r = json.loads(same.stdout)
    assert r["n"] == 48 and r["identical"] == 48 and r["differing"] == []
    assert r["warnings"] == []  # the adapter folder's xtuner_config.py gave the training template

    # The base model is not this adapter's merge: every identity answer differs, and parity says where.
    other = run_eval("--parity", str(adapter), str(tiny_world), "--evalset", "identity", *VARS,
                     "--format", "json", "-q", "--fail-under", "agreement=1.0", home=eval_home)
    assert other.returncode == 1, other.stderr
    r = json.loads(other.stdout)
    assert r["differing"] and r["identical"] < 24
    d = r["differing"][0]
    assert d["adapter"][: d["first_difference"]] == d["merged"][: d["first_difference"]]
    assert d["adapter"][d["first_difference"]:] != d["merged"][d["first_difference"]:]
