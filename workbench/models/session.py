"""A chat session: the models loaded once (base, adapters, checkpoints, a merged model), the chat format,
the history, and the saved conversation. The `workbench chat` REPL and the TUI's Chat screen both drive this.

Every answering thing is a `Variant`: a `workbench.models.target.Target` (base, an adapter, a checkpoint
``iter_N``, ``merged``) on its loaded backend; variants of one base share its loaded model, so switching costs
milliseconds. What to load is worked out before, by `workbench.targets.resolve_spec` (the run, the base, the
names, trust_remote_code); `open_session` loads it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.errors import BadInput
from workbench.models import conversations as convs
from workbench.models.base import Backend, GenerationSettings, Notice, Reply, get_backend, settings_options
from workbench.models.target import BASE, CHECKPOINT, MERGED, Target
from workbench.models.templates import ResolvedFormat, resolve_format


@dataclass
class Variant:
    """Something that answers: a `Target` on a loaded backend (`adapter`: the backend's adapter name; None = its base)."""

    target: Target
    backend: Backend
    adapter: str | None = None

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def kind(self) -> str:
        return self.target.kind

    @property
    def source(self) -> str:
        return str(self.target.source)


@dataclass
class ModelSpec:
    """What to load (the `workbench chat` flags; saved in a conversation's header to reopen it)."""

    base: str | None = None
    adapters: list[tuple[str, str]] = field(default_factory=list)  # (name, PEFT folder or iter_N.pth)
    config: str | None = None  # training config for .pth adapters outside a work dir
    run: str | None = None  # a registered run (id, name) or a work dir: its checkpoints become iter_N
    merged: str | None = None
    backend: str = "transformers"
    template: str | None = None
    system: str | None = None
    trust_remote_code: bool | None = None  # None: the training config's value, else the setting
    device: str = "auto"
    dtype: str = "auto"
    load_in_4bit: bool = False
    backend_options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["adapters"] = [list(a) for a in self.adapters]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["adapters"] = [tuple(a) for a in known.get("adapters", [])]
        return cls(**known)


def spec_from(settings, /, **overrides) -> ModelSpec:
    """A `ModelSpec` with the settings' ``default_backend`` and ``device``, then `overrides` (ModelSpec fields;
    None leaves a field as it is; unknown keys are ignored; adapters as ``[[name, path], ...]`` or pairs).
    `workbench chat` and the TUI's Chat screen both build their spec here."""
    fields = {"backend": settings.default_backend, "device": settings.device}
    fields.update({k: v for k, v in overrides.items() if v is not None and k in ModelSpec.__dataclass_fields__})
    spec = ModelSpec.from_dict(fields)
    spec.backend_options = {**settings_options(spec.backend, settings), **spec.backend_options}
    return spec


@dataclass(frozen=True)
class ContextInfo:
    """What the next prompt is sent with: the turns since the context was last cleared and their tokens
    (the messages' own tokens, without the template's markers; `estimated` when a backend could not count them
    and ~4 characters a token was assumed)."""

    turns: int
    tokens: int
    estimated: bool = False

    def describe(self) -> str:
        if not self.turns:
            return "context: empty (the next prompt is sent alone)"
        return (f"context: {self.turns} turn{'s' if self.turns != 1 else ''}, "
                f"{'~' if self.estimated else ''}{self.tokens:,} tokens")


class ChatSession:
    """Loaded variants + chat format + history. Not thread-safe: one caller drives it (a UI thread hands
    `ask` to a worker and reads pieces as they come)."""

    def __init__(self, variants: dict[str, Variant], fmt: ResolvedFormat, spec: ModelSpec,
                 settings: GenerationSettings, notices: list[str], current: str,
                 conversation: convs.Conversation | None = None, conversations: Path | None = None):
        self.variants = variants
        self.conversations = conversations  # where a new conversation is saved (`convs.conversations_dir`)
        self.format = fmt
        self.spec = spec
        self.settings = settings
        self.notices = notices
        self.current = current
        self.messages: list[dict] = []
        #: messages before this index are not sent any more (`clear_context`); the transcript keeps them
        self.context_start = 0
        self.last_reply: Reply | None = None
        self.train_config: str | None = None
        if conversation is not None:
            self._writer = convs.ConversationWriter.reopen(conversation)
            self.messages = [dict(m) for m in conversation.messages]
            self.context_start = min(conversation.context_start, len(self.messages))
            if conversation.system is not None:
                self.format.format = self.format.format.with_system(conversation.system)
        else:
            self._writer = self._new_writer()

    def _new_writer(self) -> convs.ConversationWriter:
        return convs.ConversationWriter({
            "spec": self.spec.to_dict(), "base": self.spec.base, "template": self.format.format.name,
            "system": self.format.format.system, "variants": list(self.variants),
        }, directory=self.conversations)

    @property
    def conversation_id(self) -> str:
        return self._writer.id

    @property
    def conversation_path(self) -> Path | None:
        return self._writer.path

    # variants -------------------------------------------------------------------------------------
    def switch(self, name: str) -> Variant:
        """Make `name` answer from now on (milliseconds: the base stays loaded)."""
        if name not in self.variants:
            raise BadInput(f"no variant {name!r} (loaded: {', '.join(self.variants)})")
        self.current = name
        return self._use(name)

    def _use(self, name: str) -> Variant:
        v = self.variants[name]
        v.backend.set_active(v.adapter)
        return v

    def load_adapter(self, target: Target) -> Variant:
        """Attach another adapter or checkpoint (`workbench.targets.as_target`) to the base model."""
        name = target.name
        if name in self.variants:
            raise BadInput(f"variant {name!r} is already loaded")
        base = next((v.backend for v in self.variants.values() if v.kind == BASE), None)
        if base is None:
            raise BadInput("no base model loaded to attach an adapter to (only a merged model)")
        assert target.source is not None  # an adapter or checkpoint target names its file
        base.add_adapter(name, target.source, config=target.config)
        self.variants[name] = Variant(target, base, name)
        return self.variants[name]

    # chatting -------------------------------------------------------------------------------------
    def ask(self, text: str, cancel: threading.Event | None = None) -> Iterator[str]:
        """Send `text` to the current variant; yields the answer piece by piece. When the iterator ends,
        the turn is in the history and the conversation file, and `last_reply` holds the `Reply`."""
        v = self._use(self.current)
        prompt = self.context_messages()
        prompt.append({"role": "user", "content": text})
        stream = v.backend.stream(prompt, self.format.format, self.settings, cancel=cancel)
        yield from stream
        reply = stream.reply
        self.last_reply = reply
        user: dict[str, object] = {"role": "user", "content": text}
        counted = v.backend.count_tokens(text)  # here, in the generating thread: the context line shows it
        if counted is not None:
            user["tokens"] = counted
        answer = {"role": "assistant", "content": reply.text, "variant": v.name, "stop_reason": reply.stop_reason,
                  "tokens": reply.tokens}
        self.messages += [user, answer]
        self._writer.append({"type": "message", **user})
        self._writer.append({"type": "message", **answer})

    def last_prompt(self) -> str | None:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), None)

    # the context: what each prompt is sent with ----------------------------------------------------
    def context_messages(self) -> list[dict]:
        """The history the next prompt is sent with ({"role", "content"}): every turn since the context was
        last cleared (`clear_context`)."""
        return [{"role": m["role"], "content": m["content"]} for m in self.messages[self.context_start:]]

    def context_info(self) -> ContextInfo:
        """How much context the next prompt carries (cheap: reads counts made while answering; a message
        without one is estimated, never tokenized here, as this runs on a UI thread)."""
        ctx = self.messages[self.context_start:]
        tokens, estimated = 0, False
        for m in ctx:
            n = m.get("tokens")
            if not isinstance(n, int):
                n, estimated = max(1, round(len(m["content"]) / 4)), True
            tokens += n
        return ContextInfo(sum(m["role"] == "user" for m in ctx), tokens, estimated)

    def clear_context(self) -> bool:
        """Stop sending the turns so far: the next prompt starts a fresh context in the same conversation
        (its file keeps every turn and records where the context was cleared, so a reopen clears it there
        too). False when the context was already empty."""
        if self.context_start >= len(self.messages):
            return False
        self.context_start = len(self.messages)
        self._writer.append({"type": "clear"})
        return True

    def compare(self, text: str | None = None, names: list[str] | None = None) -> list[tuple[str, Reply]]:
        """Answer one prompt (default: the last one sent) with every variant, on the same history.

        Greedy answers are what each variant says on its own; nothing is added to the history."""
        prompt_text = text or self.last_prompt()
        if prompt_text is None:
            raise BadInput("nothing to compare yet: send a prompt first (or /all PROMPT)")
        history = self.context_messages()
        # the last prompt: compare on the history before it (none when the context was cleared since)
        if text is None and any(m["role"] == "user" for m in history):
            last_user = max(i for i, m in enumerate(history) if m["role"] == "user")
            history = history[:last_user]
        conv = [*history, {"role": "user", "content": prompt_text}]
        results = []
        for name in names or list(self.variants):
            v = self._use(name)
            (reply,) = v.backend.generate([conv], self.format.format, self.settings)
            results.append((name, reply))
        self._use(self.current)
        self._writer.append({"type": "compare", "prompt": prompt_text, "answers": [
            {"variant": n, "text": r.text, "stop_reason": r.stop_reason} for n, r in results]})
        return results

    def reset(self) -> None:
        """Forget the history and start a new conversation (the old one stays saved)."""
        self.messages = []
        self.context_start = 0
        self._writer = self._new_writer()

    def set_system(self, system: str) -> None:
        self.format.format = self.format.format.with_system(system)
        self._writer.append({"type": "system", "system": system})

    def save(self, title: str | None = None) -> Path:
        """Name the conversation (it is saved as it goes); returns its file."""
        return self._writer.append({"type": "title", "title": title or ""})

    def close(self) -> None:
        seen = set()
        for v in self.variants.values():
            if id(v.backend) not in seen:
                seen.add(id(v.backend))
                v.backend.close()


