"""A chat session: the models loaded once (base, adapters, checkpoints, a merged model), the chat format,
the history, and the saved conversation. The `workbench chat` REPL and the TUI's Chat screen both drive this.

Every answering thing is a `Variant` (base, an adapter, a checkpoint ``iter_N``, ``merged``); variants of one
base share its loaded model, so switching costs milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.errors import BadInput
from workbench.models import conversations as convs
from workbench.models import xtuner_ckpt
from workbench.models.base import Backend, GenerationSettings, Reply, get_backend
from workbench.models.templates import ResolvedFormat, resolve_format

Notice = Callable[[str], None]


@dataclass
class Variant:
    """Something that answers: ``base``, an adapter, a checkpoint ``iter_N``, or ``merged``."""

    name: str
    kind: str  # "base" | "adapter" | "checkpoint" | "merged"
    source: str
    backend: Backend
    adapter: str | None = None  # the backend's adapter name; None = its base


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


def resolve_work_dir(run: str) -> Path:
    """A run reference (registered id, id prefix or name, or a work dir path) to its work dir."""
    path = Path(run).expanduser()
    if path.is_dir() and (xtuner_ckpt.list_checkpoints(path) or any(path.glob("*.py"))):
        return path
    try:
        from workbench.runs import registry
    except ImportError:
        raise BadInput(f"--run {run!r}: not a work dir (no iter_N.pth or config copy in it)") from None
    return Path(registry.get(run).work_dir)


def _training_config(spec: ModelSpec, work_dir: Path | None) -> Path | None:
    """The XTuner config that produced the adapters: the run's copy, --config, or one beside an adapter."""
    if work_dir is not None:
        cfg = xtuner_ckpt.work_dir_config(work_dir)
        if cfg:
            return cfg
    if spec.config:
        return Path(spec.config)
    for _, src in spec.adapters:
        p = Path(src).expanduser()
        if xtuner_ckpt.is_checkpoint(p):
            cfg = xtuner_ckpt.work_dir_config(p.parent)
        else:  # `xtuner convert pth_to_hf` leaves the config in the adapter folder
            cfg = p / "xtuner_config.py" if (p / "xtuner_config.py").is_file() else None
        if cfg:
            return cfg
    return None


