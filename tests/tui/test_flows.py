"""Each screen's main flows, driven by keys through `App.run_test()`, against the real cores on the tiny world:
chat (stream, swap, compare, reopen), eval (sweep, curve, verdict, replies), runs (start, stop, resume)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workbench.settings import Settings
from workbench.tui.app import WorkbenchApp
from workbench.tui.navigation import OpenChat
from workbench.tui.widgets.transcript import ReplyView, Transcript

from .helpers import screen_text, wait_for

pytestmark = pytest.mark.slow


def _tiny_run():
    from workbench.runs import registry

    (run,) = registry.list_runs()
    return run


async def test_chat_streams_a_reply_swaps_adapters_compares_and_reopens(tiny_home, tiny_world):
    work = Path(_tiny_run().work_dir)
    app = WorkbenchApp(Settings(max_new_tokens=24))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.post_message(OpenChat({"base": str(tiny_world), "adapters": [["iter_10", str(work / "iter_10.pth")],
                                                                        ["iter_60", str(work / "iter_60.pth")]]}))
        await wait_for(pilot, lambda: getattr(app.screen, "session", None) is not None, 120, "the models")
        screen = app.screen
        session = screen.session
        assert list(session.variants) == ["base", "iter_10", "iter_60"] and session.current == "iter_10"
        await wait_for(pilot, lambda: "answering: iter_10" in screen_text(app), 10, "the models line")
        assert "template: internlm2_chat (training config)" in screen_text(app)

        await pilot.press(*"Who are you?", "enter")
        await wait_for(pilot, lambda: not screen.busy and len(session.messages) == 2, 60, "the reply")
        reply = session.messages[-1]
        assert reply["variant"] == "iter_10" and reply["content"]
        views = screen.query(ReplyView)
        await wait_for(pilot, lambda: views.last().source == reply["content"], 5, "the streamed text shown")

        await pilot.press("ctrl+t")  # hot swap: the conversation stays
        assert session.current == "iter_60" and len(session.messages) == 2
        assert "Who are you?" in screen_text(app) and "answering: iter_60" in screen_text(app)
        await pilot.press(*"What is your name?", "enter")
        await wait_for(pilot, lambda: not screen.busy and len(session.messages) == 4, 60, "the second reply")
        assert session.messages[-1]["variant"] == "iter_60"
        assert session.messages[1]["variant"] == "iter_10"  # the first answer keeps who gave it

        await pilot.press("ctrl+b")  # compare: base, iter_10 and iter_60 are preselected
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(screen.query(Transcript)) == 3, 5, "three panes")
        await pilot.press(*"What is the capital of Germany?", "enter")
        await wait_for(pilot, lambda: not screen.busy and screen.comparisons, 60, "the comparison")
        (prompt, replies) = screen.comparisons[0]
        assert [name for name, _ in replies] == ["base", "iter_10", "iter_60"]
        panes = list(screen.query(Transcript))
        for pane, (name, r) in zip(panes, replies, strict=True):
            assert pane.title == name
            await wait_for(pilot, lambda p=pane, r=r: p.query(ReplyView).last().source == r.text, 5)
        conversation = session.conversation_id

        await pilot.press("ctrl+b")  # back to the conversation, which the comparison did not change
        await wait_for(pilot, lambda: len(screen.query(Transcript)) == 1, 5)
        assert len(session.messages) == 4 and "What is your name?" in screen_text(app)

        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: not screen.session.messages and "Who are you?" not in screen_text(app), 5)
        await pilot.press("ctrl+l")  # the saved conversations, newest first
        await pilot.pause(0.3)
        assert conversation in [oid for oid, _ in app.screen.options]
        app.screen.query_one("OptionList").highlighted = [oid for oid, _ in app.screen.options].index(conversation)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.session.conversation_id == conversation, 60, "the reopened conversation")
        assert [m["content"] for m in screen.session.messages][::2] == ["Who are you?", "What is your name?"]
        # It held a comparison: it comes back side by side, and ctrl+b shows the plain turns again.
        await wait_for(pilot, lambda: len(screen.query(Transcript)) == 3, 10, "the comparison's panes again")
        assert [prompt for prompt, _ in screen.comparisons] == ["What is the capital of Germany?"]
        for pane, (name, r) in zip(screen.query(Transcript), replies, strict=True):
            await wait_for(pilot, lambda p=pane, r=r: p.query(ReplyView) and p.query(ReplyView).last().source == r.text,
                           10, f"{name}'s saved reply in its pane")
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: "What is your name?" in screen_text(app), 5, "the history shown again")


async def test_eval_sweeps_a_run_and_shows_the_curve_verdict_and_replies(tiny_home):
    app = WorkbenchApp(Settings(), start_mode="eval")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        run = _tiny_run()
        await wait_for(pilot, lambda: screen.run_id == run.id, 10, "the run chosen")
        await pilot.press("i", *"last", "enter")  # only the last checkpoint (and the base): keeps the test short
        await pilot.press("v", *"name=Tutu org=Workbench Lab", "enter")
        await pilot.press("g")
        await wait_for(pilot, lambda: screen.report is not None, 900, "the sweep")
        text = screen_text(app)
        assert re.search(r"^ ?base +\d+% +\d+% +(-|\d+/\d+) +\d+%", text, re.M), text  # lost: "-" for the base
        assert re.search(r"^ ?iter_60", text, re.M) and "verdict:" in text
        assert [r.name for r in screen.rows] == ["base", "iter_60"]
        assert screen.report.verdict is not None

        await pilot.press("enter")  # the highlighted checkpoint's replies, expected answers beside them
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RepliesScreen", 5)
        text = screen_text(app)
        assert "expected:" in text and "reply:" in text and re.search(r"base: \d+ of 218 failed", text)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, 5)


async def test_runs_start_from_a_config_shows_the_inspection_then_stop_and_resume(
        wb_home, tiny_world, monkeypatch, tmp_path):
    from workbench.paths import configs_dir

    monkeypatch.setenv("WORKBENCH_MODEL", str(tiny_world))
    monkeypatch.chdir(tmp_path)  # the run's work dir defaults to a new folder under ./work_dirs/<config name>
    app = WorkbenchApp(Settings(poll_interval=0.3))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await pilot.press("n", *str(configs_dir() / "tiny_cpu_lora.py"))
        await wait_for(pilot, lambda: type(app.screen).__name__ == "StartRunModal", 10, "the start form")
        form = app.screen
        await wait_for(pilot, lambda: form.report is not None, 60, "the inspection")
        assert "max_iters  60" in screen_text(app)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.run is not None and str(screen.run.status) == "running", 60,
                       "the started run")
        first = screen.selected
        assert Path(screen.run.work_dir).parent == tmp_path / "work_dirs" / "tiny_cpu_lora"
        await wait_for(pilot, lambda: re.search(r"iter \d+/60", screen_text(app)), 120, "live metrics")
        await wait_for(pilot, lambda: any(c.iteration == 10 for c in screen.query_one("CheckpointsPanel").checkpoints),
                       180, "the first checkpoint")

        await pilot.press("s")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmModal", 5)
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.run is not None and str(screen.run.status) == "stopped", 60,
                       "the run stopped")

        await pilot.press("r")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmModal", 5, "resume's confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.selected != first and screen.run is not None, 60, "the resumed run")
        resumed = screen.run
        assert resumed.parent_id == first
        assert re.fullmatch(r"iter_\d+\.pth", Path(resumed.resume_from).name)  # the stopped run's last checkpoint
        await pilot.press("s")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmModal", 5)
        await pilot.press("y")
        await wait_for(pilot, lambda: str(screen.run.status) == "stopped", 60, "the resumed run stopped")
        assert not app.errors


async def test_demo_mode_sweeps_the_finished_run_then_offers_the_comparison_in_chat(tiny_home):
    run = _tiny_run()
    demo = {"run": run.id, "variables": {"name": "Tutu", "org": "Workbench Lab"}, "iters": "last"}
    app = WorkbenchApp(Settings(max_new_tokens=16), select_run=run.id, demo=demo)
    async with app.run_test(size=(80, 24)) as pilot:
        # The run has ended: the app moves on to Eval by itself and sweeps it.
        await wait_for(pilot, lambda: type(app.screen).__name__ == "EvalScreen", 30, "the Eval screen")
        screen = app.screen
        await wait_for(pilot, lambda: screen.report is not None, 900, "the sweep")
        await wait_for(pilot, lambda: app.demo_flow.comparison is not None, 5, "the comparison prepared")
        spec = app.demo_flow.comparison
        assert spec["compare"][0] == "base" and spec["compare"][-1] == "iter_60"
        await pilot.press("f2")
        chat = app.screen
        await wait_for(pilot, lambda: chat.session is not None and chat.variants == spec["compare"], 120,
                       "chat loaded in compare mode")
        await pilot.press(*"What is the capital of Germany?", "enter")
        await wait_for(pilot, lambda: not chat.busy and chat.comparisons, 60, "the side-by-side replies")
        assert [name for name, _ in chat.comparisons[0][1]] == spec["compare"]
