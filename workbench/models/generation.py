"""Backend-independent generation helpers: the repetition-loop detector and stop-word handling.

Kept free of torch so the lmdeploy client and the scorers can use them too.
"""

from __future__ import annotations

from collections.abc import Sequence


class LoopDetector:
    """Says when a sequence has started repeating itself: its tail is one block repeated.

    A loop is the last ``span`` items made of a block of ``period`` items (1 <= period <= max_period)
    repeated at least ``min_repeats`` times, with the repeated tail at least ``min_span`` items long.
    Works on token ids (the transformers backend) or characters (server backends). Tuned so that
    "我是Tutu我是Tutu我是Tutu…" and "the the the the…" stop, while ordinary lists and short
    emphasis ("very very") do not.
    """

    def __init__(self, max_period: int = 48, min_repeats: int = 4, min_span: int = 24):
        self.max_period = max_period
        self.min_repeats = min_repeats
        self.min_span = min_span

    def period(self, seq: Sequence) -> int | None:
        """The period of the loop at the end of `seq`, or None when it does not loop."""
        n = len(seq)
        if n == 0:
            return None
        last = seq[n - 1]
        for p in range(1, min(self.max_period, n // self.min_repeats) + 1):
            need = max(p * self.min_repeats, self.min_span)
            if need > n or seq[n - 1 - p] != last:  # the cheap test first: a loop of period p repeats the last item
                continue
            tail = seq[n - need:]
            # a slice compare runs in C: this is called once per streamed piece, for every reply in flight
            if tail[:need - p] == tail[p:]:
                return p
        return None

    def __call__(self, seq: Sequence) -> bool:
        return self.period(seq) is not None


def cut_at_stop_word(text: str, stop_words: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the first stop word, and whether one was found."""
    cut = len(text)
    for w in stop_words:
        if w:
            i = text.find(w)
            if i != -1 and i < cut:
                cut = i
    return text[:cut], cut != len(text)


def cut_loop(text: str, detector: LoopDetector | None = None) -> str:
    """Text of a looped reply, shortened to where its repeated block first started repeating twice."""
    detector = detector or LoopDetector()
    p = detector.period(text)
    if p is None:
        return text
    # walk back while the text keeps the period, then keep two copies of the block
    i = len(text) - p
    while i > 0 and text[i - 1] == text[i - 1 + p]:
        i -= 1
    return text[: i + 2 * p]


class StopWordFilter:
    """Streams text while holding back what could be the start of a stop word.

    `feed` returns the text safe to show now; once a stop word appears, `stopped` is True and nothing
    after it is ever shown.
    """

    def __init__(self, stop_words: Sequence[str]):
        self.stop_words = [w for w in stop_words if w]
        self.text = ""  # everything received
        self.shown = 0  # how much of it was handed out
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.text += piece
        cut, found = cut_at_stop_word(self.text, self.stop_words)
        if found:
            self.stopped = True
            out = cut[self.shown:]
            self.shown = len(cut)
            return out
        hold = 0
        for w in self.stop_words:
            for k in range(min(len(w) - 1, len(self.text)), 0, -1):
                if self.text.endswith(w[:k]):
                    hold = max(hold, k)
                    break
        upto = len(self.text) - hold
        out = self.text[self.shown:upto] if upto > self.shown else ""
        self.shown = max(self.shown, upto)
        return out

    def flush(self) -> str:
        """The held-back text at the end of a reply (it was not a stop word after all)."""
        if self.stopped:
            return ""
        out = self.text[self.shown:]
        self.shown = len(self.text)
        return out
