"""User settings: one dataclass, read from ``config_dir()/settings.toml`` and ``WORKBENCH_*`` variables.

Every field has a docstring (the attribute docstring below it): `describe()` reads them back so the
TUI and docs can show what each setting does. Precedence: defaults < settings.toml < environment.
The environment name of a field is ``WORKBENCH_`` + its name in upper case (``WORKBENCH_THEME``);
``keys`` takes ``id=keys`` pairs separated by ``;`` (``WORKBENCH_KEYS="app.quit=ctrl+q;runs.stop=x"``).

No textual import here: the CLI reads the same settings (default backend, trust_remote_code).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import BadInput, where

ENV_PREFIX = "WORKBENCH_"


@dataclass
class Settings:
    """Everything a user can change without editing code."""

    theme: str = "textual-dark"
    """Textual theme of the TUI (any name `workbench` lists in the command palette's theme picker)."""

    keys: dict[str, str] = field(default_factory=dict)
    """Key binding overrides by binding id, e.g. ``{"runs.stop" = "x", "app.screen_chat" = "f2"}``.

    The ids are listed in docs/tui.md and in the TUI's key panel (``?``). Several keys: ``"x,ctrl+x"``."""

    default_backend: str = "transformers"
    """Backend used by chat and eval when none is chosen: ``transformers`` (in-process) or ``lmdeploy``."""

    trust_remote_code: bool = False
    """Whether models may run code from their own folder (needed by some hub models, e.g. InternLM2)."""

    device: str = "auto"
    """Where chat and eval run the model: ``auto`` (CUDA when available), ``cpu`` or ``cuda``."""

    max_new_tokens: int = 256
    """Longest reply generated in chat (eval uses its own, shorter limit)."""

    temperature: float = 0.0
    """Sampling temperature in chat; 0 is greedy, which makes replies comparable across checkpoints."""

    log_max_lines: int = 2_000_000
    """Most lines the log view keeps indexed (8 bytes each); older lines scroll out of the view."""

    poll_interval: float = 0.5
    """Seconds between refreshes of the runs list and a running run's parsed metrics."""

    conversations_dir: str = ""
    """Where chat conversations are saved; empty means ``data_dir()/conversations``."""

    lmdeploy_python: str = ""
    """Python interpreter of the separate lmdeploy environment (``--backend lmdeploy``), e.g.
    ``~/lmdeploy-env/bin/python``; see docs/models.md, "lmdeploy environment"."""


def _field_docs() -> dict[str, str]:
    """Attribute docstrings of `Settings`, read from its source (kept in one place: the class body)."""
    tree = ast.parse(inspect.getsource(Settings))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = inspect.cleandoc(str(nxt.value.value))
    return docs


@functools.lru_cache(maxsize=1)
def describe() -> dict[str, str]:
    """``{field name: help text}`` for every setting, in declaration order."""
    docs = _field_docs()
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(Settings)}


def settings_path() -> Path:
    """The settings file (it may not exist: defaults apply)."""
    from workbench.paths import config_dir

    return config_dir() / "settings.toml"


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a TOML or environment value into the type of field `name`, or raise a one-line BadInput."""
    default = getattr(Settings(), name)
    kind = type(default)
    try:
        if kind is dict:
            if isinstance(value, str):
                pairs = [p for p in value.split(";") if p.strip()]
                value = dict(p.split("=", 1) for p in pairs)
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError("expected a table of id = \"keys\" strings")
            return {str(k).strip(): v.strip() for k, v in value.items()}
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if kind is int:
            if isinstance(value, bool):
                raise ValueError(f"expected an integer, got {value!r}")
            return int(value)
        if kind is float:
            return float(value)
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    except ValueError as exc:
        raise BadInput(f"{source}: setting {name!r}: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's tomllib has no `lineno` attribute: the line is only in the message.
        found = re.search(r"line (\d+)", str(exc))
        line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
        raise BadInput(f"{where(path, line)}: not valid TOML: {exc}") from None


def load(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the settings: defaults, then `path` (default `settings_path()`), then ``WORKBENCH_*`` variables.

    An unknown setting or a value of the wrong type is a `BadInput` naming the file (or variable) and key.
    """
    path = path or settings_path()
    env_vars: Mapping[str, str] = os.environ if environ is None else environ
    names = {f.name for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    for key, value in _read_toml(path).items():
        if key not in names:
            raise BadInput(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(names))})")
        values[key] = _coerce(key, value, str(path))
    for name in names:
        env = ENV_PREFIX + name.upper()
        if env in env_vars:
            value = _coerce(name, env_vars[env], env)
            if name == "keys":  # the environment adds to the file's overrides instead of replacing them
                value = {**values.get("keys", {}), **value}
            values[name] = value
    return Settings(**values)


def set_value(name: str, value: str, path: Path | None = None) -> Path:
    """Write one top-level string setting into settings.toml (`path`, default `settings_path()`), keeping every
    other line as it is; atomic (a temp file, then a rename). Returns the file."""
    import json as _json

    from workbench.atomic import write_text

    if name not in {f.name for f in dataclasses.fields(Settings)}:
        raise BadInput(f"unknown setting {name!r}")
    path = path or settings_path()
    _read_toml(path)  # a file that does not parse is an error here too, not overwritten
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    line = f"{name} = {_json.dumps(value)}"  # a JSON string is a TOML basic string
    key = re.compile(rf"^\s*{re.escape(name)}\s*=")
    table = next((i for i, text in enumerate(lines) if text.lstrip().startswith("[")), len(lines))
    for i, text in enumerate(lines[:table]):
        if key.match(text):
            lines[i] = line
            break
    else:
        lines.insert(table, line)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, "\n".join(lines) + "\n")
