"""`workbench chat` driven like a user would: a real subprocess reading lines from stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from workbench.models.base import GenerationSettings


def run_chat(args: list[str], lines: list[str], home, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, WORKBENCH_HOME=str(home), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "workbench", *args], input="".join(f"{x}\n" for x in lines),
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_chat_repl_switches_compares_saves_and_reopens(tiny_run_dir, hf_backend, internlm2, wb_home):
    hf_backend.set_active("iter_60")
    expected = hf_backend.generate([[{"role": "user", "content": "Who are you?"}]], internlm2,
                                   GenerationSettings(max_new_tokens=256))[0].text
    # after /use base the conversation goes on: the base gets the first turn as history. (What the 3M-parameter
    # model answers to a second turn differs between CPUs, so the answer is the backend's, not a fact.)
    hf_backend.set_active(None)
    history = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": expected}]
    expected_base = hf_backend.generate([[*history, {"role": "user", "content": "What is the capital of Germany?"}]],
                                        internlm2, GenerationSettings(max_new_tokens=256))[0].text

    p = run_chat(["chat", "--run", str(tiny_run_dir)],
                 ["Who are you?", "/models", "/use base", "What is the capital of Germany?", "/all", "/use nope",
                  "/save my first chat", "/quit"], wb_home)
    assert p.returncode == 0, p.stderr[-3000:]
    out, err = p.stdout, p.stderr
    # the run's config gave the base and the template; its checkpoints are variants, the last one answers
    assert "template: internlm2_chat (from training config" in err
    assert f"[iter_60] {expected}\n" in out
    assert "* iter_60" in out and "  iter_10" in out and "  base" in out
    assert f"[base] {expected_base}\n" in out
    table = [line for line in out.splitlines() if " │ " in line]
    ckpts = sorted((p.stem for p in tiny_run_dir.glob("iter_*.pth")), key=lambda s: int(s.split("_")[1]))
    assert [row.split(" │ ")[0].strip() for row in table] == ["base", *ckpts]
    assert "error: no variant 'nope'" in err
    assert "saved conversation" in out

    listing = run_chat(["conversations", "--json"], [], wb_home)
    (conv,) = json.loads(listing.stdout)
    assert conv["title"] == "my first chat" and conv["turns"] == 2 and conv["variants"] == ["base", "iter_60"]

    # reopen it under another template than training's: a warning, and the history continues in the same file
    p = run_chat(["chat", "--open", conv["id"], "--template", "default"], ["Who are you?", "/quit"], wb_home)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "warning: template 'default' differs from 'internlm2_chat'" in p.stderr
    assert f"reopened conversation {conv['id']} (2 turns)" in p.stderr
    shown = run_chat(["conversations", conv["id"], "--json"], [], wb_home)
    data = json.loads(shown.stdout)
    assert data["turns"] == 3 and [m["role"] for m in data["messages"]] == ["user", "assistant"] * 3
    assert data["comparisons"][0]["prompt"] == "What is the capital of Germany?"


def test_chat_bad_flags_are_one_line_errors(wb_home, tmp_path):
    p = run_chat(["chat"], [], wb_home)
    assert p.returncode == 2 and "workbench: error: BASE: give a base model folder" in p.stderr
    p = run_chat(["chat", str(tmp_path), "--adapter", "oops"], [], wb_home)
    assert p.returncode == 2 and "--adapter 'oops': expected NAME=PATH" in p.stderr
    p = run_chat(["chat", str(tmp_path)], [], wb_home)
    assert p.returncode == 2 and "not a model folder (no config.json)" in p.stderr


def test_ctrl_c_stops_a_reply_and_the_repl_goes_on(tiny_world, wb_home):
    """Ctrl-C (SIGINT) during a long reply cancels that reply, not the session: the next command is answered."""
    import queue
    import re
    import signal
    import threading

    env = dict(os.environ, WORKBENCH_HOME=str(wb_home), PYTHONUNBUFFERED="1")
    # a high temperature samples noise until max_new_tokens: a reply long enough to interrupt
    p = subprocess.Popen([sys.executable, "-m", "workbench", "chat", str(tiny_world), "--temperature", "5",
                          "--seed", "1", "--max-new-tokens", "100000", "--repetition-penalty", "1.3"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    chars: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [chars.put(c) for c in iter(lambda: p.stdout.read(1), "")], daemon=True)
    reader.start()
    try:
        p.stdin.write("Tell me everything\n")
        p.stdin.flush()
        got = ""
        while "[base] " not in got or len(got.split("[base] ")[-1]) < 20:  # the reply is streaming
            got += chars.get(timeout=120)
        p.send_signal(signal.SIGINT)
        p.stdin.write("/list\n/quit\n")  # the REPL is still there and answers
        p.stdin.close()
        p.wait(timeout=120)
        reader.join(timeout=30)
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    while not chars.empty():
        got += chars.get()
    assert p.returncode == 0, err[-2000:]
    assert "[cancelled]" in err
    assert re.search(r"^\*\s+base\s", got.split("[base] ")[-1], re.M), got[-2000:]  # /list, after the reply