def open_session(spec: ModelSpec, settings: GenerationSettings | None = None, notice: Notice | None = None,
                 conversation: convs.Conversation | None = None, *, resolved,
                 conversations: Path | None = None) -> ChatSession:
    """Load what `resolved` (`workbench.targets.resolve_spec(spec, ...)`: the base, the targets, the training
    config, trust_remote_code) names and return a session ready to chat. Tells `notice` what it did: where the base
    and trust_remote_code came from, the template in use and where it came from, warnings (template differs from
    training). `conversations`: the folder new conversations are saved in (`convs.conversations_dir(settings)`)."""
    say = notice or (lambda msg: None)
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        say(msg)

    for line in [*resolved.notes, *resolved.warnings]:  # warnings: damaged checkpoints left out, by name
        note(line)
    train_cfg_path = resolved.config
    base = resolved.base
    options = dict(spec.backend_options, trust_remote_code=resolved.trust)
    if spec.backend == "transformers":
        options.update(device=spec.device, dtype=spec.dtype, load_in_4bit=spec.load_in_4bit)
    fmt = resolve_format(spec.template, spec.system, train_cfg_path, base or spec.merged)
    note(f"template: {fmt.format.describe()} (from {fmt.source}"
         + (f" {train_cfg_path}" if fmt.source == "training config" else "") + ")")
    if fmt.warning:
        note(f"warning: {fmt.warning}")

    variants: dict[str, Variant] = {}
    current = None
    adapters = {name for name, _ in spec.adapters}
    try:
        b = get_backend(spec.backend, base, **options) if base is not None else None
        for t in resolved.targets:
            if t.kind == MERGED:
                variants[t.name] = Variant(t, get_backend(spec.backend, t.source, **options))
                continue
            if t.kind == BASE:
                assert b is not None  # a base target means a base was given
                variants[t.name] = Variant(t, b)
                continue
            if b is None:
                raise BadInput(f"{t.name}: no base model loaded to attach it to (only a merged model)")
            b.add_adapter(t.name, t.source, config=t.config)
            variants[t.name] = Variant(t, b, t.name)
        # the first adapter given, else the run's last checkpoint, else the merged model, else the base
        given = [t.name for t in resolved.targets if t.name in adapters]
        checkpoints = [t.name for t in resolved.targets if t.kind == CHECKPOINT and t.name not in adapters]
        merged = [t.name for t in resolved.targets if t.kind == MERGED]
        current = (given or checkpoints[-1:] or merged or [None])[0]
        for b in {id(v.backend): v.backend for v in variants.values()}.values():
            if b.cpu_note:
                note(b.cpu_note)
            b.prepare(fmt.format, notice=say)  # start a server, compile a decode step: now, not on the first message
    except BaseException:
        for v in {id(v.backend): v for v in variants.values()}.values():
            v.backend.close()
        raise
    session = ChatSession(variants, fmt, spec, settings or GenerationSettings(), notes, current or "base",
                          conversation=conversation, conversations=conversations)
    session.train_config = str(train_cfg_path) if train_cfg_path else None
    session.switch(session.current)
    return session


