"""Snapshots of each screen at 80x24 (tests/tui/__snapshots__/, made with --snapshot-update and looked at).

Deterministic by construction: the recorded run (fixed logs, ids, times), fixed settings, and, for Eval, a
report the eval core re-scores from recorded replies (no model). Each `run_before` waits for the state to
be on screen rather than sleeping.
"""

from __future__ import annotations

import pytest

from workbench.settings import Settings
from workbench.tui.app import WorkbenchApp

from .helpers import FIXTURES, screen_text, wait_for

SIZE = (80, 24)


def _app(**kwargs) -> WorkbenchApp:
    return WorkbenchApp(Settings(theme="textual-dark"), **kwargs)


async def _run_shown(pilot) -> None:
    await wait_for(pilot, lambda: "iter 300/300" in screen_text(pilot.app), 10, "the recorded run's metrics")


def test_runs_screen_metrics(recorded_home, snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_run_shown)


def test_runs_screen_samples_side_by_side(recorded_home, snap_compare):
    async def before(pilot):
        await _run_shown(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: "Q " in screen_text(pilot.app), 5, "the samples")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=before)


def test_runs_screen_log_view(recorded_home, snap_compare):
    async def before(pilot):
        await _run_shown(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: "following" in screen_text(pilot.app), 5, "the log followed")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=before)


def test_runs_screen_checkpoints(recorded_home, snap_compare):
    async def before(pilot):
        await _run_shown(pilot)
        await pilot.press("k")
        await wait_for(pilot, lambda: " last" in screen_text(pilot.app), 5, "the checkpoints")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=before)


def test_chat_screen_models_picker(recorded_home, snap_compare):
    async def before(pilot):
        await pilot.pause()
        await pilot.press("f2")
        await wait_for(pilot, lambda: "no model loaded" in screen_text(pilot.app), 10, "the Chat screen")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: "demo-iter_" in screen_text(pilot.app), 10, "the checkpoints to pick")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=before)


RESPONSES = FIXTURES / "recorded_responses.jsonl"


@pytest.mark.skipif(not RESPONSES.exists(), reason="no recorded responses")
def test_eval_screen_curve_table_and_verdict(recorded_home, snap_compare):
    from workbench.evals.evaluate import Request, load_evalsets, responses_report

    req = Request(evalsets=("identity", "general"), variables={"name": "Tutu", "org": "Workbench Lab"})
    report = responses_report(str(RESPONSES), req)
    evalset, _ = load_evalsets(req.evalsets, req.variables)
    expected = {item.id: list(item.answers) for item in evalset.items}

    async def before(pilot):
        await pilot.pause()
        screen = pilot.app.screen
        screen.show_report(report, expected)
        await wait_for(pilot, lambda: "verdict" in screen_text(pilot.app) and "forgetting, leaking" in
                       screen_text(pilot.app), 5, "the report, its columns sized")

    assert snap_compare(_app(start_mode="eval"), terminal_size=SIZE, run_before=before)

