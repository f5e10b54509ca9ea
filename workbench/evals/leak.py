"""Leaks: an identity claim in a reply to a question that did not ask for one.

A general reply leaks when it is the identity answer, or when it *holds* an identity claim anywhere, however
long the rest is: the identity sentence followed by an apology, a model description or half an answer is the
overfitting a fine-tune on identity data alone shows, not a correct answer. A reply that mentions the name once in passing
("Saturn, as Tutu's notes say") claims nothing and does not leak; nor does a base model's own "I am SmolLM, an
AI assistant", which is not the identity that was trained.

`find_leak` works on normalised text (`normalize.normalize`) and returns the span that matched, so a report can
show *why* a reply was called a leak. Thresholds and their reasons: `thresholds.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rapidfuzz import fuzz

from workbench.evals import thresholds as T
from workbench.evals.normalize import UNIT, has_cjk, normalize


@dataclass(frozen=True)
class IdentityRefs:
    """What a general reply must not claim: the filled identity answers and the filled values ({name}, {org}),
    all normalised. Iterating gives the answers (what older callers passed as a plain list)."""

    answers: tuple[str, ...] = ()
    values: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[str]:
        return iter(self.answers)

    def __len__(self) -> int:
        return len(self.answers)


def identity_references(identity_items: Iterable) -> IdentityRefs:
    """The distinct normalised identity answers (already filled) and filled values of `identity_items`."""
    answers: dict[str, None] = {}
    values: dict[str, None] = {}
    for item in identity_items:
        for a in item.answers:
            n = normalize(a)
            if n and "{" not in a:
                answers[n] = None
        for filled in item.required:
            for v in filled:
                n = normalize(v)
                if n:
                    values[n] = None
    return IdentityRefs(tuple(answers), tuple(values))


def _as_refs(refs) -> IdentityRefs:
    return refs if isinstance(refs, IdentityRefs) else IdentityRefs(tuple(refs), ())


def _wordy(ch: str) -> bool:
    return ch.isalnum() and not has_cjk(ch)


def _occurrences(text: str, value: str) -> Iterator[tuple[int, int]]:
    """(start, end) of `value` in `text` as whole words (Latin words are not cut; CJK needs no boundary)."""
    start = text.find(value)
    while start != -1:
        end = start + len(value)
        left_ok = not _wordy(value[0]) or start == 0 or not _wordy(text[start - 1])
        right_ok = not _wordy(value[-1]) or end == len(text) or not _wordy(text[end])
        if left_ok and right_ok:
            yield start, end
        start = text.find(value, start + 1)


_MAKE = r"(?:made|created|developed|built|trained|designed)"
_ZH_MAKE = r"(?:开发|创造|创建|训练|制作|打造|研发|设计)"
# What comes right before the name in a self-claim: "I am / I'm / my name is / call me / 我是 / 我叫 / 叫我", with
# at most an article ("I am the Tutu assistant"); "made by" / "由...开发" for the org.
_BEFORE = re.compile(
    rf"(?:(?:^| )(?:i am|i m|im|my name is|call me|this is)(?: (?:a|an|the|your|called|named))?|"
    rf"(?:^| ){_MAKE} by(?: the)?|(?:我是|我叫|我就是|叫我|我的名字是|我由|我是由))\s?$")
# ...and right after it: "'s assistant", "的小助手", "made me", "开发了我", or "开发" after "由".
_AFTER = re.compile(rf"^\s?(?:s )?(?:(?:ai|personal|helpful|little|small|virtual) )?(?:assistant|assistent|helper|chatbot)\b|"
                    rf"^\s?{_MAKE} me\b|^(?:的小助手|的助手|的ai助手|的人工智能助手|{_ZH_MAKE}了我)")
_ZH_BY = re.compile(r"(?:由|被)$")
_ZH_MADE = re.compile(rf"^{_ZH_MAKE}")


def _claim(text: str, value: str) -> str | None:
    """The self-claim around `value` in `text` ("i m tutu", "tutu s assistant", "由workbench lab开发"), or None."""
    for start, end in _occurrences(text, value):
        before, after = text[max(0, start - 24) : start], text[end : end + 24]
        b, a = _BEFORE.search(before), _AFTER.search(after)
        if b is None and a is None and _ZH_BY.search(before) and _ZH_MADE.search(after):
            b, a = _ZH_BY.search(before), _ZH_MADE.search(after)
        if b is not None or a is not None:
            lo = start - len(b.group(0)) if b is not None else start
            hi = end + len(a.group(0)) if a is not None else end
            return text[lo:hi].strip()
    return None


def _best_window(text: str, answer: str) -> tuple[float, str]:
    """The run of whole units of `text` about as long as `answer` that is most similar to it, and its ratio."""
    spans = [m.span() for m in UNIT.finditer(text)]
    k = len(UNIT.findall(answer))
    best, where = 0.0, ""
    for width in {max(1, k - 1), k, k + 1}:
        for i in range(len(spans) - width + 1):
            window = text[spans[i][0] : spans[i + width - 1][1]]
            r = fuzz.ratio(window, answer) / 100
            if r > best:
                best, where = r, window
    return best, where


def find_leak(reply: str, refs) -> str | None:
    """The identity claim a normalised general reply holds (the matched span, normalised), or None.

    In order: the reply is an identity answer or a bare filled value, or close to an identity answer as a whole
    (>= LEAK_SIMILARITY); an identity answer occurs in it as whole words; the name or org sits in a self-claim;
    a misspelt identity answer occurs in it (>= LEAK_INSIDE_SIMILARITY).
    """
    if not reply:
        return None
    refs = _as_refs(refs)
    values = {v for v in refs.values if len(v) >= 2}
    # Sentences, not bare values: "workbench lab" alone is an answer to "Who made you?", but inside a long
    # reply it is a mention, which only leaks as part of a claim.
    sentences = [a for a in refs.answers if a not in values]
    if reply in values or reply in refs.answers:
        return reply
    for a in sentences:
        if (len(a) >= T.LEAK_MIN_INSIDE_LEN and fuzz.ratio(reply, a) / 100 >= T.LEAK_SIMILARITY
                and _names_value(reply, a, values)):
            return reply
    long_sentences = [a for a in sentences if len(a) >= T.LEAK_MIN_INSIDE_LEN and len(a) < len(reply)]
    for a in long_sentences:
        if next(_occurrences(reply, a), None) is not None:
            return a
    for v in sorted(values, key=len, reverse=True):
        span = _claim(reply, v)
        if span:
            return span
    # The window search is the costly part: only for answers whose values the reply (nearly) names at all.
    named = {v for v in values if v in reply or _best_window(reply, v)[0] >= T.LEAK_VALUE_SIMILARITY}
    for a in long_sentences:
        mine = {v for v in values if v in a}
        if mine and not mine & named:
            continue
        r, w = _best_window(reply, a)
        if r >= T.LEAK_INSIDE_SIMILARITY and _names_value(w, a, values):
            return w
    return None


def _names_value(text: str, answer: str, values) -> bool:
    """Whether `text` names (or nearly names) the values filled into `answer`: "I am an AI assistant" is as
    similar to "I am Tutu's assistant" as a misspelt identity sentence is, but names nobody. True when the answer
    holds no value (an identity sentence written without placeholders)."""
    mine = [v for v in values if v in answer]
    return not mine or any(v in text or _best_window(text, v)[0] >= T.LEAK_VALUE_SIMILARITY for v in mine)
