"""Scoring replies against eval items: a score and pass flag per item, leak and loop flags, aggregates.

Pure functions on strings (rapidfuzz only): the sweep, `--responses` re-scoring and `--from-log` all
call `score_item` and `aggregate`, so the same replies always give the same numbers. The thresholds
are in `thresholds.py`, with their reasons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from rapidfuzz import fuzz

from workbench.evals import thresholds as T
from workbench.evals.evalset import EvalItem
from workbench.evals.normalize import UNIT, fold, has_cjk, normalize, units


@dataclass
class ItemScore:
    """The verdict on one reply to one eval item."""

    id: str
    kind: str
    lang: str
    prompt: str
    response: str
    score: float
    passed: bool
    leak: bool  # general items only: the reply is (mostly) the identity answer
    loop: bool  # degenerate repetition
    empty: bool
    matched: str | None = None  # the reference answer that scored best

    def to_dict(self) -> dict:
        return asdict(self)


def _wordy(ch: str) -> bool:
    return ch.isalnum() and not has_cjk(ch)


def contains_answer(reply: str, answer: str) -> bool:
    """Whether normalised `answer` occurs in normalised `reply` as whole words.

    Latin words and numbers must not be cut ("5" is not in "15", "pack" is not in "package");
    CJK characters need no boundary ("北京" is in "首都是北京").
    """
    if not answer:
        return False
    start = reply.find(answer)
    while start != -1:
        end = start + len(answer)
        left_ok = not _wordy(answer[0]) or start == 0 or not _wordy(reply[start - 1])
        right_ok = not _wordy(answer[-1]) or end == len(reply) or not _wordy(reply[end])
        if left_ok and right_ok:
            return True
        start = reply.find(answer, start + 1)
    return False


def answer_score(reply: str, answer: str) -> float:
    """Similarity in [0, 1] of one normalised reply to one normalised reference answer.

    1.0 for an exact or whole-word contained answer; otherwise the best of the fuzzy ratio of the two
    and, when the reply is longer than an answer of at least MIN_PARTIAL_LEN characters, the weighted
    partial alignment of the answer inside the reply (a fragment of the answer never scores as the answer).
    """
    if not reply or not answer:
        return 0.0
    if reply == answer:
        return 1.0
    # One Chinese character is found in almost any long reply ("小" in "我是Tutu的小助手"): as an answer
    # inside a reply it only counts in a short one ("鱼用鳃呼吸").
    single_cjk = len(answer) == 1 and has_cjk(answer)
    if contains_answer(reply, answer) and not (single_cjk and len(reply) > T.SINGLE_CHAR_MAX_REPLY):
        return 1.0
    best = fuzz.ratio(reply, answer) / 100
    if len(answer) >= T.MIN_PARTIAL_LEN and len(reply) > len(answer):
        best = max(best, T.PARTIAL_WEIGHT * _window_ratio(reply, answer))
    return round(best, 4)




def _window_ratio(reply: str, answer: str) -> float:
    """The best fuzzy ratio of `answer` against runs of whole units (words, CJK characters) of `reply`
    about as long as the answer: finds "berln" in "the capital is berln" without finding "pack" in
    "package" (a substring alignment would cut words)."""
    spans = [m.span() for m in UNIT.finditer(reply)]
    k = len(UNIT.findall(answer))
    best = 0.0
    for width in {max(1, k - 1), k, k + 1}:
        for i in range(len(spans) - width + 1):
            window = reply[spans[i][0] : spans[i + width - 1][1]]
            best = max(best, fuzz.ratio(window, answer) / 100)
    return best


def leak_score(reply: str, identity_answers: Iterable[str]) -> float:
    """How much a normalised reply is the identity answer: the best, over normalised identity answers,
    of their similarity, and of a partial hit when the identity answer covers most of the reply."""
    best = 0.0
    if not reply:
        return best
    for ident in identity_answers:
        if not ident:
            continue
        if reply == ident:
            return 1.0
        # Very short identity references ("acme") only count when they are the whole reply: a short
        # general answer is otherwise "similar" to them by accident.
        if len(ident) < 6:
            continue
        best = max(best, fuzz.ratio(reply, ident) / 100)
        # The identity answer found inside a longer reply, and most of it (a reply shorter than the
        # identity answer is only compared as a whole: "O" is not "inside" it).
        if T.LEAK_MIN_COVERAGE * len(reply) <= len(ident) <= len(reply):
            best = max(best, fuzz.partial_ratio(ident, reply) / 100)
    return round(best, 4)


def _compact(text: str) -> str:
    return normalize(text).replace(" ", "")


_REPEAT = re.compile(rf"(.{{{T.LOOP_MIN_UNIT},}}?)\1{{{T.LOOP_MIN_REPEATS - 1},}}", re.S)
_CHAR_RUN = re.compile(rf"([^\d\s])\1{{{T.LOOP_SINGLE_CHAR_REPEATS - 1},}}")


def is_loop(text: str) -> bool:
    """Whether `text` is degenerate repetition (thresholds.LOOP_*): back-to-back copies of a unit
    covering much of it, a long run of one character, or a long reply with few distinct 3-grams."""
    if not text:
        return False
    if _CHAR_RUN.search(fold(text)):
        return True
    compact = _compact(text)
    if compact:
        covered = sum(
            len(m.group(0)) for m in _REPEAT.finditer(compact) if not m.group(1).isdigit()
        )
        if covered >= T.LOOP_MIN_COVERAGE * len(compact):
            return True
    toks = units(normalize(text))
    if len(toks) >= T.LOOP_NGRAM_MIN_UNITS:
        grams = [tuple(toks[i : i + 3]) for i in range(len(toks) - 2)]
        if len(set(grams)) < T.LOOP_NGRAM_DISTINCT * len(grams):
            return True
    return False


def identity_references(identity_items: Iterable[EvalItem]) -> list[str]:
    """The distinct normalised identity answers (already filled) that a general reply must not be."""
    refs: dict[str, None] = {}
    for item in identity_items:
        for a in item.answers:
            n = normalize(a)
            if n and "{" not in a:
                refs[n] = None
    return list(refs)


def score_item(item: EvalItem, response: str | None, identity_refs: Sequence[str] = ()) -> ItemScore:
    """Score one reply. `identity_refs` (from `identity_references`) enable the leak flag on general items."""
    response = response or ""
    reply = normalize(response)
    best, matched = 0.0, None
    for n, a in enumerate(item.answers):
        s = answer_score(reply, normalize(a))
        needed = item.required[n] if n < len(item.required) else ()
        if s >= T.PASS_SCORE and not all(contains_answer(reply, normalize(v)) for v in needed):
            s = T.MISSING_VALUE_SCORE  # close to the answer, but with the name or org wrong
        if s > best:
            best, matched = s, a
    leak = item.kind == "general" and leak_score(reply, identity_refs) >= T.LEAK_SIMILARITY
    return ItemScore(
        id=item.id,
        kind=item.kind,
        lang=item.lang,
        prompt=item.prompt,
        response=response,
        score=best,
        passed=best >= T.PASS_SCORE,
        leak=leak,
        loop=is_loop(response),
        empty=not reply,
        matched=matched,
    )


@dataclass
class Aggregates:
    """The numbers of one model or checkpoint over an eval run. Rates are in [0, 1]; None = no items."""

    n_identity: int
    n_general: int
    identity: float | None  # identity pass rate
    identity_score: float | None  # mean identity score
    general: float | None  # general pass rate
    general_score: float | None
    general_vs_base: float | None  # general pass rate / the base's (filled by the sweep)
    leak: float | None  # share of general replies that are the identity answer
    loop: float | None  # share of all replies that loop
    distinct: float | None  # distinct general replies / general items (low = one sentence for everything)
    empty: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def aggregate(scores: Sequence[ItemScore], base_general: float | None = None) -> Aggregates:
    """Aggregate item scores of one model/checkpoint; `base_general` (the base's general pass rate)
    fills `general_vs_base`."""
    ident = [s for s in scores if s.kind == "identity"]
    gen = [s for s in scores if s.kind == "general"]
    general = _mean([float(s.passed) for s in gen])
    vs_base = None
    if general is not None and base_general:
        vs_base = round(general / base_general, 4)
    return Aggregates(
        n_identity=len(ident),
        n_general=len(gen),
        identity=_mean([float(s.passed) for s in ident]),
        identity_score=_mean([s.score for s in ident]),
        general=general,
        general_score=_mean([s.score for s in gen]),
        general_vs_base=vs_base,
        leak=_mean([float(s.leak) for s in gen]),
        loop=_mean([float(s.loop) for s in scores]),
        distinct=round(len({normalize(s.response) for s in gen}) / len(gen), 4) if gen else None,
        empty=_mean([float(s.empty) for s in scores]),
    )
