"""A long reply streams into segments, and what lies above the screen leaves the layout while it streams
(bench/bench_chatview.py: key-to-repaint p99 at 500 tokens/s); nothing is lost when the user scrolls back."""

from __future__ import annotations

import gc

from textual.app import App, ComposeResult

from workbench.tui.widgets.transcript import Frozen, ReplyChunk, ReplyDone, ReplyView, Transcript, split_point

from .helpers import wait_for


def test_a_segment_ends_at_a_blank_line_outside_a_code_fence():
    assert split_point("", "one\n\ntwo") == 5
    assert split_point("", "no blank line") is None
    # inside a fence opened earlier a blank line is code: the cut comes after the fence closes
    assert split_point("```python\nx = 1\n", "\ny = 2\n```\n\nafter") == len("\ny = 2\n```\n\n")
    assert split_point("```\n", "a\n\nb\n") is None


class ChatApp(App):
    def compose(self) -> ComposeResult:
        yield Transcript()


def _reply(n: int) -> list[str]:
    chunks = []
    for i in range(n):
        chunks.append(f"Paragraph {i} says **something** about `code` and facts.\n\n")
        if i % 5 == 4:
            chunks.append(f"```python\nprint({i})\n\nprint('blank line above is code')\n```\n\n")
        if i % 7 == 6:
            chunks.append("| a | b |\n|---|---|\n| 1 | 2 |\n\n")
    return chunks


async def test_a_long_reply_streams_in_segments_and_the_part_above_the_screen_is_frozen_until_scrolled():
    app = ChatApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(Transcript)
        transcript.add_user("Tell me everything.")
        reply_id = transcript.start_reply()
        assert gc.get_freeze_count() > 0  # full collections skip what lived before the stream
        chunks = _reply(60)
        for i in range(0, len(chunks), 4):
            transcript.post_message(ReplyChunk(reply_id, "".join(chunks[i:i + 4])))
            await pilot.pause()
        await wait_for(pilot, lambda: len(transcript.query(Frozen)) == 1, 10, "the top frozen")
        hidden = [w for w in transcript.children if not w.display]
        assert hidden and hidden[0].__class__.__name__ == "Turn"
        height = transcript.virtual_size.height
        transcript.post_message(ReplyDone(reply_id, "done"))
        await wait_for(pilot, lambda: not transcript.streaming, 10, "the end of the reply")
        assert gc.get_freeze_count() == 0  # handed back to the collector
        views = list(transcript.query(ReplyView))
        assert len(views) > 3  # segments
        assert "".join(v.source for v in views) == "".join(chunks)
        assert all(not v.source.count("```") % 2 for v in views)  # no code block is cut in two
        # scrolling up brings everything back, at the same height
        transcript.scroll_home()
        await wait_for(pilot, lambda: not transcript.query(Frozen), 5, "the thaw")
        assert all(w.display for w in transcript.children)
        await pilot.pause()
        assert abs(transcript.virtual_size.height - height) <= 2
