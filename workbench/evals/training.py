"""What a run was trained on, as far as the eval needs it: which prompts it saw (identity that generalises vs
identity memorised) and which languages taught the identity (a run taught in English is not judged on its
Chinese identity prompts; those are cross-lingual transfer, reported apart).

The data file is the one the training config names (the same search `workbench.targets.variables_of` uses for the
recipe), or a data file given directly. Any format `workbench.data.formats` reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import BadInput
from workbench.evals.normalize import normalize

_CJK_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")


def prompt_key(text: str) -> str:
    """How a prompt is compared with the training data's: normalised, spaces dropped ("Who are you ?" = "who are you")."""
    return normalize(text).replace(" ", "")


def lang_of(text: str) -> str:
    """zh or en, by which script carries the text (an English question naming 北京 is still English)."""
    return "zh" if len(_CJK_CHAR.findall(text)) >= max(1, len(_LATIN_WORD.findall(text))) else "en"


@dataclass(frozen=True)
class TrainingData:
    """The user prompts (as `prompt_key`s) and languages of a run's training conversations."""

    paths: tuple[str, ...]
    prompts: frozenset[str]
    conversations: int
    langs: tuple[str, ...]  # languages of all conversations
    identity_langs: tuple[str, ...]  # languages of the conversations whose answers name the identity

    def seen(self, prompt: str) -> bool:
        return prompt_key(prompt) in self.prompts

    @property
    def judged_langs(self) -> tuple[str, ...]:
        """The languages whose identity prompts the verdict judges: those the identity was taught in (all the
        data's languages when no answer names the identity, e.g. without --var values)."""
        return self.identity_langs or self.langs

    def to_dict(self) -> dict:
        return {"paths": list(self.paths), "conversations": self.conversations, "prompts": len(self.prompts),
                "langs": list(self.langs), "identity_langs": list(self.identity_langs),
                "judged_langs": list(self.judged_langs)}


def load_training(paths: Sequence[str | Path], values: Iterable[str] = ()) -> TrainingData:
    """Read the conversations of `paths`; `values` (the filled {name}, {org}) mark the identity conversations."""
    from workbench.data.formats import read_conversations

    marks = [normalize(v) for v in values if normalize(v)]
    prompts: set[str] = set()
    langs: set[str] = set()
    ident_langs: set[str] = set()
    n = 0
    for path in paths:
        for conv in read_conversations(path):
            n += 1
            users = [m["content"] for m in conv["messages"] if m["role"] == "user"]
            answers = normalize(" ".join(m["content"] for m in conv["messages"] if m["role"] == "assistant"))
            prompts.update(prompt_key(u) for u in users)
            lang = lang_of(" ".join(users))
            langs.add(lang)
            if any(v in answers for v in marks):
                ident_langs.add(lang)
    return TrainingData(tuple(str(p) for p in paths), frozenset(prompts), n, tuple(sorted(langs)),
                        tuple(sorted(ident_langs)))


def config_data_files(config: str | Path | None) -> list[Path]:
    """The existing .json/.jsonl data files a training config names (not recipes), in the order named
    (`workbench.xtuner.config.TrainingConfig.data_files`)."""
    if not config or not Path(config).is_file():
        return []
    from workbench.xtuner.config import read_training_config

    try:
        return read_training_config(config).data_files()
    except BadInput:
        return []


def training_of(config: str | Path | None, data: str | Path | Sequence[str | Path] | None = None,
                values: Iterable[str] = (), warn=None) -> TrainingData | None:
    """The training data of a run: `data` (a file, or files, given directly), else the files its config names;
    None when neither is known or readable (then the report judges every language, as without this)."""
    given = [Path(d) for d in ([data] if isinstance(data, str | Path) else (data or ()))]
    for d in given:
        if not d.is_file():
            raise BadInput(f"training data {d}: not found")
    paths = given or config_data_files(config)
    if not paths:
        return None
    try:
        return load_training(paths, values)
    except BadInput as exc:
        if given:
            raise
        if warn:
            warn(f"training data not read, so identity is not split into seen / held-out prompts: {exc}")
        return None