class ChatSession:
    """Loaded variants + chat format + history. Not thread-safe: one caller drives it (a UI thread hands
    `ask` to a worker and reads pieces as they come)."""

    def __init__(self, variants: dict[str, Variant], fmt: ResolvedFormat, spec: ModelSpec,
                 settings: GenerationSettings, notices: list[str], current: str,
                 conversation: convs.Conversation | None = None):
        self.variants = variants
        self.format = fmt
        self.spec = spec
        self.settings = settings
        self.notices = notices
        self.current = current
        self.messages: list[dict] = []
        self.last_reply: Reply | None = None
        self.train_config: str | None = None
        if conversation is not None:
            self._writer = convs.ConversationWriter.reopen(conversation)
            self.messages = [dict(m) for m in conversation.messages]
            if conversation.system is not None:
                self.format.format = self.format.format.with_system(conversation.system)
        else:
            self._writer = self._new_writer()

    def _new_writer(self) -> convs.ConversationWriter:
        return convs.ConversationWriter({
            "spec": self.spec.to_dict(), "base": self.spec.base, "template": self.format.format.name,
            "system": self.format.format.system, "variants": list(self.variants),
        })

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

    def load_adapter(self, name: str, source: str, config: str | None = None) -> Variant:
        """Attach another adapter or checkpoint to the base model, as variant `name`."""
        if name in self.variants:
            raise BadInput(f"variant {name!r} is already loaded")
        base = next((v.backend for v in self.variants.values() if v.kind != "merged"), None)
        if base is None:
            raise BadInput("no base model loaded to attach an adapter to (only a merged model)")
        base.add_adapter(name, source, config=config)
        kind = "checkpoint" if xtuner_ckpt.is_checkpoint(source) else "adapter"
        self.variants[name] = Variant(name, kind, str(source), base, name)
        return self.variants[name]

    # chatting -------------------------------------------------------------------------------------
    def ask(self, text: str, cancel: threading.Event | None = None) -> Iterator[str]:
        """Send `text` to the current variant; yields the answer piece by piece. When the iterator ends,
        the turn is in the history and the conversation file, and `last_reply` holds the `Reply`."""
        v = self._use(self.current)
        prompt = [{"role": m["role"], "content": m["content"]} for m in self.messages]
        prompt.append({"role": "user", "content": text})
        stream = v.backend.stream(prompt, self.format.format, self.settings, cancel=cancel)
        yield from stream
        reply = stream.reply
        self.last_reply = reply
        user = {"role": "user", "content": text}
        answer = {"role": "assistant", "content": reply.text, "variant": v.name, "stop_reason": reply.stop_reason,
                  "tokens": reply.tokens}
        self.messages += [user, answer]
        self._writer.append({"type": "message", **user})
        self._writer.append({"type": "message", **answer})

    def last_prompt(self) -> str | None:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), None)

    def compare(self, text: str | None = None, names: list[str] | None = None) -> list[tuple[str, Reply]]:
        """Answer one prompt (default: the last one sent) with every variant, on the same history.

        Greedy answers are what each variant says on its own; nothing is added to the history."""
        prompt_text = text or self.last_prompt()
        if prompt_text is None:
            raise BadInput("nothing to compare yet: send a prompt first (or /all PROMPT)")
        history = [{"role": m["role"], "content": m["content"]} for m in self.messages]
        if text is None:  # the last prompt: compare on the history before it
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
                 conversation: convs.Conversation | None = None) -> ChatSession:
    """Load what `spec` names and return a session ready to chat. Tells `notice` what it did: the template
    in use and where it came from, warnings (template differs from training), trust_remote_code's origin."""
    from workbench import settings as user_settings

    say = notice or (lambda msg: None)
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        say(msg)

    work_dir = resolve_work_dir(spec.run) if spec.run else None
    train_cfg_path = _training_config(spec, work_dir)
    train = xtuner_ckpt.read_config(train_cfg_path) if train_cfg_path else None
    base = spec.base
    if base is None and spec.merged is None:
        if train and train.base_model and Path(train.base_model).expanduser().is_dir():
            base = train.base_model
            note(f"base: {base} (from the training config {train_cfg_path})")
        else:
            raise BadInput("BASE: give the base model folder (or --merged PATH)"
                           + (f"; the training config names {train.base_model!r}, which is not here"
                              if train and train.base_model else ""))
    trust = spec.trust_remote_code
    if trust is None and train is not None and train.trust_remote_code is not None:
        trust = train.trust_remote_code
        if trust:
            note(f"trust_remote_code: on (set by the training config {train_cfg_path})")
    if trust is None:
        trust = user_settings.load().trust_remote_code
        if trust:
            note("trust_remote_code: on (settings.toml)")
    options = dict(spec.backend_options, trust_remote_code=trust)
    if spec.backend == "transformers":
        options.update(device=spec.device, dtype=spec.dtype, load_in_4bit=spec.load_in_4bit)
    fmt = resolve_format(spec.template, spec.system, train_cfg_path, base or spec.merged)
    note(f"template: {fmt.format.describe()} (from {fmt.source}"
         + (f" {train_cfg_path}" if fmt.source == "training config" else "") + ")")
    if fmt.warning:
        note(f"warning: {fmt.warning}")

    variants: dict[str, Variant] = {}
    current = None
    try:
        if base is not None:
            b = get_backend(spec.backend, base, **options)
            variants["base"] = Variant("base", "base", str(base), b, None)
            for name, src in spec.adapters:
                if name in variants:
                    raise BadInput(f"--adapter {name}: the name is used twice")
                b.add_adapter(name, src, config=spec.config)
                kind = "checkpoint" if xtuner_ckpt.is_checkpoint(src) else "adapter"
                variants[name] = Variant(name, kind, str(src), b, name)
                current = current or name
            if work_dir is not None:
                ckpts = xtuner_ckpt.list_checkpoints(work_dir)
                if not ckpts:
                    raise BadInput(f"--run {spec.run}: no iter_N.pth checkpoints in {work_dir}")
                for ck in ckpts:
                    name = ck.stem  # iter_N
                    if name in variants:
                        continue
                    b.add_adapter(name, ck, config=train_cfg_path)
                    variants[name] = Variant(name, "checkpoint", str(ck), b, name)
                current = current or ckpts[-1].stem
        if spec.merged is not None:
            m = get_backend(spec.backend, spec.merged, **options)
            variants["merged"] = Variant("merged", "merged", str(spec.merged), m, None)
            current = current or "merged"
        for b in {id(v.backend): v.backend for v in variants.values()}.values():
            if getattr(b, "cpu_note", None):
                note(b.cpu_note)
            if hasattr(b, "start"):  # a server backend: pay its start-up now, not on the first message
                say(f"starting the {b.name} server…")
                b.start(fmt.format)
            if getattr(b, "compiles", False):  # the GPU's compiled decode step: compile now, not on the first message
                say("compiling the decode step (once per process; about 45 s for a 1.8B model on an H100)…")
                b.warm_up(fmt.format)
    except BaseException:
        for v in {id(v.backend): v for v in variants.values()}.values():
            v.backend.close()
        raise
    session = ChatSession(variants, fmt, spec, settings or GenerationSettings(), notes, current or "base",
                          conversation=conversation)
    session.train_config = str(train_cfg_path) if train_cfg_path else None
    session.switch(session.current)
    return session
