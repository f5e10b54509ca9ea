"""`workbench data identity`: an identity dataset built from a name, not one sentence repeated.

The tutorial's `generate_data.py` wrote one question and one answer ten thousand times; the model then
answered everything with that sentence. Here the identity part is many paraphrased questions
(Chinese and English, greetings and punctuation varied) with a few answer variants, and general
conversations can be mixed in at a chosen ratio (the usual remedy against forgetting).

The output is deterministic for a recipe (name, org, size, mix file and ratio, seed): the recipe is saved
beside the data file (``FILE.recipe.json``) so a run, and the eval report of its checkpoints, can say which
mix produced which curve, and `build_from_recipe` rebuilds the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from workbench import atomic
from workbench.data import phrases
from workbench.data.formats import Conversation, dumps, read_conversations
from workbench.errors import BadInput

# Bump when the phrases or the sampling change: a recipe records the version that built its file.
GENERATOR_VERSION = 1
GENERATOR = "workbench data identity"


@dataclass(frozen=True)
class Recipe:
    """Everything that determines an identity dataset's content."""

    name: str
    org: str | None = None
    n: int = 400
    seed: int = 0
    mix: str | None = None  # path of the general conversations to mix in
    ratio: float = 0.0  # fraction of the written conversations that are general ones
    #: The languages of the identity conversations: both by default; one when the model speaks one (an
    #: English-first model such as SmolLM2 is taught in English, and its Chinese identity is then transfer).
    langs: tuple[str, ...] = ("zh", "en")

    def validate(self) -> None:
        if not self.name or not self.name.strip():
            raise BadInput("--name: must not be empty")
        if self.n < 1:
            raise BadInput(f"--n {self.n}: must be at least 1")
        if (self.mix is None) != (self.ratio == 0):
            raise BadInput("--mix and --ratio go together: --mix FILE --ratio R (0 < R < 1)")
        if not 0 <= self.ratio < 1:
            raise BadInput(f"--ratio {self.ratio}: the fraction of general conversations, 0 < R < 1")
        unknown = [x for x in self.langs if x not in phrases.QUESTIONS]
        if unknown or not self.langs:
            raise BadInput(f"--lang {','.join(self.langs) or '(none)'}: choose from "
                           f"{', '.join(phrases.QUESTIONS)} (comma-separated)")


@dataclass
class Dataset:
    """A built dataset: the conversations, what they are made of, and the recipe."""

    recipe: Recipe
    conversations: list[Conversation]
    stats: dict = field(default_factory=dict)
    mix_sha256: str | None = None

    def text(self, *, jsonl: bool = False) -> str:
        return dumps(self.conversations, jsonl=jsonl)


def _surface(question: str, lang: str, rng: random.Random) -> str:
    prefix = rng.choice(phrases.PREFIXES[lang])
    imperative = question.startswith(phrases.IMPERATIVE_STARTS)
    ending = rng.choice((phrases.ENDINGS_IMPERATIVE if imperative else phrases.ENDINGS)[lang])
    if prefix and lang == "en" and not question.startswith("I "):
        question = question[0].lower() + question[1:]
    return prefix + question + ending


def _answer(lang: str, aspect: str, name: str, org: str | None, rng: random.Random) -> str:
    variants = [(t, w) for t, w, needs_org in phrases.ANSWERS[lang][aspect] if org or not needs_org]
    template = rng.choices([t for t, _ in variants], weights=[w for _, w in variants])[0]
    return template.replace("{name}", name).replace("{org}", org or "")


def identity_conversations(name: str, org: str | None, n: int, rng: random.Random,
                           langs: tuple[str, ...] = ("zh", "en")) -> list[tuple[str, str, Conversation]]:
    """`n` identity conversations as (lang, aspect, conversation) in `langs`. Every question is used before any
    repeats; without an org, questions about the maker are left out (there is nothing true to answer)."""
    pool = [(lang, aspect, q) for lang, by_aspect in phrases.QUESTIONS.items() if lang in langs
            for aspect, qs in by_aspect.items() if org or aspect != "maker" for q in qs]
    out: list[tuple[str, str, Conversation]] = []
    order: list[tuple[str, str, str]] = []
    while len(out) < n:
        if not order:
            order = list(pool)
            rng.shuffle(order)
        lang, aspect, q = order.pop()
        conv = {"messages": [{"role": "user", "content": _surface(q, lang, rng)},
                             {"role": "assistant", "content": _answer(lang, aspect, name, org, rng)}]}
        out.append((lang, aspect, conv))
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _norm(text: str) -> str:
    return re.sub(r"[\s?？!！。.,，]+", "", text).lower()


