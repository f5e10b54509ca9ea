"""The lmdeploy backend's client side, against the local OpenAI-protocol server (same CLI and protocol)
started and stopped by `LmdeployBackend` itself."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workbench.errors import BadInput, OperationFailed
from workbench.models.base import GenerationSettings
from workbench.models.lmdeploy import LmdeployBackend, lmdeploy_chat_template
from workbench.models.openai_client import OpenAIClient
from workbench.models.openai_server import format_from_lmdeploy
from workbench.models.templates import get_format

GREEDY = GenerationSettings(max_new_tokens=32)
PROMPTS = ["Who are you?", "你是谁", "What is your name?", "What is the capital of Germany?"]
TEST_SERVER = "workbench.models.openai_server"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_until(cond, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


@pytest.fixture(scope="module")
def served(tiny_world, tiny_run_dir, converted_iter60, internlm2):
    backend = LmdeployBackend(tiny_world, python=sys.executable, entry=TEST_SERVER, start_timeout=300, timeout=30)
    backend.add_adapter("iter_50", tiny_run_dir / "iter_50.pth")  # exported to a PEFT folder for the server
    backend.add_adapter("iter_60_hf", converted_iter60)
    backend.start(internlm2)
    yield backend
    backend.close()


def test_chat_template_json_renders_like_lmdeploy_and_round_trips():
    """Our JSON, rendered by lmdeploy's BaseChatTemplate.messages2prompt logic, equals XTuner's prompt."""
    def lmdeploy_render(t, messages):  # lmdeploy/model.py BaseChatTemplate.messages2prompt, transcribed
        box = dict(user=t["user"], assistant=t["assistant"], system=t["system"])
        eox = dict(user=t["eoh"], assistant=t["eoa"] + t["separator"], system=t["eosys"])
        ret = ""
        if t["meta_instruction"] is not None and messages[0]["role"] != "system":
            ret += f"{t['system']}{t['meta_instruction']}{t['eosys']}"
        for m in messages:
            ret += f"{box[m['role']]}{m['content']}{eox[m['role']]}"
        return ret + t["assistant"]

    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "who are you?"}]
    for name in ("internlm2_chat", "default", "llama3_chat", "qwen_chat"):
        for system in ("", "Be brief."):
            fmt = get_format(name, system)
            tmpl = lmdeploy_chat_template(fmt)
            assert lmdeploy_render(tmpl, msgs) == fmt.render(msgs), (name, system)
            assert format_from_lmdeploy(tmpl).render(msgs) == fmt.render(msgs)


def test_streams_and_switches_adapters_by_name_like_the_in_process_backend(served, hf_backend, internlm2):
    assert served.client.models()[1:] == ["iter_50", "iter_60_hf"]
    for name, local in ((None, None), ("iter_60_hf", "iter_60_hf"), ("iter_50", "iter_50"), (None, None)):
        served.set_active(name)
        hf_backend.set_active(local)
        stream = served.stream([{"role": "user", "content": "Who are you?"}], internlm2, GREEDY)
        pieces = list(stream)
        expected = hf_backend.generate([[{"role": "user", "content": "Who are you?"}]], internlm2, GREEDY)[0]
        assert len(pieces) > 1 and "".join(pieces) == expected.text == stream.reply.text, name
    served.set_active("iter_60_hf")
    hf_backend.set_active("iter_60_hf")
    convs = [[{"role": "user", "content": p}] for p in PROMPTS]
    assert [r.text for r in served.generate(convs, internlm2, GREEDY)] == \
        [r.text for r in hf_backend.generate(convs, internlm2, GREEDY)]


def test_wrong_key_and_unknown_model_are_clear_errors(served, internlm2):
    # a key the server's argument parser cannot take for an option (a token starting with "-" once turned auth off)
    assert re.fullmatch(r"[0-9a-f]{48}", served.client.api_key)
    bad = OpenAIClient(served.client.base_url, "not-the-key", timeout=60)  # the kind of error, not the speed
    with pytest.raises(OperationFailed, match="rejected the API key"):
        bad.models()
    with pytest.raises(BadInput, match="The model `nope` does not exist"):
        served.client.chat_stream("nope", [{"role": "user", "content": "hi"}], GREEDY).wait()
    with pytest.raises(BadInput, match="does not serve an adapter named 'nope'"):
        super(LmdeployBackend, served).add_adapter("nope", "x")


def test_a_dead_or_silent_server_gives_a_clear_error_not_a_hang(tiny_world, internlm2):
    # nothing listening: refused at once
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(OperationFailed, match="refused the connection"):
        OpenAIClient(f"http://127.0.0.1:{port}", "k", timeout=30).models()
    assert time.monotonic() - t0 < 5
    # listening but never answering: fails after the client's timeout
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = OpenAIClient(f"http://127.0.0.1:{silent.getsockname()[1]}", "k", timeout=1)
        t0 = time.monotonic()
        with pytest.raises(OperationFailed, match="did not answer"):
            client.chat_stream("m", [{"role": "user", "content": "hi"}], GREEDY).wait()
        assert time.monotonic() - t0 < 10


def test_a_server_that_fails_to_start_reports_its_log(tiny_world, internlm2):
    backend = LmdeployBackend(tiny_world, python=sys.executable, entry="workbench.models.no_such_server",
                              start_timeout=60)
    with pytest.raises(OperationFailed, match=r"exited with status 1 while starting: .*No module named"):
        backend.start(internlm2)
    backend.close()


def test_lmdeploy_needs_its_python_environment(tiny_world, monkeypatch, wb_home):
    monkeypatch.delenv("WORKBENCH_LMDEPLOY_PYTHON", raising=False)
    with pytest.raises(BadInput, match="lmdeploy_python.*docs/models.md"):
        LmdeployBackend(tiny_world)


def test_server_is_stopped_with_its_children_on_close_and_when_workbench_is_killed(tiny_world, internlm2, tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from workbench.models.lmdeploy import LmdeployBackend
        from workbench.models.templates import get_format
        b = LmdeployBackend({str(tiny_world)!r}, python=sys.executable, entry={TEST_SERVER!r}, start_timeout=300)
        b.start(get_format("internlm2_chat"))
        print(b.pid, flush=True)
        sys.stdin.read()  # stay alive until killed
    """))
    owner = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        pid = int(owner.stdout.readline())
        assert alive(pid)
        owner.kill()  # SIGKILL: no exit handlers run; the server must still go (PR_SET_PDEATHSIG)
        owner.wait(timeout=30)
        assert wait_until(lambda: not alive(pid), 30), "the server outlived workbench"
    finally:
        if owner.poll() is None:
            owner.kill()


