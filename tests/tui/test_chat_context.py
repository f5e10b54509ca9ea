"""The Chat screen's context (issue 16, item 9) and the Chat side of item 10, on a session without a model
(`tests/models/fake_backend.py`): what each prompt is sent with is shown above the prompt, one key clears it, and a
marker in the transcript shows where."""

from __future__ import annotations

import os

from models.fake_backend import fake_session  # tests/models (pytest puts tests/ on the path)

from workbench.settings import Settings
from workbench.tui.app import WorkbenchApp

from .helpers import screen_text, wait_for

SIZE = (80, 24)


async def _chat_with_fake(pilot, tmp_path, **kwargs):
    from workbench.tui.screens.chat import SessionReady

    app = pilot.app
    await wait_for(pilot, lambda: type(app.screen).__name__ == "ChatScreen", 5, "the Chat screen")
    screen = app.screen
    session = fake_session(tmp_path / "chats", **kwargs)
    screen.post_message(SessionReady(session, {"base": session.spec.base}))
    await wait_for(pilot, lambda: screen.session is session, 5, "the session")
    return screen, session


async def _ask(pilot, screen, text: str) -> None:
    await pilot.press(*text, "enter")
    await wait_for(pilot, lambda: not screen.busy and f"reply to {text}" in screen_text(pilot.app), 10,
                   f"the reply to {text!r}")


async def test_the_context_is_shown_above_the_prompt_and_one_key_clears_it(wb_home, tmp_path):
    app = WorkbenchApp(Settings(), start_mode="chat")
    async with app.run_test(size=SIZE) as pilot:
        screen, session = await _chat_with_fake(pilot, tmp_path)
        backend = session.variants["base"].backend
        assert "context: empty" in screen_text(app)
        await _ask(pilot, screen, "capital of India?")
        await _ask(pilot, screen, "who are you?")
        await wait_for(pilot, lambda: "context: 2 turns, 16 tokens · ^r clears it" in screen_text(app), 5,
                       "the context line")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: "context cleared: the turns below" in screen_text(app), 5, "the marker")
        assert "context: empty" in screen_text(app)
        await _ask(pilot, screen, "who are you?")
        assert backend.sent[-1] == [{"role": "user", "content": "who are you?"}]  # sent alone
        assert "context: 1 turn," in screen_text(app)
        # the palette offers it too
        await pilot.press("ctrl+p", *"clear the context")
        await wait_for(pilot, lambda: "Clear the context" in screen_text(app), 5, "the palette entry")


async def test_a_reopened_conversation_shows_where_its_context_was_cleared(wb_home, tmp_path):
    from workbench.models import conversations as convs

    first = fake_session(tmp_path / "chats")
    list(first.ask("capital of India?"))
    first.clear_context()
    list(first.ask("who are you?"))
    conv = convs.find(first.conversation_id, tmp_path / "chats")
    app = WorkbenchApp(Settings(), start_mode="chat")
    async with app.run_test(size=SIZE) as pilot:
        screen, session = await _chat_with_fake(pilot, tmp_path, conversation=conv)
        await wait_for(pilot, lambda: "context cleared" in screen_text(app), 5, "the marker")
        text = screen_text(app)
        assert text.index("capital of India?") < text.index("context cleared") < text.index("reply to who are you?")
        assert "context: 1 turn, 8 tokens" in text


async def test_the_keys_panel_lists_the_clear_context_key(wb_home):
    app = WorkbenchApp(Settings(), start_mode="chat")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChatScreen", 5)
        await pilot.press("f10")
        await wait_for(pilot, lambda: "Keys: Chat screen" in screen_text(app), 5, "the Chat keys")
        assert any(line.split("▏", 1)[-1].split()[:3] == ["^r", "Clear", "context"]
                   for line in screen_text(app).splitlines())


async def test_the_base_has_one_label_and_a_template_picked_here_reads_chosen(wb_home, tmp_path):
    world = tmp_path / "tiny-world"
    (world / "56383dac736000f7").mkdir(parents=True)
    os.symlink("56383dac736000f7", world / "current")
    app = WorkbenchApp(Settings(), start_mode="chat")
    async with app.run_test(size=SIZE) as pilot:
        screen, session = await _chat_with_fake(pilot, tmp_path, base=str(world / "current"))
        await wait_for(pilot, lambda: "fake: tiny-world@56383dac  answering: base" in screen_text(app), 5,
                       "the models line")
        assert "current" not in screen_text(app).split("\n")[1]
        screen._template_picked("default")
        await wait_for(pilot, lambda: "template: default (chosen)" in screen_text(app), 10, "the chosen template")
        assert "(flag)" not in screen_text(app)


async def test_a_constant_lr_is_charted_on_an_axis_around_its_value():
    """Item 10a (the chart): a flat series was drawn on a ±0.5 axis (0.50┤ … -0.50┤ for an lr of 3e-03)."""
    from textual.app import App, ComposeResult

    from workbench.tui.widgets.chart import Chart, Series, value_range

    assert value_range([Series("lr", [3e-3] * 5)]) == (0.0, 6e-3)
    assert value_range([Series("loss", [2.0, 2.0])]) == (0.0, 4.0)
    assert value_range([Series("x", [1e-5, 2e-5])]) == (1e-5, 2e-5)  # a real range is kept

    class ChartApp(App):
        def compose(self) -> ComposeResult:
            yield Chart("lr", id="chart")

    app = ChartApp()
    async with app.run_test(size=(40, 8)) as pilot:
        chart = app.query_one(Chart)
        chart.set_series([Series("lr", [3e-3] * 20, xs=list(range(11, 31)))])
        await pilot.pause()
        rows = screen_text(app).splitlines()
        assert rows[1].startswith(" 6e-03┤") and rows[-1].startswith("     0┤")
        assert "0.50" not in screen_text(app)
        middle = [i for i, row in enumerate(rows) if "⠉" in row or "⠤" in row or "⠒" in row or "⣀" in row]
        assert middle and 1 < middle[0] < len(rows) - 1  # the line is drawn inside the axis, not on an edge
