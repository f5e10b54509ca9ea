"""The TUI's own widgets: the bounded log view over a file, the token batcher, the transcript, the chart."""

from __future__ import annotations

import os
import threading

from textual.app import App, ComposeResult

from workbench.runs.tail import FileTail, LineIndex, read_line, search
from workbench.tui.widgets.chart import Series, plot
from workbench.tui.widgets.logview import LogPanel, LogView
from workbench.tui.widgets.transcript import ReplyChunk, ReplyDone, ReplyView, TokenBatcher, Transcript

from .helpers import wait_for


# -- the line index -----------------------------------------------------------------------------------------
def _index_of(path) -> tuple[int, LineIndex]:
    index = LineIndex()
    with FileTail(path) as tail:
        while breaks := tail.read_breaks(64):
            index.extend(breaks)
    return os.open(path, os.O_RDONLY), index


def test_a_tail_leaves_a_partial_last_line_for_later(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"one\ntwo\nthr")
    tail = FileTail(path)
    assert list(tail.read_breaks()) == [3, 7] and tail.offset == 8
    with open(path, "ab") as f:
        f.write(b"ee\n")
    assert list(tail.read_breaks()) == [13] and tail.offset == 14
    tail.close()


def test_a_tail_cuts_a_line_longer_than_one_read_rather_than_stalling(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"x" * 100 + b"\nend\n")
    with FileTail(path) as tail:
        assert list(tail.read_breaks(64)) == [63] and tail.offset == 64
        assert list(tail.read_breaks(64)) == [100, 104]


def test_a_tail_starts_over_when_the_file_is_replaced_or_truncated(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"one\ntwo\n")
    with FileTail(path) as tail:
        assert tail.read() == b"one\ntwo\n" and not tail.restarted
        replacement = tmp_path / "b.log"
        replacement.write_bytes(b"new\n")
        os.replace(replacement, path)  # a new inode, as a log rotation leaves it
        assert tail.read() == b"new\n" and tail.restarted
        path.write_bytes(b"")  # truncated in place
        with open(path, "ab") as f:
            f.write(b"z\n")
        assert tail.read() == b"z\n" and tail.restarted
        assert tail.read() == b"" and not tail.restarted


