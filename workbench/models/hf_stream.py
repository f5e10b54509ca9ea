"""Token-by-token streaming for the transformers backend: generation in a worker thread, text pieces out.

The worker hands text to the reader through a small bounded queue, so generation never runs far ahead of
what the reader has taken: cancelling (the `cancel` event, or closing the iterator) stops it within one
token step, and the reader's view is never many tokens behind.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from workbench.models.base import GenerationSettings, ReplyStream
from workbench.models.generation import StopWordFilter
from workbench.models.templates import ChatFormat

if TYPE_CHECKING:
    from workbench.models.hf import TransformersBackend

_DONE = object()
QUEUE_SIZE = 4


class _QueueStreamer:
    """A transformers streamer that decodes new tokens into text and puts it on a bounded queue.

    Decoding is incremental (the way text-generation-inference and vLLM detokenize): only a window from `prefix`
    (the token before the last text sent, for context: a leading space, a merge) to the newest token is decoded,
    and what it adds to the window's already-sent part goes out, so a long reply costs linear time, not quadratic.
    The pieces add up to the decode of the whole reply."""

    def __init__(self, tokenizer, q: queue.Queue, cancel: threading.Event):
        self.tokenizer = tokenizer
        self.q = q
        self.cancel = cancel
        self.ids: list[int] = []
        self.prefix = 0  # ids[prefix:read] decode to text already sent: the context of the next piece
        self.read = 0  # ids before this are sent
        self.prompt_seen = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def put(self, value) -> None:
        if not self.prompt_seen:  # the first call carries the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        self._flush(final=False)

    def end(self) -> None:
        self._flush(final=True)

    def _flush(self, final: bool) -> None:
        before = self._decode(self.ids[self.prefix:self.read])
        text = self._decode(self.ids[self.prefix:])
        # a byte-level token can end inside a UTF-8 character: wait for the rest of it (the end sends what there is)
        if not final and (len(text) <= len(before) or text.endswith("\ufffd")):
            return
        self._send(text[len(before):])
        self.prefix, self.read = self.read, len(self.ids)

    def _send(self, piece: str) -> None:
        if not piece:
            return
        while True:  # block while the reader is behind, but never past a cancel (nobody may read any more)
            try:
                self.q.put(piece, timeout=0.05)
                return
            except queue.Full:
                if self.cancel.is_set():
                    return


class TokenStream(ReplyStream):
    """The text pieces of one reply (a `ReplyStream`); `tokens` counts generated tokens live. Iterating starts
    the worker; `cancel()` (or the caller's event) stops it."""

    def __init__(self, backend: TransformersBackend, messages: list[dict], template: ChatFormat,
                 settings: GenerationSettings, cancel: threading.Event | None = None):
        super().__init__(cancel)
        self.backend = backend
        self.messages = messages
        self.template = template
        self.settings = settings
        self._q: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _count(self) -> None:
        self.tokens += 1

    def _work(self) -> None:
        b = self.backend
        try:
            eos_ids, stop_texts = b.stop_ids(self.template)
            prompt = b.encode(self.messages, self.template)
            streamer = _QueueStreamer(b.tokenizer, self._q, self.cancel_event)
            with b._lock, b.cpu_turn():
                b._seed(self.settings)
                (self._reply,) = b._generate_batch([prompt], self.settings, eos_ids, stop_texts,
                                                   cancel=self.cancel_event, streamer=streamer, counter=self._count)
        except BaseException as exc:  # handed to the reader, who re-raises it
            self._error = exc
        finally:
            while True:
                try:
                    self._q.put(_DONE, timeout=0.05)
                    break
                except queue.Full:
                    try:
                        self._q.get_nowait()  # the reader is gone: make room for the end marker
                    except queue.Empty:
                        pass

    def _read(self) -> Iterator[str]:
        thread = self._thread = threading.Thread(target=self._work, name="workbench-generate", daemon=True)
        thread.start()
        filt = StopWordFilter(self.backend.stop_ids(self.template)[1])
        try:
            while True:
                item = self._q.get()
                if item is _DONE:
                    break
                out = filt.feed(item)
                if out:
                    yield out
            if self._error is not None:
                raise self._error
            tail = filt.flush()
            if tail:
                yield tail
        finally:
            if thread.is_alive():  # the reader stopped early: stop the worker and wait for it
                self.cancel_event.set()
                while thread.is_alive():
                    try:
                        self._q.get(timeout=0.05)
                    except queue.Empty:
                        pass
                thread.join()
