"""Saved chat conversations: one JSONL file each under ``data_dir()/conversations`` (or the
``conversations_dir`` setting).

Append-only: every turn is one line written and flushed as it happens, so a crash or a dropped SSH session
loses at most the reply being written, and a half-written last line is skipped when reading. Records:
``header`` (what was loaded: base, adapters, template), ``message`` (user/assistant, with the variant that
answered), ``compare`` (one prompt answered by every variant), ``title``, ``system``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import BadInput

if TYPE_CHECKING:
    from workbench.settings import Settings


def conversations_dir(settings: Settings | None) -> Path:
    """Where conversations are kept (created on first use): the front end's ``conversations_dir`` setting, else
    ``data_dir()/conversations`` (also when `settings` is None)."""
    from workbench.paths import data_dir

    custom = settings.conversations_dir if settings is not None else ""
    path = Path(custom).expanduser() if custom else data_dir() / "conversations"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Conversation:
    """A conversation as read back: its header, messages (the chat history) and comparisons."""

    id: str
    path: Path
    created: float
    header: dict
    messages: list[dict] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    title: str = ""
    system: str | None = None
    updated: float = 0.0
    #: messages before this index are no longer sent to the model (the context was cleared there)
    context_start: int = 0

    @property
    def display_title(self) -> str:
        if self.title:
            return self.title
        first = next((m["content"] for m in self.messages if m.get("role") == "user"), "")
        return first[:50] or "(empty)"

    def history(self) -> list[dict]:
        """The messages as a model sees them ({"role", "content"} only)."""
        return [{"role": m["role"], "content": m["content"]} for m in self.messages]

    def summary(self) -> dict:
        """The `workbench conversations --json` row."""
        return {
            "id": self.id, "title": self.display_title, "turns": sum(m["role"] == "user" for m in self.messages),
            "comparisons": len(self.comparisons), "variants": sorted({m.get("variant") for m in self.messages
                                                                       if m.get("variant")}),
            "template": self.header.get("template"), "created": self.created, "updated": self.updated,
            "path": str(self.path),
        }


class ConversationWriter:
    """Appends the records of one conversation; the file appears with the first message, in `directory`
    (default: `conversations_dir` without settings)."""

    def __init__(self, header: dict, conv_id: str | None = None, directory: Path | None = None):
        self.id = conv_id or time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        self.header = {"type": "header", "id": self.id, "created": time.time(), **header}
        self.dir = directory
        self._exists = False
        self.path: Path | None = None

    @classmethod
    def reopen(cls, conv: Conversation) -> ConversationWriter:
        w = cls(conv.header, conv.id, conv.path.parent)
        w.header = conv.header
        w.path, w._exists = conv.path, True
        return w

    def append(self, record: dict) -> Path:
        if self.path is None:
            self.path = (self.dir or conversations_dir(None)) / f"{self.id}.jsonl"
            self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        if not self._exists:
            lines.append(self.header)
            self._exists = True
        lines.append({**record, "ts": time.time()})
        with open(self.path, "a", encoding="utf-8") as f:
            for r in lines:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return self.path


def read(path: str | Path) -> Conversation:
    """Read one conversation file (a torn last line is skipped)."""
    path = Path(path)
    conv = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read conversation ({exc.strerror})") from None
    for i, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except ValueError:
            if i == len(lines):
                break  # written while the process died
            raise BadInput(f"{path}:{i}: not a JSON record") from None
        kind = rec.get("type")
        if kind == "header":
            conv = Conversation(id=rec.get("id", path.stem), path=path, created=rec.get("created", 0.0),
                                header=rec, updated=rec.get("created", 0.0), system=rec.get("system"))
            continue
        if conv is None:
            raise BadInput(f"{path}:{i}: conversation file does not start with a header")
        conv.updated = max(conv.updated, rec.get("ts", 0.0))
        if kind == "message":
            conv.messages.append({k: v for k, v in rec.items() if k not in ("type",)})
        elif kind == "compare":
            conv.comparisons.append(rec)
        elif kind == "title":
            conv.title = rec.get("title", "")
        elif kind == "system":
            conv.system = rec.get("system")
        elif kind == "reset":
            conv.messages.clear()
            conv.context_start = 0
        elif kind == "clear":  # the context was cleared: later turns do not see the earlier ones
            conv.context_start = len(conv.messages)
    if conv is None:
        raise BadInput(f"{path}: empty conversation file")
    return conv


def list_all(folder: Path) -> list[Conversation]:
    """Every saved conversation in `folder` (`conversations_dir`), most recently updated first (unreadable files
    are skipped)."""
    out = []
    for p in folder.glob("*.jsonl"):
        try:
            out.append(read(p))
        except BadInput:
            continue
    return sorted(out, key=lambda c: c.updated, reverse=True)


def find(ref: str, folder: Path) -> Conversation:
    """A conversation by file path, or by id or unique id prefix in `folder` (`conversations_dir`)."""
    p = Path(ref).expanduser()
    if p.suffix == ".jsonl" and p.is_file():
        return read(p)
    exact = folder / f"{ref}.jsonl"
    if exact.is_file():
        return read(exact)
    matches = sorted(folder.glob(f"{ref}*.jsonl"))
    if len(matches) == 1:
        return read(matches[0])
    if len(matches) > 1:
        raise BadInput(f"conversation {ref!r} is ambiguous: {', '.join(m.stem for m in matches[:5])}")
    raise BadInput(f"no conversation {ref!r} in {folder} (see `workbench conversations`)")


def to_markdown(conv: Conversation) -> str:
    """A readable transcript."""
    h = conv.header
    out = [f"# {conv.display_title}", "", f"- id: {conv.id}", f"- base: {h.get('base') or '-'}",
           f"- template: {h.get('template')}" + (f" (system: {conv.system!r})" if conv.system else ""), ""]
    for i, m in enumerate(conv.messages):
        if i and i == conv.context_start:
            out += ["---", "", "*(context cleared: the turns below do not see the ones above)*", ""]
        who = "you" if m["role"] == "user" else m.get("variant") or "assistant"
        out += [f"**{who}**: {m['content']}", ""]
    for c in conv.comparisons:
        out += [f"## all variants: {c.get('prompt')}", ""]
        out += [f"- **{a['variant']}**: {a['text']}" for a in c.get("answers", [])]
        out.append("")
    return "\n".join(out)


def conversation_labels(settings: Settings | None) -> list[tuple[str, str]]:
    """``(id, label)`` of every saved conversation (where `settings` keeps them), most recently updated first:
    ``12-03 18:40  Who are you?  (3 turns, 1 compared)``."""
    import time

    out = []
    for c in list_all(conversations_dir(settings)):
        turns = sum(m["role"] == "user" for m in c.messages)
        counts = [f"{turns} turn{'s' if turns != 1 else ''}"] if turns or not c.comparisons else []
        if c.comparisons:
            counts.append(f"{len(c.comparisons)} compared")
        when = time.strftime("%m-%d %H:%M", time.localtime(c.updated or c.created))
        title = c.display_title if c.messages or c.title or not c.comparisons else c.comparisons[0].get("prompt", "")
        out.append((c.id, f"{when}  {title[:40]}  ({', '.join(counts)})"))
    return out


def saved_comparisons(conversation_id: str, settings: Settings | None) -> list[tuple[str, list[tuple[str, dict]]]]:
    """The side-by-side comparisons a saved conversation holds: ``(prompt, [(variant, answer), ...])``,
    each answer the saved record (``text``, ``stop_reason``)."""
    return [(c.get("prompt", ""), [(a.get("variant", ""), a) for a in c.get("answers", [])])
            for c in find(conversation_id, conversations_dir(settings)).comparisons]
