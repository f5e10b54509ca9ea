"""A backend without a model, for tests of the chat session and the Chat screen: it records what each prompt was
sent with and answers ``reply to <prompt>`` (one token a word); `count_tokens` counts words."""

from __future__ import annotations

from pathlib import Path

from workbench.models.base import AdapterInfo, Backend, Reply, ReplyStream
from workbench.models.session import ChatSession, ModelSpec, Variant
from workbench.models.target import BASE, CHECKPOINT, Target
from workbench.models.templates import ResolvedFormat, get_format


class WordStream(ReplyStream):
    def __init__(self, text: str, cancel=None) -> None:
        super().__init__(cancel)
        self.text = text

    def _read(self):
        for word in self.text.split(" "):
            self.tokens += 1
            yield word + " "
        self._reply = Reply(self.text, self.tokens, "eos")


class FakeBackend(Backend):
    name = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[list[dict]] = []  # every conversation a reply was asked for

    def add_adapter(self, name: str, source: str | Path, *, config=None) -> AdapterInfo:
        self._check_new(name)
        self._infos[name] = AdapterInfo(name, str(source), "xtuner-pth")
        return self._infos[name]

    def remove_adapter(self, name: str) -> None:
        self._infos.pop(name, None)

    def set_active(self, name: str | None) -> None:
        self._check_known(name)
        self._active = name

    def generate(self, conversations, template, settings, **kwargs) -> list[Reply]:
        self.sent += [list(c) for c in conversations]
        return [Reply(f"{self._active or 'base'} says {c[-1]['content']}", 3, "eos") for c in conversations]

    def stream(self, messages, template, settings, cancel=None) -> ReplyStream:
        self.sent.append(list(messages))
        return WordStream(f"reply to {messages[-1]['content']}", cancel)

    def count_tokens(self, text: str) -> int | None:
        return len(text.split())


def fake_session(conversations: Path, checkpoints: tuple[str, ...] = ("iter_60",), conversation=None,
                 base: str = "/nonexistent/tiny-world") -> ChatSession:
    """A `ChatSession` on a `FakeBackend`: the base and `checkpoints` as variants, saved under `conversations`."""
    backend = FakeBackend()
    variants = {"base": Variant(Target("base", BASE, base), backend)}
    for name in checkpoints:
        backend.add_adapter(name, f"/nonexistent/{name}.pth")
        variants[name] = Variant(Target(name, CHECKPOINT, f"/nonexistent/{name}.pth", None, None), backend, name)
    fmt = ResolvedFormat(get_format("internlm2_chat", ""), "training config", "internlm2_chat", None)
    from workbench.models.base import GenerationSettings

    spec = ModelSpec(base=base, backend="fake")
    return ChatSession(variants, fmt, spec, GenerationSettings(max_new_tokens=8), [], "base",
                       conversation=conversation, conversations=conversations)
