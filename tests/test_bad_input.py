"""An input that is not what it claims is one line naming the path, exit 2, nothing written, and nothing
heavy done first (issue 13). Before: `inspect` printed a table and "no warnings" for an empty .py or a JSON
file, `eval --responses` on a binary file ended in a UnicodeDecodeError traceback, and `chat` printed
"loading…" and a template warning before saying a path was missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest


def wb(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, WORKBENCH_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "workbench", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=cwd, stdin=subprocess.DEVNULL)


def one_line(proc, *fragments: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("workbench: error: "), proc.stderr
    assert proc.stdout == ""
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path) -> SimpleNamespace:
    empty = tmp_path / "empty.py"
    empty.write_text("")
    as_json = tmp_path / "cfg.json"
    as_json.write_text(json.dumps({"model": {}, "train_dataloader": {}}))
    binary = tmp_path / "blob.py"
    binary.write_bytes(bytes(range(256)) * 40)
    folder = tmp_path / "folder"
    folder.mkdir()
    return SimpleNamespace(empty=empty, json=as_json, binary=binary, folder=folder, root=tmp_path)


def test_inspect_refuses_what_is_not_an_xtuner_config(wb_home, files):
    one_line(wb("inspect", str(files.empty), home=wb_home), str(files.empty), "not an XTuner config",
             "defines no model")
    one_line(wb("inspect", str(files.json), home=wb_home), str(files.json), "not an XTuner config", ".py")
    one_line(wb("inspect", str(files.binary), home=wb_home), str(files.binary), "binary")
    one_line(wb("inspect", str(files.folder), home=wb_home), str(files.folder), "a folder, not a config file")


def test_train_refuses_them_too_and_writes_nothing(wb_home, files):
    for path in (files.empty, files.json, files.folder):
        one_line(wb("train", str(path), home=wb_home, cwd=files.root), str(path.name))
    assert not (files.root / "work_dirs").exists() and not wb_home.exists()


def test_eval_responses_refuses_a_binary_file_and_a_folder(wb_home, files):
    line = one_line(wb("eval", "--responses", str(files.binary), home=wb_home), f"{files.binary}:2",  # byte 10 is a newline; byte 128 is not UTF-8
                    "not a responses file")
    assert "Traceback" not in line
    one_line(wb("eval", "--responses", str(files.folder), home=wb_home), str(files.folder), "a folder")


def test_chat_checks_every_path_before_loading(wb_home, files, tiny_world):
    cases = [
        (["chat", "/nonexistent"], "BASE /nonexistent: no such model folder"),
        (["chat", str(files.empty)], "a file, not a model folder"),
        (["chat", str(files.folder)], "not a model folder (no config.json)"),
        (["chat", str(tiny_world), "--adapter", "me=/missing"], "--adapter me=/missing: no such adapter"),
        (["chat", str(tiny_world), "--adapter", f"me={tiny_world}"], "a full model, not an adapter"),
        (["chat", str(tiny_world), "--adapter", f"me={files.folder}"], "not a PEFT adapter folder"),
        (["chat", str(tiny_world), "--adapter", f"me={files.json}"], "a file, not an adapter"),
        (["chat", str(tiny_world), "--merged", "/nonexistent/merged"], "--merged /nonexistent/merged"),
    ]
    for args, fragment in cases:
        proc = wb(*args, home=wb_home)
        one_line(proc, fragment)
        assert "loading" not in proc.stderr


def test_the_eval_cache_key_is_the_same_for_none_and_auto():
    # The TUI and the demo pass device/dtype None, `workbench eval` passes "auto": one cache for all.
    from workbench.evals.cache import cache_key
    from workbench.evals.sweep import _numerics

    tui = _numerics(SimpleNamespace(backend="transformers", backend_options={"device": None, "dtype": None}))
    cli = _numerics(SimpleNamespace(backend="transformers", backend_options={"device": "auto", "dtype": "auto"}))
    assert tui == cli and tui["device"] in ("cpu", "cuda") and tui["dtype"] in ("float32", "bfloat16", "float16")
    assert cache_key(model="m", numerics=tui) == cache_key(model="m", numerics=cli)
    explicit = {"device": tui["device"], "dtype": tui["dtype"]}  # what "auto" resolves to here: also the same
    assert _numerics(SimpleNamespace(backend="transformers", backend_options=explicit)) == cli
    other = "float32" if tui["dtype"] != "float32" else "bfloat16"
    assert _numerics(SimpleNamespace(backend="transformers", backend_options={"dtype": other})) != cli
