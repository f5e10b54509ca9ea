"""The server client stops a reply that loops, also now that it checks for loops every few characters instead of
at every streamed piece (64 replies streaming into one process spent more time checking than reading), and a reply
asked for as one JSON answer (what `generate` does) is cut where a streamed one stops."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workbench.models.base import EOS, LOOP, GenerationSettings
from workbench.models.openai_client import LOOP_CHECK_CHARS, TEXT_LOOPS, OpenAIClient, first_loop_end

PIECES: list[str] = []


class Scripted(BaseHTTPRequestHandler):
    """Streams PIECES as server-sent events, one piece an event, then finish_reason "stop" (the server's EOS)."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not body.get("stream"):  # one JSON answer
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "".join(PIECES)},
                                            "finish_reason": "stop"}],
                               "usage": {"completion_tokens": len(PIECES)}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            for piece in PIECES:
                self.wfile.write(b"data: " + json.dumps({"choices": [{"delta": {"content": piece}}]}).encode()
                                 + b"\n\n")
            self.wfile.write(b"data: " + json.dumps({"choices": [{"delta": {}, "finish_reason": "stop"}]}).encode()
                             + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what it does with a loop

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def client():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield OpenAIClient(f"http://127.0.0.1:{server.server_address[1]}", "k", timeout=10)
    server.shutdown()


def read(client, pieces):
    PIECES[:] = pieces
    return client.chat_stream("m", [{"role": "user", "content": "hi"}], GenerationSettings()).wait()


def test_a_looping_reply_is_cut_soon_after_the_loop_is_detectable(client):
    pieces = ["Hello, here is an answer. "] + ["我是", "Tutu"] * 200
    reply = read(client, pieces)
    assert reply.looped and reply.stop_reason == LOOP
    # the first prefix (piece by piece) at which the loop shows: the reply stops at most one check later
    text, first = "", None
    for p in pieces:
        text += p
        if first is None and TEXT_LOOPS(text):
            first = len(text)
    assert first is not None and first <= len(reply.text) < first + LOOP_CHECK_CHARS + len("Tutu")
    assert len(reply.text) < len("".join(pieces)) // 4  # it did not read to the end


def test_a_loop_in_the_last_characters_before_the_end_is_still_flagged(client):
    # the loop becomes detectable only with the last piece, which comes fewer than LOOP_CHECK_CHARS after the
    # last periodic check (checks at 81, 99, 117; the end at 129)
    head = "A long and ordinary answer about the sea and its tides, the moon, and the wind. "
    pieces = [head] + ["abc"] * 16
    assert not TEXT_LOOPS("".join(pieces[:-1])) and TEXT_LOOPS("".join(pieces))
    reply = read(client, pieces)
    assert reply.looped and reply.stop_reason == LOOP


def test_an_ordinary_reply_is_not_a_loop(client):
    reply = read(client, ["The Pacific ", "is the largest ", "ocean on Earth, ", "covering about a third ",
                          "of the planet's surface."])
    assert not reply.looped and reply.stop_reason == EOS
    assert reply.text == "The Pacific is the largest ocean on Earth, covering about a third of the planet's surface."


def complete(client, pieces, stop=None):
    PIECES[:] = pieces
    return client.chat_complete("m", [{"role": "user", "content": "hi"}], GenerationSettings(), stop=stop)


@pytest.mark.parametrize("pieces", [
    ["Hello, here is an answer. "] + ["我是", "Tutu"] * 200,
    ["A long and ordinary answer about the sea and its tides, the moon, and the wind. "] + ["abc"] * 16,
    ["The Pacific ", "is the largest ", "ocean on Earth."],
])
def test_a_json_answer_is_cut_at_a_loop_about_where_the_stream_stops(client, pieces):
    streamed, whole = read(client, pieces), complete(client, pieces)
    assert whole.looped == streamed.looped and whole.stop_reason == streamed.stop_reason
    assert streamed.text.startswith(whole.text[:len(streamed.text) - LOOP_CHECK_CHARS - 4])  # the same text...
    assert abs(len(whole.text) - len(streamed.text)) <= LOOP_CHECK_CHARS + 4  # ...to within one check
    if whole.looped:
        assert TEXT_LOOPS(whole.text) and first_loop_end(whole.text) == len(whole.text)


def test_a_json_answer_is_cut_at_the_first_stop_word_and_is_not_a_loop_then(client):
    reply = complete(client, ["Paris is the capital.", "<|im_end|>", "ab" * 40], stop=["<|im_end|>"])
    assert reply.text == "Paris is the capital." and reply.stop_reason == EOS and not reply.looped