_HASH = re.compile(r"[0-9a-f]{12,}")


def model_label(path: str | Path | None) -> str:
    """One name for a model folder, however it was reached: a symlink (the tiny world's ``current``) is followed,
    and a content-hash folder is named by its parent with the hash's start (``tiny-world@56383dac``); a hub
    snapshot by its repo id. A name that is not a folder here (a hub id) is shown as given."""
    if not path:
        return ""
    p = Path(str(path)).expanduser()
    if not p.exists():
        return str(path).rstrip("/")
    p = p.resolve()
    parent = p.parent
    if parent.name == "snapshots" and parent.parent.name.startswith("models--"):
        return parent.parent.name[len("models--"):].replace("--", "/")
    if _HASH.fullmatch(p.name):
        return f"{parent.name}@{p.name[:8]}"
    return p.name


def refit_format(session: ChatSession, template: str | None = None, system: str | None = None) -> None:
    """Change a session's chat template and/or system prompt; the warning against training is recomputed."""
    from workbench.models.templates import resolve_format

    fmt = session.format
    name = template or (fmt.format.name if fmt.source in ("flag", "chosen") else session.spec.template)
    # a template picked now reads "(chosen)"; one kept from --template still reads "(flag)"
    source = "chosen" if template or fmt.source == "chosen" else "flag"
    new = resolve_format(name, system if system is not None else fmt.format.system, session.train_config,
                         session.spec.base or session.spec.merged, explicit_source=source)
    session.format = new
    if system is not None:
        session.set_system(system)
