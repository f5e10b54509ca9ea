"""Eval sets: JSONL files of prompts with acceptable answers (schema in evalsets/README.md).

    {"id": "gk-zh-001", "kind": "general", "prompt": "...", "answers": ["..."], "lang": "zh"}

Identity answers may hold `{name}` and `{org}`; `EvalSet.fill()` substitutes them. A malformed line is
a `BadInput` naming the file and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from workbench.errors import BadInput, where

KINDS = ("identity", "general")
LANGS = ("zh", "en")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class EvalItem:
    """One prompt with its acceptable reference answers."""

    id: str
    kind: str
    prompt: str
    answers: tuple[str, ...]
    lang: str
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    #: After `EvalSet.fill`: per answer, the values its placeholders were filled with. A reply matches that
    #: answer only if it holds these exactly ("I am Tuu's assistant" is not Tutu's assistant).
    required: tuple[tuple[str, ...], ...] = field(default=(), compare=False, hash=False)

    def placeholders(self) -> set[str]:
        return {m for a in self.answers for m in _PLACEHOLDER.findall(a)} | set(_PLACEHOLDER.findall(self.prompt))


@dataclass(frozen=True)
class EvalSet:
    """A named list of items, loaded from one JSONL file."""

    name: str
    path: Path | None
    items: tuple[EvalItem, ...]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def by_kind(self, kind: str) -> list[EvalItem]:
        return [i for i in self.items if i.kind == kind]

    def placeholders(self) -> set[str]:
        return set().union(*(i.placeholders() for i in self.items)) if self.items else set()

    def fill(self, variables: dict[str, str], *, strict: bool = True) -> EvalSet:
        """Return a copy with `{name}`-style placeholders filled from `variables`.

        strict: every placeholder used must have a value, and every variable given must be used by
        some item (an unknown --var is almost always a typo).
        """
        needed = self.placeholders()
        if strict:
            # The unknown one first: a misspelt --var is also the reason the right one is "missing".
            unknown = sorted(set(variables) - needed)
            if unknown:
                raise BadInput(
                    f"{self.path or self.name}: unknown --var "
                    + ", ".join(unknown)
                    + f" (this eval set uses: {', '.join(sorted(needed)) or 'none'})"
                )
            missing = sorted(needed - set(variables))
            if missing:
                raise BadInput(
                    f"{self.path or self.name}: needs " + ", ".join(f"--var {m}=..." for m in missing)
                )

        def sub(text: str) -> str:
            return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), text)

        def values(text: str) -> tuple[str, ...]:
            return tuple(variables[m] for m in _PLACEHOLDER.findall(text) if m in variables)

        items = tuple(
            replace(i, prompt=sub(i.prompt), answers=tuple(sub(a) for a in i.answers),
                    required=tuple(values(a) for a in i.answers) if i.placeholders() else ())
            for i in self.items
        )
        return replace(self, items=items)


def parse_line(text: str, path: Path | str, lineno: int) -> EvalItem:
    """Parse and validate one JSONL line; errors name `path:lineno`."""
    loc = where(path, lineno)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{loc}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{loc}: expected a JSON object, got {type(obj).__name__}")
    for key in ("id", "kind", "prompt"):
        if key not in obj:
            raise BadInput(f"{loc}: missing required field {key!r}")
    if not isinstance(obj["id"], str) or not obj["id"]:
        raise BadInput(f"{loc}: 'id' must be a non-empty string")
    if obj["kind"] not in KINDS:
        raise BadInput(f"{loc}: 'kind' must be one of {', '.join(KINDS)}, got {obj['kind']!r}")
    if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
        raise BadInput(f"{loc}: 'prompt' must be a non-empty string")
    # A general item may come without reference answers ("answers": [] or none): it is then judged only by
    # retention, whether a checkpoint still gives the answer the base gave. An identity item needs them.
    answers = obj.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) and a for a in answers):
        raise BadInput(f"{loc}: 'answers' must be a list of non-empty strings")
    if not answers and obj["kind"] == "identity":
        raise BadInput(f"{loc}: an identity item needs 'answers' (a non-empty list of strings)")
    lang = obj.get("lang", "zh" if re.search(r"[\u4e00-\u9fff]", obj["prompt"]) else "en")
    if lang not in LANGS:
        raise BadInput(f"{loc}: 'lang' must be one of {', '.join(LANGS)}, got {lang!r}")
    extra = {k: v for k, v in obj.items() if k not in ("id", "kind", "prompt", "answers", "lang")}
    return EvalItem(obj["id"], obj["kind"], obj["prompt"], tuple(answers), lang, extra)


def load(path: str | Path) -> EvalSet:
    """Load an eval set from a JSONL file (blank lines and lines starting with // are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: eval set not found")
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("//"):
                continue
            item = parse_line(line, path, lineno)
            if item.id in seen:
                raise BadInput(f"{where(path, lineno)}: duplicate id {item.id!r} (first on line {seen[item.id]})")
            seen[item.id] = lineno
            items.append(item)
    if not items:
        raise BadInput(f"{path}: eval set is empty")
    return EvalSet(path.stem, path, tuple(items))


def builtin(name: str) -> EvalSet:
    """A shipped eval set by name: 'identity', 'general' (the tiny world's 170 facts, zh + en) or 'general_en' (72
    English questions a user would ask a real model)."""
    from workbench.paths import evalsets_dir

    path = evalsets_dir() / f"{name}.jsonl"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in evalsets_dir().glob("*.jsonl")))
        raise BadInput(f"unknown built-in eval set {name!r} (shipped: {shipped})")
    return load(path)


def resolve(spec: str) -> EvalSet:
    """An eval set from a path or a built-in name."""
    p = Path(spec)
    if p.suffix == ".jsonl" or p.exists():
        return load(p)
    return builtin(spec)


def combine(sets: list[EvalSet]) -> EvalSet:
    """One eval set holding the items of `sets` in order (ids must stay unique across them)."""
    if len(sets) == 1:
        return sets[0]
    seen: dict[str, EvalSet] = {}
    items: list[EvalItem] = []
    for s in sets:
        for item in s.items:
            if item.id in seen:
                raise BadInput(f"{s.path or s.name}: id {item.id!r} is also in {seen[item.id].path or seen[item.id].name}")
            seen[item.id] = s
            items.append(item)
    return EvalSet("+".join(s.name for s in sets), None, tuple(items))