def test_close_stops_the_server(served):
    pid = served.pid
    assert pid and alive(pid)
    url = served.client.base_url
    served.close()
    assert wait_until(lambda: not alive(pid), 30)
    with pytest.raises(OperationFailed, match="refused the connection"):
        OpenAIClient(url, "k", timeout=5).models()


def test_a_chat_session_on_lmdeploy_starts_the_server_while_loading_with_the_settings_python(tiny_world, wb_home,
                                                                                              tmp_path):
    """The front end's settings name lmdeploy's Python (`spec_from`); `Backend.prepare` starts the server while the
    session loads, and says so, not on the first message."""
    from workbench.models.conversations import conversations_dir
    from workbench.models.session import open_session, spec_from
    from workbench.settings import Settings
    from workbench.targets import resolve_spec

    settings = Settings(lmdeploy_python=sys.executable, conversations_dir=str(tmp_path / "chats"))
    spec = spec_from(settings, base=str(tiny_world), backend="lmdeploy", template="internlm2_chat",
                     backend_options={"entry": TEST_SERVER, "start_timeout": 300, "timeout": 30})
    assert spec.backend_options["python"] == sys.executable
    notices: list[str] = []
    session = open_session(spec, GenerationSettings(max_new_tokens=8), notice=notices.append,
                           resolved=resolve_spec(spec, settings), conversations=conversations_dir(settings))
    try:
        backend = session.variants["base"].backend
        assert isinstance(backend, LmdeployBackend) and backend.running
        assert "starting the lmdeploy server…" in notices
        pid = backend.pid
        assert "".join(session.ask("中国的首都是哪里？")).strip() == "北京"
        assert backend.pid == pid  # the first message did not start (or restart) it
        assert session.last_reply is not None and session.last_reply.stop_reason in ("eos", "stop_word")
        assert list((tmp_path / "chats").glob("*.jsonl"))  # saved where the settings say
    finally:
        session.close()