def test_index_reads_lines_back_by_offset(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    fd, index = _index_of(path)
    assert len(index) == 100
    assert read_line(fd, index.span(0)) == "line 0"
    assert read_line(fd, index.span(57)) == "line 57"
    assert index.span(100) is None
    os.close(fd)


def test_index_is_bounded_and_keeps_absolute_line_numbers():
    index = LineIndex(max_lines=100)
    from array import array

    for start in range(0, 1000, 10):  # 1000 lines of 10 bytes, fed 10 at a time
        index.extend(array("q", [(start + k) * 10 + 9 for k in range(10)]))
    assert len(index) == 1000
    assert len(index.ends) <= 125  # never more than a quarter over the bound
    assert index.span(0) is None  # gone
    assert index.span(999) == (9990, 9999)  # line numbers stay absolute
    assert index.span(index.first) == (index.first * 10, index.first * 10 + 9)


def test_search_finds_the_next_and_previous_match(tmp_path):
    path = tmp_path / "a.log"
    lines = [f"Iter(train) [{i}/50] loss: 1.0" for i in range(50)]
    lines[12] = "Traceback (most recent call last):"
    lines[40] = "RuntimeError: CUDA out of memory"
    path.write_text("\n".join(lines) + "\n")
    fd, index = _index_of(path)
    assert search(fd, index, "traceback", 0) == 12  # case-insensitive
    assert search(fd, index, "Error|Traceback", 13, regex=True) == 40
    assert search(fd, index, "traceback", 40, forward=False) == 12
    assert search(fd, index, "no such text", 0) is None
    os.close(fd)


# -- the log view in an app -----------------------------------------------------------------------------------
class LogApp(App):
    def __init__(self, path, max_lines=2_000_000):
        super().__init__()
        self.path, self.max_lines = path, max_lines

    def compose(self) -> ComposeResult:
        yield LogPanel(max_lines=self.max_lines)

    def on_mount(self) -> None:
        self.query_one(LogPanel).follow(self.path)
        self.query_one(LogView).focus()


def _visible(view: LogView) -> list[str]:
    return [view.render_line(y).text.rstrip() for y in range(view.scrollable_content_region.height)]


async def test_log_view_follows_a_growing_file_to_its_end(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("".join(f"line {i}\n" for i in range(200)))
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count == 200, 10, "the first 200 lines")
        await wait_for(pilot, lambda: "line 199" in _visible(view), 5, "the view at the end")
        with open(path, "a") as f:
            f.write("".join(f"line {i}\n" for i in range(200, 300)))
        await wait_for(pilot, lambda: view.line_count == 300, 10, "the appended lines")
        await wait_for(pilot, lambda: "line 299" in _visible(view), 5, "the view following the end")
        # Scrolling up stops following; new lines then leave the view where it is.
        await pilot.press("home")
        assert not view.following and _visible(view)[0] == "line 0"
        with open(path, "a") as f:
            f.write("line 300\n")
        await wait_for(pilot, lambda: view.line_count == 301, 10)
        assert _visible(view)[0] == "line 0"
        await pilot.press("end")
        await wait_for(pilot, lambda: "line 300" in _visible(view), 5, "End following again")


async def test_log_view_starts_over_when_the_file_is_truncated(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("".join(f"old {i}\n" for i in range(50)))
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count == 50, 10)
        path.write_text("new 0\nnew 1\n")
        await wait_for(pilot, lambda: view.line_count == 2, 10, "the rewritten file")
        assert "new 1" in _visible(view)


async def test_log_view_keeps_only_max_lines(tmp_path):
    path = tmp_path / "big.log"
    path.write_text("".join(f"line {i}\n" for i in range(5000)))
    app = LogApp(path, max_lines=1000)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count == 5000, 10)
        assert len(view.index.ends) <= 1250
        await wait_for(pilot, lambda: "line 4999" in _visible(view), 5)
        await pilot.press("home")
        assert _visible(view)[0] == f"line {view.index.first}"


async def test_log_find_moves_to_the_match_and_e_jumps_to_the_next_error(tmp_path):
    path = tmp_path / "train.log"
    lines = [f"11/23 10:37:{i % 60:02d} - mmengine - INFO - Iter(train) [{i}/400]  loss: 1.0" for i in range(400)]
    lines[123] = "11/23 10:38:00 - mmengine - INFO - Saving checkpoint at 123 iterations"
    lines[300] = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    path.write_text("\n".join(lines) + "\n")
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count == 400, 10)
        await pilot.press("home", "slash", *"saving checkpoint", "enter")
        await wait_for(pilot, lambda: view.pointer == 123, 10, "the find result")
        assert any("Saving checkpoint at 123" in line for line in _visible(view))
        await pilot.press("e")
        await wait_for(pilot, lambda: view.pointer == 300, 10, "the next error")
        # The error line is drawn in the error style; ordinary lines are not.
        error_style = view.get_component_rich_style("logview--error", partial=True)
        y = 300 - view.index.first - view.scroll_offset.y
        assert any(seg.style and seg.style.color == error_style.color for seg in view.render_line(y))


async def test_compact_mode_shortens_the_mmengine_prefix(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("2026/11/23 10:37:44 - mmengine - INFO - Iter(train) [10/20]  loss: 6.0306\n"
                    "2026/11/23 10:37:45 - mmengine - WARNING - something odd\n")
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count == 2, 10)
        await wait_for(pilot, lambda: "10:37:44 Iter(train) [10/20]  loss: 6.0306" in _visible(view), 5)
        assert "10:37:45 WARNING something odd" in _visible(view)
        await pilot.press("c")
        assert _visible(view)[0].startswith("2026/11/23 10:37:44 - mmengine - INFO - Iter(train)")


