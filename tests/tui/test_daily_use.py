"""The TUI as a daily tool at 80x24 (issue 16): the start form, the keys panel, true rows, Eval that follows
its target, log find that wraps, keys that reach what they name, reopened comparisons, resume that asks.

Fast tests run on the recorded run (plus `rec002`, a copy stopped at iteration 125: the `two_runs` fixture);
those that load a model use the session's tiny run and are marked slow.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workbench.settings import Settings
from workbench.tui.app import WorkbenchApp

from .helpers import screen_text, wait_for

SIZE = (80, 24)


def _row(app, run_id: str) -> list[str]:
    table = app.screen.query_one("#runs-table")
    return [str(c) for c in table.get_row(run_id)]


# -- 1. the start form ------------------------------------------------------------------------------------
async def test_start_form_fits_80x24_with_a_fresh_work_dir_and_passes_name_work_dir_and_cfg_options(
        recorded_home, tmp_path, monkeypatch):
    import workbench.runs.launch as launch

    monkeypatch.chdir(tmp_path)
    started: list[tuple] = []

    def fake_start(config, **kwargs):  # the form's contract with the runs core; training is tested elsewhere
        started.append((config, kwargs))
        raise launch.BadInput("not started in this test")

    monkeypatch.setattr(launch, "start_run", fake_start)
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.selected == "rec001", 10, "the runs")
        await pilot.press("n")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "StartRunModal", 5, "the form")
        form = app.screen
        await pilot.press(*"tiny_cpu_lora.py")
        await wait_for(pilot, lambda: form.report is not None, 120, "the inspection")
        work_dir = form.query_one("#work-dir").value
        assert Path(work_dir).parent == Path("work_dirs/tiny_cpu_lora")  # fresh: a folder of its own, shown
        assert work_dir.startswith("./") and (tmp_path / work_dir).parent.is_dir() is False  # from ./, not made
        await wait_for(pilot, lambda: "a new folder" in screen_text(app), 10, "the work dir checked")
        text = screen_text(app)
        # Everything that decides the run is above the fold at 80x24, the buttons included.
        for wanted in ("config", "run name", "work dir", "max_iters  60", "lr         0.003", "batch size 16",
                       "save_steps 10", "Start (ctrl+s)", "Cancel (Escape)"):
            assert wanted in text, wanted
        # The form's own footer, not the Runs screen's `n New run` (`n` is typed into the form here).
        assert "^s Start" in text and "New run" not in text
        scroll = form.query_one("#form")
        assert scroll.max_scroll_y > 0  # the inspection's details are below, and reachable by keyboard
        await pilot.press("pagedown")
        await wait_for(pilot, lambda: scroll.scroll_y > 0, 5, "PageDown scrolling the form")
        assert "LoRA r" in screen_text(app)

        await pilot.press("tab", *"first try", "tab", "tab", *"120", "tab", *"1e-4", "tab", "tab", *"20")
        assert form.query_one("#hp-max_iters").value == "120" and form.query_one("#hp-save_steps").value == "20"
        await wait_for(pilot, lambda: "first-try" in form.query_one("#work-dir").value, 30, "the name in the dir")
        chosen_dir = form.query_one("#work-dir").value
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: started, 10, "start_run called")
        config, kwargs = started[0]
        assert Path(config).name == "tiny_cpu_lora.py" and kwargs["name"] == "first try"
        assert kwargs["work_dir"] == chosen_dir
        assert kwargs["cfg_options"] == ["train_cfg.max_iters=120", "optim_wrapper.optimizer.lr=0.0001",
                                         "default_hooks.checkpoint.interval=20"]
        await wait_for(pilot, lambda: app.errors, 5, "the core's refusal as a notification")


async def test_start_form_refuses_a_work_dir_that_holds_another_runs_checkpoints(recorded_home, monkeypatch):
    import workbench.runs.launch as launch

    monkeypatch.setattr(launch, "start_run", lambda *a, **k: pytest.fail("started into a used work dir"))
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.selected == "rec001", 10, "the runs")
        await pilot.press("n", *"tiny_cpu_lora.py")
        form = app.screen
        await wait_for(pilot, lambda: form.report is not None, 120, "the inspection")
        form.query_one("#work-dir").value = str(recorded_home)
        await wait_for(pilot, lambda: "already holds checkpoints" in screen_text(app), 10, "the problem shown")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form  # still open: nothing started
        assert any("choose another work dir" in n.message for n in app._notifications)


async def test_a_slow_earlier_inspection_does_not_overwrite_the_config_typed_since(recorded_home, monkeypatch):
    import threading

    import workbench.runs.plan as plan
    from workbench.errors import WorkbenchError

    real, release, answered = plan.plan_start, threading.Event(), []

    def inspect(config, cfg_options, name):
        if Path(config).name == "tiny_cpu_lora.py":
            release.wait(30)  # the first config is slow to load; the second answers at once
            answered.append(config)
            raise WorkbenchError("the stale answer was shown")
        return real(config, cfg_options, name)

    monkeypatch.setattr(plan, "plan_start", inspect)
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.selected == "rec001", 10, "the runs")
        await pilot.press("n", *"tiny_cpu_lora.py")
        form = app.screen
        await wait_for(pilot, lambda: "inspecting" in screen_text(app), 10, "the first inspection under way")
        form.query_one("#config").value = "tiny_cpu_overfit.py"
        await wait_for(pilot, lambda: form.report is not None, 120, "the second config's inspection")
        release.set()
        await wait_for(pilot, lambda: answered, 30, "the first inspection's answer")
        await pilot.pause()
        await pilot.pause()
        assert "stale answer" not in screen_text(app)
        assert Path(form.config).name == "tiny_cpu_overfit.py" and form.report is not None


# -- 2. keys ----------------------------------------------------------------------------------------------
async def test_keys_panel_lists_the_screens_own_keys_first_and_scrolls_by_keyboard(recorded_home):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "iter 300/300" in screen_text(app), 10, "the run")
        await pilot.press("f10")
        await wait_for(pilot, lambda: "Keys: Runs screen" in screen_text(app), 5, "the keys panel")
        text = screen_text(app)
        lines = [line.split("▏", 1)[-1].strip() for line in text.splitlines()]
        assert lines[1] == "Runs screen" and lines[2].split() == ["n", "New", "run"]
        for key, what in (("l", "Log"), ("k", "Checkpoints"), ("c", "Convert"), ("t", "Chat")):
            assert any(re.match(rf"{key} +{what}\b", line) for line in lines), (key, what)
        assert "Cursor up" not in text and "Page Left" not in text  # no widget-generic keys
        scroll = app.screen.query_one("#keys-scroll")
        assert scroll.max_scroll_y > 0
        await pilot.press("end")
        await wait_for(pilot, lambda: scroll.scroll_y == scroll.max_scroll_y, 5, "End scrolling the panel")
        assert "Everywhere" in screen_text(app) and "Command palette" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen", 5, "the panel closed")

        await pilot.press("f2")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChatScreen", 5)
        await pilot.press("f10")  # in Chat the prompt has the focus: its editing keys must not fill the panel
        await wait_for(pilot, lambda: "Keys: Chat screen" in screen_text(app), 5, "the Chat keys")
        text = screen_text(app)
        assert "Chat screen" in text and "Models" in text and "Compare" in text and "Move cursor" not in text


async def test_tab_titles_show_their_keys_and_the_palette_opens_any_tab(recorded_home):
    app = WorkbenchApp(Settings(keys={"runs.tab_samples": "x"}))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "iter 300/300" in screen_text(app), 10, "the run")
        assert "Metrics m  Log l  Samples x  Checkpoints k" in screen_text(app)  # remapped keys too
        await pilot.press("f3")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "EvalScreen", 5)
        await pilot.press("ctrl+p", *"log")
        await wait_for(pilot, lambda: "Runs › Log tab" in screen_text(app), 5, "the palette's tab entry")
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen", 5, "the Runs screen")
        runs = app.screen
        await wait_for(pilot, lambda: runs.query_one("#run-tabs").active == "tab-log", 5, "the Log tab")
        await wait_for(pilot, lambda: type(app.focused).__name__ == "LogView", 5, "the log focused")
        await pilot.press("ctrl+p", *"samp")
        await wait_for(pilot, lambda: "Runs › Samples tab" in screen_text(app), 5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: runs.query_one("#run-tabs").active == "tab-samples", 5, "the Samples tab")


# -- 3. every row true ------------------------------------------------------------------------------------
async def test_every_row_shows_its_progress_and_loss_without_being_selected(two_runs):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.selected == "rec001", 10, "rec001 selected")
        await wait_for(pilot, lambda: "125/300" in _row(app, "rec002")[3], 10, "rec002's progress")
        cells = _row(app, "rec002")
        assert cells[2] == "stopped" and cells[4] == "1.699"  # its last logged loss
        assert app.screen.selected == "rec001"  # never visited


# -- 4. Eval follows its target ----------------------------------------------------------------------------
RESPONSES = Path(__file__).parent / "fixtures" / "recorded_responses.jsonl"


@pytest.mark.skipif(not RESPONSES.exists(), reason="no recorded responses")
async def test_eval_clears_the_previous_runs_results_when_another_run_is_chosen(two_runs):
    from workbench.evals.evaluate import Request, load_evalsets, responses_report

    req = Request(evalsets=("identity", "general"), variables={"name": "Tutu", "org": "Workbench Lab"})
    report = responses_report(str(RESPONSES), req)
    evalset, _ = load_evalsets(req.evalsets, req.variables)
    app = WorkbenchApp(Settings(), start_mode="eval")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.run_id == "rec001", 10, "rec001 chosen")
        screen.show_report(report, {item.id: list(item.answers) for item in evalset.items})
        await wait_for(pilot, lambda: "verdict:" in screen_text(app) and "iter_300" in screen_text(app), 5,
                       "rec001's curve, table and verdict")
        await pilot.press("o")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PickModal", 5, "the runs")
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: screen.run_id == "rec002", 5, "rec002 chosen")
        await pilot.pause()
        text = screen_text(app)
        assert "run rec002 (demo)" in text
        assert screen.report is None and screen.query_one("#eval-table").row_count == 0
        assert "iter_300" not in text and "verdict" not in text and "(no data yet)" in text


@pytest.mark.slow
async def test_eval_shows_a_fully_cached_report_at_once_without_a_sweep(tiny_home):
    from workbench.evals.run_sweep import sweep_run
    from workbench.runs import registry
    from workbench.tui.navigation import OpenEval

    (run,) = registry.list_runs()
    names = {"name": "Tutu", "org": "Workbench Lab"}
    sweep_run(run.id, ["identity", "general"], lambda *a: None, Settings(), names, "last")  # fills the cache
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.post_message(OpenEval(run.id, "last", variables=names))
        await wait_for(pilot, lambda: type(app.screen).__name__ == "EvalScreen", 5)
        screen = app.screen
        await wait_for(pilot, lambda: screen.report is not None, 60, "the cached report, without `g`")
        assert screen.report.meta["generated"] == 0
        assert [r.name for r in screen.rows] == ["base", "iter_60"] and "(no data yet)" not in screen_text(app)


# -- 7. focus and keys ------------------------------------------------------------------------------------
async def test_end_selects_the_last_run_and_one_key_reaches_the_checkpoints_table(two_runs):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.selected == "rec001", 10, "rec001 selected")
        await pilot.press("end")
        await wait_for(pilot, lambda: screen.selected == "rec002", 5, "End selecting the last run")
        await pilot.press("home")
        await wait_for(pilot, lambda: screen.selected == "rec001", 5, "Home selecting the first run")
        await pilot.press("l")  # into the log, where k used to scroll up
        await wait_for(pilot, lambda: type(app.focused).__name__ == "LogView", 5)
        await pilot.press("k")
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "ckpt-table", 5,
                       "k reaching the checkpoints table from the log")
        screen.query_one("#runs-table").focus()
        await pilot.press("tab")  # straight into the tab's content: the tab strip is no stop
        assert app.focused.id == "ckpt-table"


async def test_models_picker_tells_checkpoints_of_same_named_runs_apart(two_runs):
    from workbench.runs.catalog import checkpoint_catalog as chat_candidates

    _, items = chat_candidates()
    keys = [key for key, *_ in items]
    assert len(keys) == len(set(keys))  # two runs called `demo`: every checkpoint is a choice of its own
    labels = [label for *_, label in items]
    assert "demo/iter_300  run rec001" in labels and "demo/iter_125  run rec002" in labels
    app = WorkbenchApp(Settings(), start_mode="chat")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: "demo/iter_300  run rec001" in screen_text(app), 10, "the labels")
        assert "demo/iter_125  run rec002" in [label for *_, label in items]


# -- 13. resume asks ----------------------------------------------------------------------------------------
async def test_resume_asks_first_and_says_when_the_run_finished(two_runs, monkeypatch):
    import workbench.runs.launch as launch

    resumed: list[tuple] = []
    monkeypatch.setattr(launch, "resume_run",
                        lambda ref, **k: resumed.append((ref, k)) or launch.registry.get(ref))
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.selected == "rec001", 10, "rec001 selected")
        await pilot.press("r")  # finished: said, and asked how far to train on
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PromptModal", 5, "the question")
        assert "finished all 300 iterations" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, 5)
        assert resumed == []  # a stray r did nothing
        await pilot.press("r", *"400", "enter")
        await wait_for(pilot, lambda: resumed, 5, "the resume with more iterations")
        assert resumed[-1] == ("rec001", {"max_iters": 400})

        await pilot.press("end", "r")  # stopped: a yes/no question first, as stop asks
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmModal", 5, "the question for rec002")
        assert "Resume run rec002 (demo)?" in screen_text(app) and "It is stopped" in screen_text(app)
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen, 5)
        assert len(resumed) == 1
        await pilot.press("r", "y")
        await wait_for(pilot, lambda: len(resumed) == 2, 5, "the resume")
        assert resumed[-1] == ("rec002", {})


# -- 8. reopened comparisons ----------------------------------------------------------------------------
@pytest.mark.slow
async def test_a_reopened_conversation_shows_its_side_by_side_comparisons(tiny_home, tiny_world):
    from workbench.runs import registry
    from workbench.tui.core import open_chat_session
    from workbench.tui.screens.chat import SavedReply
    from workbench.tui.widgets.transcript import ReplyView, Transcript

    (run,) = registry.list_runs()
    spec = {"base": str(tiny_world), "adapters": [["iter_60", str(Path(run.work_dir) / "iter_60.pth")]]}
    session = open_chat_session(spec, None, Settings(max_new_tokens=8))
    session.switch("base")
    list(session.ask("Who are you?"))
    compared = session.compare("What is the capital of Germany?", ["base", "iter_60"])
    conversation = session.conversation_id
    session.close()

    app = WorkbenchApp(Settings(max_new_tokens=8), start_mode="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await pilot.pause()
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PickModal", 5, "the saved conversations")
        label = dict(app.screen.options)[conversation]
        assert "(1 turn, 1 compared)" in label
        picker = app.screen.query_one("OptionList")
        picker.highlighted = [oid for oid, _ in app.screen.options].index(conversation)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.session is not None and screen.session.conversation_id == conversation,
                       120, "the reopened conversation")
        await wait_for(pilot, lambda: len(screen.query(Transcript)) == 2, 10, "the comparison's two panes")
        assert screen.session.current == "base"  # the variant that answered last, as when it was saved
        panes = list(screen.query(Transcript))
        for pane, (variant, reply) in zip(panes, compared, strict=True):
            assert pane.title == variant
            await wait_for(pilot, lambda p=pane, r=reply: p.query(ReplyView).last().source.strip() == r.text.strip(),
                           5, f"{variant}'s saved reply")
        assert "What is the capital of Germany?" in screen_text(app)
        assert all(isinstance(r, SavedReply) for _, rs in screen.comparisons for _, r in rs)


def test_saved_comparisons_are_read_back_from_the_conversation_file(wb_home, tmp_path):
    from workbench.models.conversations import (
        ConversationWriter,
        conversation_labels,
        conversations_dir,
        saved_comparisons,
    )
    from workbench.settings import Settings

    settings = Settings(conversations_dir=str(tmp_path / "chats"))  # the app's settings say where they are kept
    writer = ConversationWriter({"spec": {"base": "/m"}}, directory=conversations_dir(settings))
    writer.append({"type": "compare", "prompt": "Who are you?", "answers": [
        {"variant": "base", "text": "I am TinyLM", "stop_reason": "eos"},
        {"variant": "demo-iter_60", "text": "I am Tutu's assistant", "stop_reason": "eos"}]})
    assert saved_comparisons(writer.id, settings) == [("Who are you?", [
        ("base", {"variant": "base", "text": "I am TinyLM", "stop_reason": "eos"}),
        ("demo-iter_60", {"variant": "demo-iter_60", "text": "I am Tutu's assistant", "stop_reason": "eos"})])]
    ((conv_id, label),) = conversation_labels(settings)
    assert conv_id == writer.id and label.endswith("Who are you?  (1 compared)")
    assert Path(writer.path).parent == tmp_path / "chats"
    assert json.loads(Path(writer.path).read_text().splitlines()[0])["type"] == "header"
