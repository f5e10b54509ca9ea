"""A small client for OpenAI-compatible chat servers (lmdeploy's api_server, the local test server).

Standard library only (http.client), so it also runs where torch is not installed. Every network failure
becomes a one-line `OperationFailed` that names the server: a refused connection fails at once, a server
that stops answering fails after `timeout` seconds, never a hang.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from workbench.errors import BadInput, OperationFailed
from workbench.models.base import CANCELLED, EOS, LENGTH, LOOP, GenerationSettings, Reply, ReplyStream
from workbench.models.generation import LoopDetector, cut_at_stop_word

# Characters, not tokens: a loop of a repeated sentence is caught after three copies.
TEXT_LOOPS = LoopDetector(max_period=160, min_repeats=3, min_span=48)
#: How many new characters between two loop checks of a streamed reply (a loop is caught at most this much later).
LOOP_CHECK_CHARS = 16


class OpenAIClient:
    """Talks to one server at `base_url` (``http://127.0.0.1:PORT``) with a bearer `api_key`."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise BadInput(f"server URL {base_url!r}: expected http://HOST:PORT")
        self.base_url = base_url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or 80
        self.api_key = api_key
        self.timeout = timeout

    # plumbing -----------------------------------------------------------------------------------
    def _open(self, method: str, path: str, body: dict | None = None, timeout: float | None = None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
        except ConnectionRefusedError:
            conn.close()
            raise OperationFailed(f"server {self.base_url} refused the connection (is it running?)") from None
        except TimeoutError:
            conn.close()
            raise OperationFailed(f"server {self.base_url} did not answer {method} {path} within "
                                  f"{timeout or self.timeout:g} s") from None
        except OSError as exc:
            conn.close()
            raise OperationFailed(f"server {self.base_url}: {method} {path} failed ({exc})") from None
        if resp.status >= 400:
            detail = _error_message(resp.read())
            conn.close()
            if resp.status == 401:
                raise OperationFailed(f"server {self.base_url} rejected the API key ({detail})")
            if resp.status == 404:
                raise BadInput(f"server {self.base_url}: {detail}")
            raise OperationFailed(f"server {self.base_url}: {method} {path} returned {resp.status}: {detail}")
        return conn, resp

    def _json(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> dict:
        conn, resp = self._open(method, path, body, timeout)
        try:
            return json.loads(resp.read() or b"{}")
        except TimeoutError:
            raise OperationFailed(f"server {self.base_url} stopped answering {path}") from None
        except ValueError:
            raise OperationFailed(f"server {self.base_url}: {path} did not return JSON") from None
        finally:
            conn.close()

    # API ----------------------------------------------------------------------------------------
    def health(self, timeout: float = 2.0) -> bool:
        """Whether ``GET /health`` answers 200 now."""
        try:
            conn, resp = self._open("GET", "/health", timeout=timeout)
        except (OperationFailed, BadInput):
            return False
        resp.read()
        conn.close()
        return True

    def models(self) -> list[str]:
        """The model names the server serves (for lmdeploy: the base first, then its adapters)."""
        data = self._json("GET", "/v1/models")
        return [m.get("id") for m in data.get("data", []) if m.get("id")]

    def request_body(self, model: str, messages: list[dict], settings: GenerationSettings,
                     stop: list[str] | None = None, stream: bool = True) -> dict:
        body = {
            "model": model, "messages": messages, "stream": stream, "max_tokens": settings.max_new_tokens,
            "repetition_penalty": settings.repetition_penalty,
        }
        if settings.greedy:
            body.update(temperature=0.0, top_k=1, top_p=1.0)
        else:
            body.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
        if settings.seed is not None:
            body["seed"] = settings.seed
        if stop:
            body["stop"] = list(stop)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def chat_stream(self, model: str, messages: list[dict], settings: GenerationSettings,
                    stop: list[str] | None = None, cancel: threading.Event | None = None,
                    extra: dict | None = None, detect_loops: bool = True, send_stop: bool = True) -> ChatStream:
        """Stream one chat completion; iterate the result for text pieces, then read its `reply`.
        The text is cut at `stop` words here; `send_stop` also asks the server to stop at them (lmdeploy
        accepts only single-token stop words there). `extra` adds server-specific fields (``ignore_eos``)."""
        body = {**self.request_body(model, messages, settings, stop if send_stop else None), **(extra or {})}
        return ChatStream(self, body, stop or [], cancel, detect_loops=detect_loops)

    def chat_complete(self, model: str, messages: list[dict], settings: GenerationSettings,
                      stop: list[str] | None = None, extra: dict | None = None, detect_loops: bool = True,
                      send_stop: bool = True) -> Reply:
        """One chat completion as one JSON answer: no event per token, which is what a batch of many requests in
        flight wants (docs/benchmarks.md, lmdeploy). The text is cut at `stop` words, and at a loop about where a
        streamed reply's checks (every LOOP_CHECK_CHARS characters) stop it."""
        body = {**self.request_body(model, messages, settings, stop if send_stop else None, stream=False),
                **(extra or {})}
        data = self._json("POST", "/v1/chat/completions", body)
        choice = (data.get("choices") or [{}])[0]
        text, found = cut_at_stop_word((choice.get("message") or {}).get("content") or "", stop or [])
        end = None if found or not detect_loops else first_loop_end(text)
        if end is not None:
            text = text[:end]
        tokens = (data.get("usage") or {}).get("completion_tokens") or 0
        reason = LOOP if end is not None else LENGTH if choice.get("finish_reason") == "length" and not found else EOS
        return Reply(text=text, tokens=int(tokens), stop_reason=reason, looped=end is not None)


def first_loop_end(text: str) -> int | None:
    """The first multiple of LOOP_CHECK_CHARS characters of `text` (or its end) at which it loops, or None: about
    where a streamed reply, checked as often, stops."""
    for end in range(LOOP_CHECK_CHARS, len(text) + LOOP_CHECK_CHARS, LOOP_CHECK_CHARS):
        end = min(end, len(text))
        if TEXT_LOOPS(text[:end]):
            return end
    return None


class ChatStream(ReplyStream):
    """Text pieces of one streamed completion (server-sent events), a `ReplyStream`. Closing the connection is how
    a reply is cancelled: the server sees the client go and aborts the request."""

    def __init__(self, client: OpenAIClient, body: dict, stop: list[str], cancel: threading.Event | None,
                 detect_loops: bool = True):
        super().__init__(cancel)
        self.client = client
        self.detect_loops = detect_loops
        self.first_piece_at: float | None = None  # time.monotonic() of the first text piece
        self.body = body
        self.stop = stop

    def _read(self) -> Iterator[str]:
        conn, resp = self.client._open("POST", "/v1/chat/completions", self.body)
        text, finish, usage, looped, cancelled = "", None, None, False, False
        checked, found = 0, False  # len(text) at the last loop check; whether a stop word ended the text
        try:
            for event in _events(resp, self.client):
                if self.cancel_event.is_set():
                    cancelled = True
                    break
                choices = event.get("choices") or []
                if event.get("usage"):
                    usage = event["usage"]
                if not choices:
                    continue
                delta = (choices[0].get("delta") or {}).get("content") or ""
                finish = choices[0].get("finish_reason") or finish
                if delta:
                    if self.first_piece_at is None:
                        self.first_piece_at = time.monotonic()
                    self.tokens += 1
                    piece, found = cut_at_stop_word(text + delta, self.stop)
                    piece = piece[len(text):]
                    text += piece
                    if piece:
                        yield piece
                    if found:
                        finish = "stop"
                        break
                    # every LOOP_CHECK_CHARS new characters, not every piece: a check costs tens of microseconds,
                    # and 64 replies stream into one process during an eval
                    if self.detect_loops and len(text) - checked >= LOOP_CHECK_CHARS:
                        checked = len(text)
                        if TEXT_LOOPS(text):
                            looped = True
                            break
        finally:
            conn.close()  # also what cancels the request on the server
        if self.detect_loops and not (looped or cancelled or found) and len(text) > checked:
            looped = TEXT_LOOPS(text)  # the characters since the last check
        tokens = (usage or {}).get("completion_tokens") or self.tokens
        reason = LOOP if looped else CANCELLED if cancelled else LENGTH if finish == "length" else EOS
        self._reply = Reply(text=text, tokens=int(tokens), stop_reason=reason, looped=looped)


def _events(resp, client: OpenAIClient):
    """Parse server-sent events: ``data: {...}`` lines, ended by ``data: [DONE]``."""
    while True:
        try:
            line = resp.readline()
        except TimeoutError:
            raise OperationFailed(f"server {client.base_url} stopped answering mid-reply "
                                  f"(nothing for {client.timeout:g} s)") from None
        except OSError as exc:
            raise OperationFailed(f"server {client.base_url} dropped the connection mid-reply ({exc})") from None
        if not line:
            return  # the server closed the stream
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return
        try:
            yield json.loads(payload)
        except ValueError:
            raise OperationFailed(f"server {client.base_url} sent a malformed event: {payload[:80]!r}") from None


def _error_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:200] or "no detail"
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        if isinstance(err, dict):
            err = err.get("message") or err.get("error") or err
            if isinstance(err, dict):
                err = err.get("message", err)
        return str(err)[:200]
    return str(data)[:200]
