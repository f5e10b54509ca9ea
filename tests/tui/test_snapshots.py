"""Snapshots of each screen at 80x24 (tests/tui/__snapshots__/, made with --snapshot-update and looked at).

Deterministic by construction: the recorded run (fixed logs, ids, times), fixed settings, and, for Eval, a
report the eval core re-scores from recorded replies (no model). Each `run_before` waits for the state to
be on screen rather than sleeping.
"""

from __future__ import annotations

import re

import pytest

from workbench.settings import Settings
from workbench.tui.app import WorkbenchApp

from .helpers import FIXTURES, screen_text, wait_for

SIZE = (80, 24)


def _app(**kwargs) -> WorkbenchApp:
    return WorkbenchApp(Settings(theme="textual-dark"), **kwargs)


def steady(before):
    """`before`, then every text cursor stopped: a focused Input blinks every 0.5 s, so a screenshot taken
    after a slow step (a config inspected under load) caught the cursor on or off by chance (CI failed so)."""
    async def run(pilot):
        from textual.widgets import Input, TextArea

        await before(pilot)
        for screen in pilot.app.screen_stack:
            for widget in screen.query(Input):
                widget.cursor_blink = False
            for widget in screen.query(TextArea):
                widget.cursor_blink = False
        await pilot.pause()
    return run


async def _run_shown(pilot) -> None:
    await wait_for(pilot, lambda: "iter 300/300" in screen_text(pilot.app), 10, "the recorded run's metrics")
    # The runs table measures its rows when it is next idle: wait for the row itself, with its loss.
    await wait_for(pilot, lambda: re.search(r"rec001 .* 1\.562", screen_text(pilot.app)), 10, "the run's row")


def test_runs_screen_metrics(recorded_home, snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE, run_before=steady(_run_shown))


def test_runs_screen_samples_side_by_side(recorded_home, snap_compare):
    async def before(pilot):
        await _run_shown(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: "Q " in screen_text(pilot.app), 5, "the samples")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=steady(before))


def test_runs_screen_log_view(recorded_home, snap_compare):
    async def before(pilot):
        await _run_shown(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: "following" in screen_text(pilot.app), 5, "the log followed")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=steady(before))


def test_runs_screen_checkpoints(recorded_home, snap_compare):
    async def before(pilot):
        await _run_shown(pilot)
        await pilot.press("k")
        await wait_for(pilot, lambda: " last" in screen_text(pilot.app), 5, "the checkpoints")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=steady(before))


def test_chat_screen_models_picker(recorded_home, snap_compare):
    async def before(pilot):
        await pilot.pause()
        await pilot.press("f2")
        await wait_for(pilot, lambda: "no model loaded" in screen_text(pilot.app), 10, "the Chat screen")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: "demo/iter_" in screen_text(pilot.app), 10, "the checkpoints to pick")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=steady(before))


RESPONSES = FIXTURES / "recorded_responses.jsonl"


@pytest.mark.skipif(not RESPONSES.exists(), reason="no recorded responses")
def test_eval_screen_curve_table_and_verdict(recorded_home, snap_compare):
    from workbench.evals.evaluate import Request, load_evalsets, responses_report

    req = Request(evalsets=("identity", "general"), variables={"name": "Tutu", "org": "Workbench Lab"})
    report = responses_report(str(RESPONSES), req)
    evalset, _ = load_evalsets(req.evalsets, req.variables)
    expected = {item.id: list(item.answers) for item in evalset.items}

    async def before(pilot):
        screen = pilot.app.screen
        # The run is chosen first (choosing one clears what was shown), then the report is shown.
        await wait_for(pilot, lambda: screen.run_id == "rec001", 10, "the run chosen")
        screen.show_report(report, expected)
        await wait_for(pilot, lambda: "verdict" in screen_text(pilot.app) and "forgetting, leaking" in
                       screen_text(pilot.app), 5, "the report, its columns sized")

    assert snap_compare(_app(start_mode="eval"), terminal_size=SIZE, run_before=steady(before))


