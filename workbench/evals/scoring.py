"""Scoring replies against eval items: a score and pass flag per item, leak and loop flags, aggregates.

Pure functions on strings (rapidfuzz only): the sweep, `--responses` re-scoring and `--from-log` all
call `score_item` and `aggregate` (through `results.score_row`), so the same replies always give the same
numbers. Leaks are found by `leak.py`; the per-language and seen/held-out breakdowns are `breakdown.py`'s. The
thresholds are in `thresholds.py`, with their reasons.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from rapidfuzz import fuzz

from workbench.evals import breakdown
from workbench.evals import thresholds as T
from workbench.evals.evalset import EvalItem
from workbench.evals.leak import IdentityRefs, find_leak, identity_references
from workbench.evals.normalize import UNIT, fold, has_cjk, normalize, units
from workbench.evals.stats import wilson

__all__ = ["Aggregates", "IdentityRefs", "ItemScore", "aggregate", "identity_references", "is_loop", "score_item"]


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
    leak_span: str | None = None  # the identity claim found in a leaking reply (normalised text)
    gold: bool = True  # the item has reference answers (general items may not: then only retention judges them)
    #: General items: whether the reply still gives the answer the base gave (the same scorer, the base's reply as
    #: the reference); None for the base itself and where the base's reply was no real answer (empty, looping).
    retained: bool | None = None
    retention_score: float | None = None
    seen: bool | None = None  # the prompt is in the run's training data (None: the training data is unknown)
    #: Against the base's reply to the same prompt: kept | lost | gained | never-knew (filled by results.pair_rows).
    change: str | None = None

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


@lru_cache(maxsize=8192)
def _normalized(text: str) -> str:
    return normalize(text)


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


@lru_cache(maxsize=8192)
def real_answer(response: str | None) -> bool:
    """Whether a reply is an answer at all (not empty, not looping): only those can be a reference for retention.
    Cached: the base's reply is checked again for every checkpoint."""
    return bool(normalize(response or "")) and not is_loop(response or "")


def score_item(item: EvalItem, response: str | None, identity_refs: IdentityRefs | Sequence[str] = (),
               reference: str | None = None, seen: bool | None = None) -> ItemScore:
    """Score one reply. `identity_refs` (from `identity_references`) enable the leak flag on general items;
    `reference` (the base's reply to the same prompt) gives a general item its retention."""
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
    span = find_leak(reply, identity_refs) if item.kind == "general" else None
    retained = retention = None
    if item.kind == "general" and reference is not None and real_answer(reference):
        retention = answer_score(reply, _normalized(reference))
        retained = retention >= T.PASS_SCORE
    return ItemScore(
        id=item.id,
        kind=item.kind,
        lang=item.lang,
        prompt=item.prompt,
        response=response,
        score=best,
        passed=best >= T.PASS_SCORE,
        leak=span is not None,
        loop=is_loop(response),
        empty=not reply,
        matched=matched,
        leak_span=span,
        gold=bool(item.answers),
        retained=retained,
        retention_score=retention,
        seen=seen,
    )


@dataclass
class Aggregates:
    """The numbers of one model or checkpoint over an eval run. Rates are in [0, 1]; None = no items.

    The first eleven fields are the original contract; the rest were added beside them (counts, 95% Wilson
    intervals, retention, per-language and seen/held-out breakdowns, and the paired changes against the base)."""

    n_identity: int
    n_general: int
    identity: float | None  # identity pass rate
    identity_score: float | None  # mean identity score
    general: float | None  # general pass rate (items with reference answers)
    general_score: float | None
    general_vs_base: float | None  # general pass rate / the base's (filled by the sweep)
    leak: float | None  # share of general replies that are the identity answer
    loop: float | None  # share of all replies that loop
    distinct: float | None  # distinct general replies / general items (low = one sentence for everything)
    empty: float | None
    identity_passed: int = 0
    general_passed: int = 0
    n_general_gold: int = 0  # general items with reference answers (the denominator of `general`)
    leaks: int = 0
    loops: int = 0
    #: share of general prompts where the reply still gives the base's answer, over the prompts where the base
    #: gave a real answer (n_retention); None for the base and without a base
    retention: float | None = None
    retained: int = 0
    n_retention: int = 0
    ci: dict = field(default_factory=dict)  # metric -> [low, high], the 95% Wilson interval of each rate
    by_lang: dict = field(default_factory=dict)  # lang -> counts and rates of identity, general, retention
    identity_seen: dict | None = None  # identity on prompts found in the training data (None: data unknown)
    identity_heldout: dict | None = None  # ...and on prompts not in it
    #: identity over the languages the verdict judges (those the training data teaches); None = all of them
    identity_judged: float | None = None
    #: paired changes on general prompts against the base row of the same template (results.pair_rows)
    paired: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def aggregate(scores: Sequence[ItemScore], base_general: float | None = None,
              judged_langs: Sequence[str] | None = None) -> Aggregates:
    """Aggregate item scores of one model/checkpoint; `base_general` (the base's general pass rate) fills
    `general_vs_base`; `judged_langs` (None: all) are the languages whose identity prompts the verdict judges."""
    ident = [s for s in scores if s.kind == "identity"]
    gen = [s for s in scores if s.kind == "general"]
    gold = [s for s in gen if s.gold]
    ret = [s for s in gen if s.retained is not None]
    id_passed, gen_passed = sum(s.passed for s in ident), sum(s.passed for s in gold)
    leaks, loops, kept = sum(s.leak for s in gen), sum(s.loop for s in scores), sum(bool(s.retained) for s in ret)
    general = _rate(gen_passed, len(gold))
    vs_base = None
    if general is not None and base_general:
        vs_base = round(general / base_general, 4)
    ci = {k: list(v) for k, v in (("identity", wilson(id_passed, len(ident))), ("general", wilson(gen_passed, len(gold))),
                                  ("leak", wilson(leaks, len(gen))), ("retention", wilson(kept, len(ret))))
          if v is not None}
    judged = None
    if judged_langs is not None:
        judged_items = [s for s in ident if s.lang in judged_langs]
        judged = _rate(sum(s.passed for s in judged_items), len(judged_items))
    seen, heldout = breakdown.seen_heldout(ident)
    return Aggregates(
        n_identity=len(ident),
        n_general=len(gen),
        identity=_rate(id_passed, len(ident)),
        identity_score=_mean([s.score for s in ident]),
        general=general,
        general_score=_mean([s.score for s in gold]),
        general_vs_base=vs_base,
        leak=_rate(leaks, len(gen)),
        loop=_rate(loops, len(scores)),
        distinct=round(len({normalize(s.response) for s in gen}) / len(gen), 4) if gen else None,
        empty=_mean([float(s.empty) for s in scores]),
        identity_passed=id_passed,
        general_passed=gen_passed,
        n_general_gold=len(gold),
        leaks=leaks,
        loops=loops,
        retention=_rate(kept, len(ret)),
        retained=kept,
        n_retention=len(ret),
        ci=ci,
        by_lang=breakdown.by_lang(scores),
        identity_seen=seen,
        identity_heldout=heldout,
        identity_judged=judged,
    )
