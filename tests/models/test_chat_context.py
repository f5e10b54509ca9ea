"""The chat context (issue 16, item 9): what each prompt is sent with, shown, and cleared in the same conversation;
and the small things of item 10 that live in the models core (the template "chosen" in the TUI, one model label)."""

from __future__ import annotations

import os

from workbench.models import conversations as convs
from workbench.models.session import model_label, refit_format

from .fake_backend import fake_session


def test_each_prompt_is_sent_with_the_context_since_it_was_last_cleared(tmp_path):
    s = fake_session(tmp_path)
    backend = s.variants["base"].backend
    list(s.ask("What is the capital of India?"))
    list(s.ask("Who are you?"))
    assert [m["content"] for m in backend.sent[-1]] == [
        "What is the capital of India?", "reply to What is the capital of India?", "Who are you?"]
    info = s.context_info()
    # the backend counted both prompts (words here) and both replies (their tokens)
    assert (info.turns, info.tokens, info.estimated) == (2, 6 + 8 + 3 + 5, False)
    assert info.describe() == "context: 2 turns, 22 tokens"

    assert s.clear_context() is True
    assert s.context_info().turns == 0 and "empty" in s.context_info().describe()
    assert s.clear_context() is False  # already empty
    list(s.ask("Who are you?"))
    assert backend.sent[-1] == [{"role": "user", "content": "Who are you?"}]  # sent alone
    assert len(s.messages) == 6  # the conversation keeps every turn
    # a comparison is made on the context too
    s.compare("And you?", ["base", "iter_60"])
    assert [m["content"] for m in backend.sent[-1]] == ["Who are you?", "reply to Who are you?", "And you?"]

    # the file records where the context was cleared: a reopen sends the same context
    conv = convs.find(s.conversation_id, tmp_path)
    assert conv.context_start == 4 and len(conv.messages) == 6
    reopened = fake_session(tmp_path, conversation=conv)
    assert reopened.context_start == 4 and reopened.context_info().turns == 1
    assert "context cleared" in convs.to_markdown(conv)


def test_a_new_conversation_starts_with_an_empty_context(tmp_path):
    s = fake_session(tmp_path)
    list(s.ask("hi"))
    s.clear_context()
    list(s.ask("hello"))
    s.reset()
    assert s.context_start == 0 and s.context_info().turns == 0


def test_a_reopened_conversation_without_counts_is_estimated(tmp_path):
    w = convs.ConversationWriter({"spec": {}}, directory=tmp_path)
    w.append({"type": "message", "role": "user", "content": "x" * 40})
    w.append({"type": "message", "role": "assistant", "content": "ok", "tokens": 1})
    s = fake_session(tmp_path, conversation=convs.find(w.id, tmp_path))
    info = s.context_info()
    assert (info.turns, info.tokens, info.estimated) == (1, 11, True)
    assert info.describe() == "context: 1 turn, ~11 tokens"


def test_a_template_picked_in_the_tui_reads_chosen_not_flag(tmp_path):
    s = fake_session(tmp_path)
    refit_format(s, template="default")
    assert s.format.source == "chosen"
    refit_format(s, system="Be brief.")  # the template stays the chosen one
    assert (s.format.format.name, s.format.source) == ("default", "chosen")


def test_one_label_for_a_model_folder_reached_through_current_or_its_hash(tmp_path):
    world = tmp_path / "tiny-world"
    build = world / "56383dac736000f7"
    build.mkdir(parents=True)
    os.symlink(build.name, world / "current")
    assert model_label(world / "current") == model_label(build) == "tiny-world@56383dac"
    assert model_label(str(build) + "/") == "tiny-world@56383dac"
    snap = tmp_path / "hub" / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    assert model_label(snap) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    plain = tmp_path / "my-model"
    plain.mkdir()
    assert model_label(plain) == "my-model"
    assert model_label("internlm/internlm2-chat-1_8b") == "internlm/internlm2-chat-1_8b"  # a hub id, as given


def test_cli_chat_clear_context_and_a_bare_quit_leaves(tmp_path, monkeypatch, capsys):
    import io

    from workbench.commands.chat import HELP, Repl

    s = fake_session(tmp_path)
    backend = s.variants["base"].backend
    lines = ["capital of India?", "/context", "/clear", "/clear", "who are you?", "/context", "quit", "never sent"]
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{x}\n" for x in lines)))
    out = io.StringIO()
    Repl(s, out=out).loop()
    text = out.getvalue()
    assert "context: 1 turn, 8 tokens" in text
    assert "context cleared: the next prompt is sent alone" in text and "the context is already empty" in text
    assert backend.sent[-1] == [{"role": "user", "content": "who are you?"}]
    assert all(m[-1]["content"] not in ("quit", "never sent") for m in backend.sent)  # a bare quit leaves
    assert "/clear" in HELP and "bare `quit` or `exit`" in HELP

    monkeypatch.setattr("sys.stdin", io.StringIO("EXIT\nhello\n"))
    Repl(s, out=io.StringIO()).loop()
    assert backend.sent[-1][-1]["content"] == "who are you?"  # nothing sent after EXIT