# -- streaming replies ------------------------------------------------------------------------------------------
def test_token_batcher_posts_batches_not_tokens():
    posted: list[str] = []
    batcher = TokenBatcher(posted.append, interval=3600)  # nothing is due before the end
    for i in range(1000):
        batcher.add(f"t{i} ")
    assert posted == []
    batcher.flush()
    assert posted == ["".join(f"t{i} " for i in range(1000))] and batcher.tokens == 1000


class ChatApp(App):
    def compose(self) -> ComposeResult:
        yield Transcript()


async def test_transcript_streams_a_reply_from_a_thread_as_markdown():
    app = ChatApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(Transcript)
        transcript.add_user("Explain.")
        reply_id = transcript.start_reply()
        tokens = ["**Berlin**", " is", " the", " capital", ".", "\n\n", "- one", "\n", "- two", "\n"]
        posts: list[str] = []

        def produce() -> None:  # the generating thread: tokens in, batched messages out
            def post(text: str) -> None:
                posts.append(text)
                transcript.post_message(ReplyChunk(reply_id, text))

            batcher = TokenBatcher(post, interval=0.0)
            for tok in tokens:
                batcher.add(tok)
            batcher.flush()
            transcript.post_message(ReplyDone(reply_id, "10 tokens"))

        thread = threading.Thread(target=produce)
        thread.start()
        thread.join()
        await wait_for(pilot, lambda: not transcript.streaming, 10, "the end of the reply")
        view = transcript.query_one(ReplyView)
        assert view.source == "".join(tokens)
        assert "".join(posts) == "".join(tokens)


# -- the chart ------------------------------------------------------------------------------------------------------
def test_plot_draws_a_falling_line_from_top_left_to_bottom_right():
    rows = plot([Series("loss", [10.0, 7.5, 5.0, 2.5, 0.0])], width=10, height=4, lo=0.0, hi=10.0)
    assert len(rows) == 4 and all(len(r) == 10 for r in rows)
    assert rows[0][0][0] != " " and rows[-1][-1][0] != " "  # first point top-left, last bottom-right
    assert rows[-1][0][0] == " " and rows[0][-1][0] == " "
    assert {k for row in rows for _, k in row} == {-1, 0}


def test_plot_leaves_gaps_for_missing_values_and_colours_each_series():
    nan = float("nan")
    rows = plot([Series("a", [1.0, nan, 1.0], xs=[0, 1, 2]), Series("b", [0.0, 0.0, 0.0], xs=[0, 1, 2])],
                width=3, height=2, lo=0.0, hi=1.0)
    assert rows[0][1][0] == " "  # no line drawn across the missing point
    assert rows[0][0][1] == 0 and rows[-1][1][1] == 1


async def test_log_find_wraps_around_from_the_end_and_e_says_when_there_are_no_errors(tmp_path):
    path = tmp_path / "train.log"
    lines = [f"11/23 10:37:{i % 60:02d} - mmengine - INFO - Iter(train) [{i}/400]  loss: 1.0" for i in range(400)]
    lines[123] = "11/23 10:38:00 - mmengine - INFO - Saving checkpoint at 123 iterations"
    path.write_text("\n".join(lines) + "\n")
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count == 400 and "Iter(train) [399/400]" in _visible(view)[-1], 10,
                       "the view following the end")
        await pilot.press("slash", *"saving checkpoint", "enter")  # forward from the tail: only by wrapping
        await wait_for(pilot, lambda: view.pointer == 123, 10, "the match found by wrapping")
        assert any("wrapped" in n.message for n in app._notifications)
        await pilot.press("e")
        await wait_for(pilot, lambda: any(n.message == "no errors in this log" for n in app._notifications), 10,
                       "a sentence, not the pattern")
        assert not any("Error" in n.message for n in app._notifications)
        assert "find: errors" in app.query_one("#log-status").render().plain
