"""The lmdeploy backend: workbench starts `lmdeploy serve api_server` and talks to it over HTTP.

lmdeploy cannot live in xtuner's environment (its transformers pin conflicts), so it runs from its own
Python (setting ``lmdeploy_python``, docs/models.md "lmdeploy environment"). The server uses the PyTorch
engine with every adapter passed by name (``--adapters a=PATH b=PATH``), listens on 127.0.0.1 on a free port
with a random API key, and gets the chat format as an lmdeploy chat-template JSON made from the XTuner
template, so it renders exactly the prompt training saw. It is stopped, with its children, by `close()`
and when workbench exits.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workbench.errors import BadInput, OperationFailed
from workbench.models import adapters as _adapters
from workbench.models.base import AdapterInfo, Notice
from workbench.models.remote import RemoteBackend
from workbench.models.templates import ChatFormat


def lmdeploy_chat_template(fmt: ChatFormat) -> dict | None:
    """The lmdeploy ``--chat-template`` JSON for an XTuner format (None for a tokenizer template: lmdeploy
    then uses the model's own). lmdeploy renders ``system+meta_instruction+eosys``, then per turn
    ``user+q+eoh+assistant`` and ``a+eoa+separator``: XTuner's INSTRUCTION splits at ``{input}`` into
    ``user`` and ``eoh`` (which already opens the answer), SUFFIX is ``eoa`` and SEP the separator."""
    if fmt.jinja:
        return None
    user, _, eoh = fmt.instruction.partition("{input}")
    sys_open, _, eosys = fmt.system_fmt.partition("{system}")
    return {
        "model_name": f"workbench-{fmt.name}",
        # no system prompt: empty system block (lmdeploy writes it whenever meta_instruction is not None)
        "system": sys_open if fmt.system else "",
        "meta_instruction": fmt.system or "",
        "eosys": eosys if fmt.system else "",
        "user": user.replace("{round}", "1"),
        "eoh": eoh,
        "assistant": "",
        "eoa": fmt.suffix,
        "separator": fmt.sep,
        "stop_words": list(fmt.stop_words),
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_gpu() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def _die_with_parent() -> None:  # runs in the child before exec: if workbench is killed, so is the server
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    os.setsid()  # its own process group, so stopping it reaches the engine's workers too


class LmdeployBackend(RemoteBackend):
    """`lmdeploy serve api_server` started from a separate Python, adapters served by name.

    Options: `python` (the lmdeploy environment's interpreter: the front end's ``lmdeploy_python`` setting, passed
    down as `settings_options` says, or a flag),
    `start_timeout` (seconds to wait for the engine, default 900), `timeout` (per-read HTTP timeout),
    `server_args` (more ``lmdeploy serve api_server`` flags, e.g. ``["--cache-max-entry-count", "0.5"]``),
    `trust_remote_code`, `concurrency` (requests in flight during `generate`; 64, as measured). `entry` replaces the
    ``lmdeploy`` module (tests point it at `workbench.models.openai_server`, which speaks the same CLI).
    """

    name = "lmdeploy"
    send_stop = False  # the chat-template JSON carries the stop words; lmdeploy rejects multi-token ones

    def __init__(self, base: str | Path, *, python: str | None = None, start_timeout: float = 900.0,
                 timeout: float = 120.0, server_args: list[str] | tuple[str, ...] = (),
                 trust_remote_code: bool = False, concurrency: int = 64, entry: str = "lmdeploy",
                 dtype: str = "auto", log_dir: str | Path | None = None, **_ignored):
        from workbench.models.loading import require_trust

        folder = Path(base).expanduser()
        if not (folder / "config.json").is_file():
            raise BadInput(f"{folder}: not a model folder (no config.json)")
        require_trust(folder, trust_remote_code)
        if not python:
            raise BadInput("the lmdeploy backend runs from its own Python environment: make it with "
                           "`workbench setup lmdeploy` (or set lmdeploy_python in settings.toml or "
                           "WORKBENCH_LMDEPLOY_PYTHON; docs/models.md, lmdeploy environment)")
        python = str(Path(python).expanduser())
        if not (Path(python).is_file() and os.access(python, os.X_OK)):
            raise BadInput(f"lmdeploy_python {python}: not an executable Python interpreter")
        if entry == "lmdeploy" and not _has_gpu():
            raise BadInput("the lmdeploy backend needs an NVIDIA GPU (none found); use --backend transformers")
        super().__init__("http://127.0.0.1:1", None, timeout=timeout, concurrency=concurrency)
        self.base_path = folder
        self.python = python
        self.entry = entry
        self.start_timeout = start_timeout
        self.server_args = list(server_args)
        self.dtype = dtype
        self.log_dir = Path(log_dir) if log_dir else None
        self._paths: dict[str, Path] = {}  # adapter name -> PEFT folder given to the server
        self._proc: subprocess.Popen | None = None
        self._template: ChatFormat | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="workbench-lmdeploy-"))
        self.log_path: Path | None = None
        self.start_seconds: float | None = None
        atexit.register(self.close)

    # adapters: passed to the server at start; a change while it runs restarts it ---------------
    def add_adapter(self, name: str, source: str | Path, *, config: str | Path | None = None) -> AdapterInfo:
        self._check_new(name)
        src = _adapters.read_adapter(name, source, config)
        path = Path(source).expanduser().resolve()
        if src.info.kind == "xtuner-pth":  # the server loads PEFT folders: write one beside our temp files
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
            path = _adapters.export_peft(src, self._tmp / f"{name}-{digest}")
        self._paths[name] = path
        self._infos[name] = src.info
        if self.running:
            self.restart()
        return src.info

    def remove_adapter(self, name: str) -> None:
        super().remove_adapter(name)
        self._paths.pop(name, None)
        if self.running:
            self.restart()

    # the server process ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def prepare(self, template: ChatFormat, notice: Notice | None = None) -> None:
        """Start the server with `template` (restart it when it runs with another one) and wait until it answers."""
        if self.running and self._template == template:
            return
        if self.running:
            msg = f"restarting the lmdeploy server for template {template.describe()}…"
            if notice is not None:
                notice(msg)
            else:
                print(f"workbench: {msg}", file=sys.stderr)
        elif notice is not None:
            notice("starting the lmdeploy server…")
        self._template = template
        self.restart()

    def command(self, port: int, api_key: str) -> list[str]:
        """The server's command line."""
        cmd = [self.python, "-m", self.entry, "serve", "api_server", str(self.base_path), "--backend", "pytorch",
               "--server-name", "127.0.0.1", "--server-port", str(port), "--api-keys", api_key]
        if self.dtype != "auto":
            cmd += ["--dtype", self.dtype]
        if self._paths:
            cmd += ["--adapters", *[f"{n}={p}" for n, p in self._paths.items()]]
        tmpl = lmdeploy_chat_template(self._template) if self._template else None
        if tmpl is not None:
            path = self._tmp / "chat_template.json"
            path.write_text(json.dumps(tmpl, ensure_ascii=False, indent=2), encoding="utf-8")
            cmd += ["--chat-template", str(path)]
        return cmd + self.server_args

    def start(self, template: ChatFormat | None = None) -> None:
        """Start the server and wait until it answers (raises `OperationFailed` with its log's tail)."""
        if template is not None:
            self._template = template
        # hex: a key that starts with "-" would be read as an option by the server's argument parser (1 start in 32)
        port, key = _free_port(), secrets.token_hex(24)
        if self.log_dir is None:
            from workbench.paths import cache_dir

            self.log_dir = cache_dir() / "lmdeploy"
        log_dir = self.log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"lmdeploy-{port}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps writing to it after this returns
        env = dict(os.environ)
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):  # never leak workbench's packages into lmdeploy's
            env.pop(var, None)
        if self.entry != "lmdeploy":
            env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        t0 = time.monotonic()
        self._proc = subprocess.Popen(self.command(port, key), stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent)
        log.close()
        self.client.port, self.client.api_key = port, key
        self.client.base_url = f"http://127.0.0.1:{port}"
        deadline = t0 + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise OperationFailed(f"the lmdeploy server exited with status {code} while starting: "
                                      f"{self._log_tail()} (log: {self.log_path})")
            if self.client.health(timeout=2.0):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise OperationFailed(f"the lmdeploy server did not become healthy within {self.start_timeout:g} s "
                                      f"(log: {self.log_path})")
            time.sleep(0.25)  # polling a process that takes seconds to minutes to come up
        self.start_seconds = time.monotonic() - t0
        served = self.connect()
        missing = [n for n in self._paths if n not in served]
        if missing:
            self.stop()
            raise OperationFailed(f"the lmdeploy server does not serve adapters {missing} (it serves {served})")

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        """Stop the server and its children: SIGTERM to its process group, SIGKILL after 15 s."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=15)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def describe(self) -> dict:
        return {**super().describe(), "base": str(self.base_path), "pid": self.pid}

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines() if self.log_path else []
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])
