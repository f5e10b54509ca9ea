"""A backend that talks to an OpenAI-compatible server: the adapter is chosen per request by model name.

Switching is free (it only changes the name sent with the next request). `LmdeployBackend` builds on this
and also owns the server process.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from workbench.errors import BadInput
from workbench.models.base import AdapterInfo, Backend, GenerationSettings, Notice, Reply
from workbench.models.openai_client import ChatStream, OpenAIClient
from workbench.models.templates import ChatFormat
from workbench.progress import ProgressFn


def with_system(messages: list[dict], template: ChatFormat) -> list[dict]:
    """The messages to send: the template's system prompt as a leading system message (the server renders
    the template itself; its system prompt is only what we send)."""
    if template.system and not any(m.get("role") == "system" for m in messages):
        return [{"role": "system", "content": template.system}, *messages]
    return list(messages)


class RemoteBackend(Backend):
    """A running OpenAI-compatible server whose served names are the base and its adapters."""

    name = "openai"
    send_stop = True  # pass the template's stop words in each request (a server with the template knows them)

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 60.0, concurrency: int = 16):
        super().__init__()
        self.client = OpenAIClient(url, api_key, timeout=timeout)
        self.concurrency = concurrency
        self.base_model: str | None = None  # the served name of the base (first of /v1/models)

    def connect(self) -> list[str]:
        """Ask the server what it serves; the first name is the base."""
        served = self.client.models()
        if not served:
            raise BadInput(f"server {self.client.base_url} serves no model")
        self.base_model = served[0]
        return served

    def add_adapter(self, name: str, source: str | Path, *, config: str | Path | None = None) -> AdapterInfo:
        served = self.connect()
        if name not in served:
            raise BadInput(f"server {self.client.base_url} does not serve an adapter named {name!r} "
                           f"(it serves {', '.join(served)})")
        info = AdapterInfo(name=name, source=str(source), kind="served")
        self._infos[name] = info
        return info

    def remove_adapter(self, name: str) -> None:
        self._check_known(name)
        del self._infos[name]
        if self._active == name:
            self._active = None

    def set_active(self, name: str | None) -> None:
        self._check_known(name)
        self._active = name

    def describe(self) -> dict:
        return {**super().describe(), "server": self.client.base_url}

    def _model(self, template: ChatFormat) -> str:
        self.prepare(template)
        model = self._active or self.base_model
        assert model is not None  # prepare connected
        return model

    def prepare(self, template: ChatFormat, notice: Notice | None = None) -> None:
        """Ask the server what it serves, once (a backend that starts its server, lmdeploy, starts it here)."""
        if self.base_model is None:
            self.connect()

    def stream(self, messages: list[dict], template: ChatFormat, settings: GenerationSettings,
               cancel: threading.Event | None = None) -> ChatStream:
        model = self._model(template)
        return self.client.chat_stream(model, with_system(messages, template), settings,
                                       stop=list(template.stop_words), cancel=cancel, send_stop=self.send_stop)

    def generate(self, conversations: list[list[dict]], template: ChatFormat, settings: GenerationSettings,
                 progress: ProgressFn | None = None) -> list[Reply]:
        model = self._model(template)
        replies: list[Reply | None] = [None] * len(conversations)

        def one(i: int) -> tuple[int, Reply]:
            # one JSON answer a request, not a stream: no per-token events on either side (1.17x the streamed rate
            # at 64 in flight on an H200: docs/benchmarks.md, lmdeploy)
            return i, self.client.chat_complete(model, with_system(conversations[i], template), settings,
                                                stop=list(template.stop_words), send_stop=self.send_stop)

        # the server batches concurrent requests itself: keep enough of them in flight
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            futures = [pool.submit(one, i) for i in range(len(conversations))]
            for done, fut in enumerate(as_completed(futures), 1):
                i, reply = fut.result()
                replies[i] = reply
                if progress:
                    progress(done, len(conversations), "generate")
        return [r for r in replies if r is not None]  # every one is set (a failure raised)
