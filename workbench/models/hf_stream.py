"""Token-by-token streaming for the transformers backend: generation in a worker thread, text pieces out.

The worker hands text to the reader through a small bounded queue, so generation never runs far ahead of
what the reader has taken: cancelling (the `cancel` event, or closing the iterator) stops it within one
token step, and the reader's view is never many tokens behind.
"""

from __future__ import annotations

import queue
import threading

from workbench.models.base import GenerationSettings, Reply
from workbench.models.generation import StopWordFilter
from workbench.models.templates import ChatFormat

_DONE = object()
QUEUE_SIZE = 4


class _QueueStreamer:
    """A transformers streamer that decodes new tokens into text and puts it on a bounded queue."""

    def __init__(self, tokenizer, q: queue.Queue, cancel: threading.Event):
        self.tokenizer = tokenizer
        self.q = q
        self.cancel = cancel
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already sent
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # the first call carries the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        # a byte-level token can end inside a UTF-8 character: wait for the rest of it
        if text.endswith("\ufffd"):
            return
        self._send(text[self.sent:])
        self.sent = len(text)

    def end(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        self._send(text[self.sent:])
        self.sent = len(text)

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


class TokenStream:
    """An iterator of text pieces of one reply; `tokens` counts generated tokens live, `reply` is set at
    the end. Iterating starts the worker; `cancel()` (or the caller's event) stops it."""

    def __init__(self, backend, messages: list[dict], template: ChatFormat, settings: GenerationSettings,
                 cancel: threading.Event | None = None):
        self.backend = backend
        self.messages = messages
        self.template = template
        self.settings = settings
        self.cancel_event = cancel or threading.Event()
        self.tokens = 0
        self.reply: Reply | None = None
        self._q: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._gen = None

    def cancel(self) -> None:
        self.cancel_event.set()

    def _count(self) -> None:
        self.tokens += 1

    def _work(self) -> None:
        b = self.backend
        try:
            eos_ids, stop_texts = b.stop_ids(self.template)
            prompt = b.encode(self.messages, self.template)
            streamer = _QueueStreamer(b.tokenizer, self._q, self.cancel_event)
            with b._lock:
                b._seed(self.settings)
                (self.reply,) = b._generate_batch([prompt], self.settings, eos_ids, stop_texts,
                                                  cancel=self.cancel_event, streamer=streamer, counter=self._count)
            # `generate` counts the step that produced a token; the counter saw one call per new token
            b.last_reply = self.reply
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

    def __iter__(self):
        if self._gen is None:
            self._gen = self._read()
        return self._gen

    def __next__(self):
        return next(iter(self))

    def _read(self):
        self._thread = threading.Thread(target=self._work, name="workbench-generate", daemon=True)
        self._thread.start()
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
            if self._thread.is_alive():  # the reader stopped early: stop the worker and wait for it
                self.cancel_event.set()
                while self._thread.is_alive():
                    try:
                        self._q.get(timeout=0.05)
                    except queue.Empty:
                        pass
                self._thread.join()

    def wait(self) -> Reply | None:
        """Read to the end (discarding text) and return the reply."""
        for _ in self:
            pass
        return self.reply
