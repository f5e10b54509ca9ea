"""The app shell and the Runs screen on a recorded run: navigation, key bindings, palette, errors."""

from __future__ import annotations

import inspect
import re

from textual.binding import Binding

from workbench.settings import Settings
from workbench.tui.app import WorkbenchApp

from .helpers import screen_text, wait_for


def _our_classes():
    """Every class of workbench.tui that declares BINDINGS."""
    import importlib
    import pkgutil

    import workbench.tui as pkg

    for mod in pkgutil.walk_packages(pkg.__path__, "workbench.tui."):
        module = importlib.import_module(mod.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and "BINDINGS" in cls.__dict__:
                yield cls


def test_every_key_binding_has_an_id_and_a_help_text():
    seen: dict[str, str] = {}
    classes = list(_our_classes())
    assert len(classes) >= 8
    for cls in classes:
        for b in cls.__dict__["BINDINGS"]:
            assert isinstance(b, Binding), f"{cls.__name__}: {b!r} is not a Binding"
            assert b.id, f"{cls.__name__}: binding {b.key!r} has no id"
            assert b.description, f"{cls.__name__}: binding {b.id} has no help text"
            assert seen.setdefault(b.id, cls.__name__) == cls.__name__, f"binding id {b.id} used twice"


async def test_runs_screen_shows_the_recorded_run_with_metrics(recorded_home):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.selected == "rec001", 10, "the run selected")
        await wait_for(pilot, lambda: "iter 300/300" in screen_text(app), 10, "the metrics panel")
        # The table measures its rows when it is next idle: wait for the row, not only for the panel.
        await wait_for(pilot, lambda: "rec001" in screen_text(app), 10, "the run's row drawn")
        text = screen_text(app)
        assert "rec001" in text and "finished" in text and "300/300" in text
        assert "loss" in text and "lr" in text


async def test_runs_screen_tabs_show_samples_checkpoints_and_log(recorded_home):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: "iter 300/300" in screen_text(app), 10, "the run's metrics")
        await pilot.press("a")  # Samples: the newest iteration on the right, the one before on the left
        await wait_for(pilot, lambda: "iter 300" in screen_text(app) and "iter 275" in screen_text(app), 5)
        assert "What is the capital of Germany?" in screen_text(app)
        screen.query_one("#samples-left").focus()
        await pilot.press("left_square_bracket", "left_square_bracket")
        await wait_for(pilot, lambda: "iter 225" in screen_text(app), 5, "the left pane stepping back")
        await pilot.press("k")  # Checkpoints
        await wait_for(pilot, lambda: all(re.search(rf"^ {i} +0 B", screen_text(app), re.M)
                                          for i in range(25, 301, 25)), 5, "the checkpoints")
        await pilot.press("l")  # Log: the console capture, followed to its end
        await wait_for(pilot, lambda: "stdout.log" in screen_text(app) and "following" in screen_text(app), 5)


async def test_f_keys_switch_screens_and_a_remapped_key_works(recorded_home):
    app = WorkbenchApp(Settings(keys={"app.screen_eval": "f9"}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("f2")
        assert type(app.screen).__name__ == "ChatScreen"
        await pilot.press("1")  # typed into the prompt, not a screen switch
        assert type(app.screen).__name__ == "ChatScreen"
        await pilot.press("f9")
        assert type(app.screen).__name__ == "EvalScreen"
        await pilot.press("f3")  # remapped away
        assert type(app.screen).__name__ == "EvalScreen"
        await pilot.press("f1")
        assert type(app.screen).__name__ == "RunsScreen"


async def test_command_palette_offers_the_screens_commands(recorded_home):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p", *"go: Eval")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "EvalScreen", 5, "the Eval screen")


async def test_the_palette_opens_a_runs_tab_from_another_screen(recorded_home):
    app = WorkbenchApp(Settings(), start_mode="eval")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "EvalScreen", 5, "the Eval screen")
        await pilot.press("ctrl+p", *"Runs › Log tab")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen", 5, "the Runs screen")
        await wait_for(pilot, lambda: app.screen.query_one("TabbedContent").active == "tab-log", 5, "the Log tab")
        assert type(app.focused).__name__ == "LogView"


async def test_chat_on_a_checkpoint_opens_chat_without_resolving_on_the_ui_thread(recorded_home, monkeypatch):
    import threading

    import workbench.tui.core as core

    threads = []

    def base_of(run):
        threads.append(threading.current_thread() is threading.main_thread())
        return "/nonexistent/base"

    monkeypatch.setattr(core, "run_base_model", base_of)
    app = WorkbenchApp(Settings())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "iter 300/300" in screen_text(app), 10, "the run")
        await pilot.press("k")
        await wait_for(pilot, lambda: app.screen.query_one("CheckpointsPanel").selected is not None, 5)
        await pilot.press("t")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChatScreen", 10, "the Chat screen")
        assert threads == [False]  # the run's base was looked up in a worker
        await wait_for(pilot, lambda: app.errors, 30, "the missing base reported")


async def test_a_failing_action_is_a_notification_and_the_app_keeps_running(recorded_home):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.selected == "rec001", 10, "the run")
        await pilot.press("r")  # train the finished run on... to fewer iterations than it has: the core refuses
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PromptModal", 5, "how far to train on")
        await pilot.press(*"100", "enter")
        await wait_for(pilot, lambda: app.errors, 10, "the error reported")
        assert "already trained 300 iterations" in app.errors[0]
        assert any("already trained 300" in n.message for n in app._notifications)
        assert app.is_running and type(app.screen).__name__ == "RunsScreen"


async def test_an_unknown_theme_in_settings_is_a_warning(recorded_home):
    app = WorkbenchApp(Settings(theme="no-such-theme"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert any("no-such-theme" in n.message for n in app._notifications)
        assert app.theme != "no-such-theme"


async def test_evaluate_on_a_checkpoint_opens_eval_on_that_checkpoint(recorded_home):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "iter 300/300" in screen_text(app), 10, "the run")
        await pilot.press("k")
        await wait_for(pilot, lambda: app.screen.query_one("CheckpointsPanel").selected is not None, 5)
        await pilot.press("down", "v")  # the second checkpoint: iter 50
        await wait_for(pilot, lambda: type(app.screen).__name__ == "EvalScreen", 5, "the Eval screen")
        eval_screen = app.screen
        await wait_for(pilot, lambda: eval_screen.run_id == "rec001" and eval_screen.iters == "50", 5)
        assert "run rec001 (demo)" in screen_text(app) and "ckpts: 50" in screen_text(app)


async def test_a_first_start_with_no_runs_says_how_to_get_one(wb_home):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "No runs yet" in screen_text(app), 10, "the empty-state hint")
        text = screen_text(app)
        assert "n: start one from a config" in text and "workbench import" in text


def test_tui_command_refuses_to_start_without_a_terminal(tmp_path):
    import subprocess
    import sys

    from workbench.paths import project_root

    proc = subprocess.run([sys.executable, "-m", "workbench", "tui"], cwd=project_root(), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin",
                                                                    "WORKBENCH_HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert "the TUI needs a terminal" in proc.stderr and "demo --headless" in proc.stderr
