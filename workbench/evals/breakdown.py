"""Breakdowns of one row's item scores: per language, and identity on prompts seen in training vs held out.

Counts come with every rate (a rate of 0.29 means little until it reads "7 of 24"), and a 95% Wilson interval.
Works on anything with the fields of `scoring.ItemScore` (kind, lang, passed, gold, retained, seen).
"""

from __future__ import annotations

from collections.abc import Sequence

from workbench.evals.stats import wilson


def _part(k: int, n: int) -> dict:
    ci = wilson(k, n)
    return {"n": n, "passed": k, "rate": round(k / n, 4) if n else None, "ci": list(ci) if ci else None}


def by_lang(scores: Sequence) -> dict:
    """lang -> {"identity": part, "general": part, "retention": part}; a part is {n, passed, rate, ci}."""
    out: dict[str, dict] = {}
    for lang in sorted({s.lang for s in scores}):
        mine = [s for s in scores if s.lang == lang]
        ident = [s for s in mine if s.kind == "identity"]
        gold = [s for s in mine if s.kind == "general" and s.gold]
        ret = [s for s in mine if s.kind == "general" and s.retained is not None]
        out[lang] = {"identity": _part(sum(s.passed for s in ident), len(ident)),
                     "general": _part(sum(s.passed for s in gold), len(gold)),
                     "retention": _part(sum(bool(s.retained) for s in ret), len(ret))}
    return out


def seen_heldout(identity_scores: Sequence) -> tuple[dict | None, dict | None]:
    """Identity on prompts found in the training data, and on the others; (None, None) when it is unknown."""
    known = [s for s in identity_scores if s.seen is not None]
    if not known:
        return None, None
    seen = [s for s in known if s.seen]
    held = [s for s in known if not s.seen]
    return _part(sum(s.passed for s in seen), len(seen)), _part(sum(s.passed for s in held), len(held))
