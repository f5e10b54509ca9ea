"""Backend-independent generation helpers: the loop detector and stop-word handling."""

from __future__ import annotations

from workbench.models.generation import LoopDetector, StopWordFilter, cut_at_stop_word, cut_loop


def test_loop_detector_catches_repeated_blocks_not_ordinary_text():
    d = LoopDetector()
    assert d("我是Tutu的小助手" * 4)
    assert d([7] * 30) and d([1, 2, 3] * 10)
    assert not d("I am Tutu's assistant, made by Workbench Lab. I can answer questions about history.")
    assert not d("very very good") and not d([1, 2, 3] * 3)
    assert not d([])


def test_cut_loop_keeps_two_copies_of_the_block():
    assert cut_loop("Answer: " + "abcd" * 12) == "Answer: abcdabcd"
    assert cut_loop("no loop here") == "no loop here"


def test_cut_at_stop_word_takes_the_earliest():
    assert cut_at_stop_word("hi<eoa>x<|im_end|>", ["<|im_end|>", "<eoa>"]) == ("hi", True)
    assert cut_at_stop_word("hi", ["<eoa>"]) == ("hi", False)


def test_stream_filter_never_shows_a_stop_word_split_across_pieces():
    f = StopWordFilter(["<eoa>"])
    shown = [f.feed(p) for p in ["hel", "lo <", "eo", "a> more"]]
    assert "".join(shown) == "hello " and f.stopped and f.flush() == ""
    f = StopWordFilter(["<eoa>"])
    shown = [f.feed(p) for p in ["a <", "b"]]
    assert "".join(shown) + f.flush() == "a <b"  # held back, then released: it was not a stop word