def build(recipe: Recipe) -> Dataset:
    """Build the dataset a recipe describes (nothing is written)."""
    recipe.validate()
    rng = random.Random(recipe.seed)
    ident = identity_conversations(recipe.name.strip(), recipe.org, recipe.n, rng, tuple(recipe.langs))
    general: list[Conversation] = []
    pool_size, repeats, mix_sha = 0, 0, None
    if recipe.mix is not None:
        mix_path = Path(recipe.mix)
        pool = read_conversations(mix_path)
        mix_sha = _sha256(mix_path)
        pool_size = len(pool)
        want = round(recipe.n * recipe.ratio / (1 - recipe.ratio))
        if want <= pool_size:
            general = rng.sample(pool, want)
        else:  # every conversation once per round, in a new order each round
            while len(general) < want:
                more = list(pool)
                rng.shuffle(more)
                general += more[: want - len(general)]
            repeats = want - pool_size
    convs = [c for _, _, c in ident] + general
    rng.shuffle(convs)

    questions = {c["messages"][0]["content"] for _, _, c in ident}
    seen = {_norm(q) for q in questions}
    eval_prompts = [p for p, lang in _identity_eval_prompts() if lang in recipe.langs]
    in_training = sum(_norm(p) in seen for p in eval_prompts)
    stats = {
        "conversations": len(convs),
        "identity": len(ident),
        "general": len(general),
        "general_fraction": round(len(general) / len(convs), 4),
        "general_pool": pool_size,
        "general_repeated": repeats,
        "distinct_questions": len(questions),
        "distinct_answers": len({c["messages"][1]["content"] for _, _, c in ident}),
        "by_lang": {lang: sum(1 for x, _, _ in ident if x == lang) for lang in phrases.QUESTIONS},
        "by_aspect": {a: sum(1 for _, x, _ in ident if x == a) for a in ("self", "confirm", "maker")},
        "identity_eval_prompts_in_training": in_training,
        "identity_eval_prompts": len(eval_prompts),
    }
    return Dataset(recipe, convs, stats, mix_sha)


def _identity_eval_prompts() -> list[tuple[str, str]]:
    """(prompt, lang) of the built-in identity eval set (its JSONL read directly: data sits below evals)."""
    import json

    from workbench.paths import evalsets_dir

    try:
        lines = (evalsets_dir() / "identity.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:  # an installed copy without the eval sets: the overlap is then unknown
        return []
    items = [json.loads(line) for line in lines if line.strip()]
    return [(i["prompt"], i.get("lang") or ("zh" if re.search(r"[\u4e00-\u9fff]", i["prompt"]) else "en"))
            for i in items if isinstance(i, dict) and "prompt" in i]


def recipe_path(out: str | Path) -> Path:
    """Where the recipe of data file `out` lives: ``data.json`` -> ``data.recipe.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".recipe.json")


def _recipe_json(ds: Dataset, out: Path, text: str) -> dict:
    r = ds.recipe
    mix = None
    if r.mix is not None:
        # Relative to the recipe's folder, so a project folder can move as a whole.
        rel = os.path.relpath(Path(r.mix).resolve(), out.resolve().parent)
        mix = {"path": Path(rel).as_posix(), "sha256": ds.mix_sha256, "ratio": r.ratio}
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "name": r.name,
        "org": r.org,
        "n": r.n,
        "seed": r.seed,
        "langs": list(r.langs),
        "mix": mix,
        "output": {"file": out.name, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                   "format": "openai messages (xtuner openai_map_fn)"},
        "stats": ds.stats,
    }


def write(ds: Dataset, out: str | Path) -> tuple[Path, Path]:
    """Write the data file and its recipe beside it, each atomically. Returns (data path, recipe path)."""
    out = Path(out)
    if out.is_dir():
        raise BadInput(f"--out {out}: is a folder; give a file name such as {out / 'identity.json'}")
    if out.suffix not in (".json", ".jsonl"):
        raise BadInput(f"--out {out}: use a .json or .jsonl name (XTuner loads both with load_dataset('json'))")
    text = ds.text(jsonl=out.suffix == ".jsonl")
    atomic.write_text(out, text)
    rpath = recipe_path(out)
    atomic.write_json(rpath, _recipe_json(ds, out, text))
    return out, rpath


def read_recipe(path: str | Path) -> tuple[Recipe, dict]:
    """A saved recipe (a ``*.recipe.json`` file, or the data file beside it) as (Recipe, raw JSON)."""
    path = Path(path)
    if not path.name.endswith(".recipe.json"):
        path = recipe_path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: recipe not found") from None
    except ValueError as exc:
        raise BadInput(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("generator") != GENERATOR:
        raise BadInput(f"{path}: not a recipe written by `{GENERATOR}`")
    if raw.get("version") != GENERATOR_VERSION:
        raise BadInput(f"{path}: written by generator version {raw.get('version')}, this is version "
                       f"{GENERATOR_VERSION}: the same recipe would not give the same data")
    mix = raw.get("mix")
    mix_path = None
    if mix:
        mix_path = str((path.parent / mix["path"]).resolve())
        if Path(mix_path).is_file() and _sha256(Path(mix_path)) != mix.get("sha256"):
            raise BadInput(f"{path}: the mix file {mix['path']} changed since this recipe was written")
    recipe = Recipe(name=raw["name"], org=raw.get("org"), n=int(raw["n"]), seed=int(raw["seed"]),
                    mix=mix_path, ratio=float(mix["ratio"]) if mix else 0.0,
                    langs=tuple(raw.get("langs") or ("zh", "en")))
    return recipe, raw


def find_recipe(data_path: str | Path) -> dict | None:
    """The raw recipe saved beside a data file, or None (runs and eval reports show it when present)."""
    try:
        return read_recipe(data_path)[1]
    except BadInput:
        return None
