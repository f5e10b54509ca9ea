"""The chat stream's text: decoded a window at a time (linear in the reply's length), the same text as a decode of
the whole reply, with no half characters sent."""

from __future__ import annotations

import queue
import threading

import pytest

TEXT = "中国的首都是北京。Emoji 🙂👍🏽, accents é à ü, 日本語のテキスト\n  two  spaces, a tab\tand punctuation ."


@pytest.fixture(scope="module")
def tokenizers(tiny_world, real_world):
    from transformers import AutoTokenizer

    return [AutoTokenizer.from_pretrained(str(p)) for p in (tiny_world, real_world)]


class _CountingTokenizer:
    """The tokenizer, recording how many ids each decode call gets."""

    def __init__(self, tok):
        self.tok = tok
        self.lengths: list[int] = []

    def decode(self, ids, **kwargs):
        self.lengths.append(len(ids))
        return self.tok.decode(ids, **kwargs)


def _stream(tok, ids: list[int]) -> tuple[list[str], list[int]]:
    """What the streamer sends for a reply of `ids` handed over one token at a time (as generate() does)."""
    import torch

    from workbench.models.hf_stream import _QueueStreamer

    counting = _CountingTokenizer(tok)
    q: queue.Queue = queue.Queue()
    streamer = _QueueStreamer(counting, q, threading.Event())
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt comes first, and is not sent
    for t in ids:
        streamer.put(torch.tensor([t]))
    streamer.end()
    pieces = []
    while not q.empty():
        pieces.append(q.get_nowait())
    return pieces, counting.lengths


def _whole_reply_pieces(tok, ids: list[int]) -> list[str]:
    """The pieces of the previous streamer, which decoded the whole reply on every token (quadratic)."""
    pieces, sent = [], 0
    for n in range(1, len(ids) + 1):
        text = tok.decode(ids[:n], skip_special_tokens=True)
        if text.endswith("\ufffd"):
            continue
        if text[sent:]:
            pieces.append(text[sent:])
        sent = len(text)
    return pieces


def test_multi_byte_and_cjk_text_streams_as_the_same_pieces_with_no_half_characters(tokenizers):
    for tok in tokenizers:
        ids = tok.encode(TEXT, add_special_tokens=False)
        pieces, _ = _stream(tok, ids)
        assert "".join(pieces) == tok.decode(ids, skip_special_tokens=True)
        assert pieces == _whole_reply_pieces(tok, ids)
        assert not any("\ufffd" in p for p in pieces)


def test_a_long_reply_decodes_only_a_window_per_token(tokenizers):
    for tok in tokenizers:
        ids = tok.encode(TEXT * 60, add_special_tokens=False)
        eos = tok.eos_token_id
        ids = ids[:500] + ([eos] if eos is not None else []) + ids[500:]  # a special token mid-reply is skipped
        pieces, lengths = _stream(tok, ids)
        assert len(ids) > 2000
        assert "".join(pieces) == tok.decode(ids, skip_special_tokens=True)
        assert max(lengths) <= 16  # a few tokens of context, never the whole reply
        assert len(lengths) <= 2 * len(ids) + 2
