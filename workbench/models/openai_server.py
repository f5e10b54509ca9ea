"""A small OpenAI-compatible server over the transformers backend: the stand-in for lmdeploy in tests.

It speaks the part of lmdeploy's protocol workbench uses: ``GET /health``, ``GET /v1/models`` (the base, then
the adapters), ``POST /v1/chat/completions`` (JSON or server-sent events), bearer API keys, and the adapter
chosen by the request's ``model``. It takes the same command line as ``lmdeploy serve api_server`` (the
flags workbench passes), so `LmdeployBackend` can start it in lmdeploy's place on a machine without a GPU:

    python -m workbench.models.openai_server serve api_server MODEL --server-port 23333 --api-keys KEY \\
        --adapters a=PATH b=PATH --chat-template template.json

Standard library http.server, one request generating at a time.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from workbench.models.base import LENGTH, GenerationSettings
from workbench.models.templates import ChatFormat, resolve_format


def format_from_lmdeploy(tmpl: dict) -> ChatFormat:
    """The ChatFormat an lmdeploy chat-template JSON describes (inverse of `lmdeploy_chat_template`)."""
    return ChatFormat(
        name=str(tmpl.get("model_name", "lmdeploy")).removeprefix("workbench-"),
        system_fmt=(tmpl.get("system") or "") + "{system}" + (tmpl.get("eosys") or ""),
        instruction=(tmpl.get("user") or "") + "{input}" + (tmpl.get("eoh") or "") + (tmpl.get("assistant") or ""),
        suffix=tmpl.get("eoa") or "", sep=tmpl.get("separator") or "",
        stop_words=tuple(tmpl.get("stop_words") or ()), suffix_as_eos=True,
        system=tmpl.get("meta_instruction") or "",
    )


class Server:
    """The model and what the handler needs: served names, API keys, the chat format, one lock."""

    def __init__(self, model: str, adapters: dict[str, str], api_keys: list[str], chat_template: str | None,
                 model_name: str | None = None, device: str = "auto"):
        from workbench.models.hf import TransformersBackend

        self.backend = TransformersBackend(model, device=device)
        for name, path in adapters.items():
            self.backend.add_adapter(name, path)
        self.model_name = model_name or model
        self.api_keys = api_keys
        if chat_template:
            self.format = format_from_lmdeploy(json.loads(Path(chat_template).read_text(encoding="utf-8")))
        else:
            self.format = resolve_format(model_path=model).format
        self.lock = threading.Lock()

    def names(self) -> list[str]:
        return [self.model_name, *self.backend.adapters()]


class Handler(BaseHTTPRequestHandler):
    server_version = "workbench-openai-test/1"
    protocol_version = "HTTP/1.1"
    app: Server  # set on the subclass made by `serve`

    def log_message(self, fmt, *args):  # keep the test output quiet; errors still reach the log
        pass

    def _send_json(self, status: int, obj) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

    def _authorized(self) -> bool:
        if not self.app.api_keys:
            return True
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in self.app.api_keys:
            return True
        self._error(401, "Please request with valid api key!")
        return False

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/health":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/v1/models":
            if self._authorized():
                self._send_json(200, {"object": "list", "data": [
                    {"id": n, "object": "model", "root": n, "owned_by": "workbench"} for n in self.app.names()]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self):  # noqa: N802
        if self.path != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        if not self._authorized():
            return
        try:
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        except ValueError:
            self._error(400, "body is not JSON")
            return
        model = req.get("model")
        if model not in self.app.names():
            self._error(404, f"The model `{model}` does not exist.")
            return
        settings = GenerationSettings(
            max_new_tokens=int(req.get("max_tokens") or 128),
            temperature=0.0 if req.get("top_k") == 1 else float(req.get("temperature", 0.0)),
            top_p=float(req.get("top_p", 1.0)), top_k=int(req.get("top_k") or 0),
            repetition_penalty=float(req.get("repetition_penalty", 1.0)), seed=req.get("seed"),
        )
        messages = req.get("messages") or []
        fmt = self.app.format
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        with self.app.lock:  # one generation at a time, and the adapter choice belongs to it
            self.app.backend.set_active(None if model == self.app.model_name else model)
            stream = self.app.backend.stream(messages, fmt, settings)
            if not req.get("stream"):
                reply = stream.wait()
                self._send_json(200, {
                    "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                                 "finish_reason": "length" if reply.stop_reason == LENGTH else "stop"}],
                    "usage": {"completion_tokens": reply.tokens},
                })
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

            def event(obj) -> None:
                self.wfile.write(b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n")
                self.wfile.flush()

            def chunk(delta: dict, finish=None) -> dict:
                return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

            try:
                event(chunk({"role": "assistant"}))
                for piece in stream:
                    event(chunk({"content": piece}))
                reply = stream.reply
                event(chunk({}, "length" if reply.stop_reason == LENGTH else "stop"))
                if (req.get("stream_options") or {}).get("include_usage"):
                    event({"id": cid, "object": "chat.completion.chunk", "model": model, "choices": [],
                           "usage": {"completion_tokens": reply.tokens}})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                stream.cancel()  # the client went away: stop generating for it
                stream.wait()


def serve(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="workbench.models.openai_server")
    p.add_argument("serve", nargs="?")
    p.add_argument("api_server", nargs="?")
    p.add_argument("model_path")
    p.add_argument("--server-name", default="127.0.0.1")
    p.add_argument("--server-port", type=int, default=23333)
    p.add_argument("--api-keys", nargs="*", default=[])
    p.add_argument("--adapters", nargs="*", default=[])
    p.add_argument("--chat-template", default=None)
    p.add_argument("--model-name", default=None)
    p.add_argument("--device", default="auto", help="where the test server runs the model (auto, cpu, cuda)")
    args, _unknown = p.parse_known_args(argv)  # lmdeploy engine flags (--backend, --dtype ...) do not apply
    adapters = dict(a.split("=", 1) for a in args.adapters)
    app = Server(args.model_path, adapters, args.api_keys, args.chat_template, args.model_name, args.device)
    handler = type("BoundHandler", (Handler,), {"app": app})
    httpd = ThreadingHTTPServer((args.server_name, args.server_port), handler)
    httpd.daemon_threads = True
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    serve()