def test_runs_screen_lists_every_run_with_its_progress(two_runs, snap_compare):
    async def before(pilot):
        await _run_shown(pilot)
        await wait_for(pilot, lambda: re.search(r"rec002 .* 125/300 +1\.699", screen_text(pilot.app)), 10,
                       "rec002's row, not selected")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=steady(before))


def test_keys_panel_on_the_runs_screen(recorded_home, snap_compare):
    async def before(pilot):
        await _run_shown(pilot)
        await pilot.press("f10")
        await wait_for(pilot, lambda: "Keys: Runs screen" in screen_text(pilot.app), 5, "the keys panel")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=steady(before))


def test_start_run_form(recorded_home, snap_compare, monkeypatch):
    from pathlib import Path

    import workbench.runs.launch as launch

    # Fixed where the run would go and which model the config names: the form shows both.
    monkeypatch.setattr(launch, "fresh_work_dir",
                        lambda config, name=None, **k: Path("/home/you/work_dirs/tiny_cpu_lora/20261203-142847"))
    monkeypatch.setattr(launch, "work_dir_problem", lambda work_dir: None)
    monkeypatch.setenv("WORKBENCH_MODEL", "/nonexistent/tiny-world")
    # and the data: its real path is where the checkout is, whose length moved the form's wrapping by machine
    monkeypatch.setenv("WORKBENCH_DATA", "/nonexistent/tiny_identity_mix.json")

    async def before(pilot):
        await _run_shown(pilot)
        await pilot.press("n", *"tiny_cpu_lora.py")
        await wait_for(pilot, lambda: "prompt template" in screen_text(pilot.app), 120, "the inspection")
        await wait_for(pilot, lambda: "a new folder" in screen_text(pilot.app), 10, "the work dir checked")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=steady(before))


def test_keys_panel_on_the_chat_screen(recorded_home, snap_compare):
    async def before(pilot):
        await wait_for(pilot, lambda: "no model loaded" in screen_text(pilot.app), 10, "the Chat screen")
        await pilot.press("f10")
        await wait_for(pilot, lambda: "Keys: Chat screen" in screen_text(pilot.app), 5, "the keys panel")

    assert snap_compare(_app(start_mode="chat"), terminal_size=SIZE, run_before=steady(before))


def test_reopened_comparison_conversation(recorded_home, snap_compare, monkeypatch):
    """A saved conversation with a plain turn, a cleared context and two side-by-side comparisons, reopened with
    ctrl+l. The models are a fake backend (`tests/models/fake_backend.py`): the screen's reopen path is real, only
    the model load is replaced."""
    from models.fake_backend import fake_session  # tests/models (pytest puts tests/ on the path)

    import workbench.tui.core as core
    from workbench.models import conversations as convs

    folder = convs.conversations_dir(Settings())
    first = fake_session(folder, checkpoints=("iter_60", "iter_300"))
    list(first.ask("What is the capital of Germany?"))
    first.clear_context()
    first.compare("Who are you?", ["base", "iter_60", "iter_300"])
    first.compare("你是谁", ["base", "iter_60", "iter_300"])
    conv_id = first.conversation_id

    def reopen(spec, current, settings, conversation_id=None, notice=None):
        conv = convs.find(conversation_id, folder)
        return fake_session(folder, checkpoints=("iter_60", "iter_300"), conversation=conv)

    monkeypatch.setattr(core, "open_chat_session", reopen)

    async def before(pilot):
        app = pilot.app
        await wait_for(pilot, lambda: "no model loaded" in screen_text(app), 10, "the Chat screen")
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PickModal", 5, "the saved conversations")
        assert [oid for oid, _ in app.screen.options] == [conv_id]
        await pilot.press("enter")
        await wait_for(pilot, lambda: "iter_300 says 你是谁" in screen_text(app), 10, "the three panes")

    assert snap_compare(_app(start_mode="chat"), terminal_size=SIZE, run_before=steady(before))
