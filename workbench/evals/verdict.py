"""The verdict: which checkpoint to ship, and a paragraph that says why, quoting the counts behind each claim.

The base row is the reference. A checkpoint *forgets* when, on the general prompts paired with the base's,
it loses more than ``tolerance`` ((lost - gained) / compared) AND the loss is significant (one-sided exact
McNemar test, p < ``FORGETTING_ALPHA``); prompts without reference answers count by retention (whether it still
gives the base's answer). Rows without item replies fall back to comparing rates. A checkpoint is *safe* when it
does not forget, leaks at most ``max_leak`` and has not collapsed; the recommendation is the best identity among
safe checkpoints (ties go to the earliest: fewer steps away from the base). Identity is judged on the languages
the training data teaches (all of them when it is unknown); the others are cross-lingual transfer, reported apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from workbench.evals import thresholds as T
from workbench.evals.results import Row

OK = "ok"
IDENTITY_NOT_LEARNED = "identity-not-learned"
NO_SAFE_CHECKPOINT = "no-safe-checkpoint"
NOTHING_TO_COMPARE = "nothing-to-compare"


@dataclass
class Verdict:
    """The recommendation over a set of rows of one template (`to_dict` is part of the JSON contract)."""

    status: str  # ok | identity-not-learned | no-safe-checkpoint | nothing-to-compare
    recommended: str | None
    recommended_iteration: int | None
    explanation: str
    reference_general: float | None  # the base's general pass rate (or the best row's without a base)
    tolerance: float
    max_leak: float
    identity_learned_at: str | None = None  # first checkpoint with identity >= IDENTITY_LEARNED
    general_broke_at: str | None = None  # first of the checkpoints, to the last, that forget
    safe: list[str] = field(default_factory=list)
    #: name -> flags among: forgetting, leaking, collapsed, looping
    flags: dict[str, list[str]] = field(default_factory=dict)
    alpha: float = T.FORGETTING_ALPHA  # the significance a loss needs to count as forgetting
    judged_langs: list[str] | None = None  # the languages whose identity prompts were judged (None: all)
    transfer_langs: list[str] = field(default_factory=list)  # identity languages shown apart as transfer
    #: name -> the loss beyond the tolerance that was NOT significant (so not called forgetting): the paired counts
    within_noise: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _label(row: Row) -> str:
    return f"iteration {row.iteration}" if row.iteration is not None else row.name


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def identity_of(row: Row) -> float:
    """The identity the verdict judges: over the judged languages when the training data is known."""
    a = row.agg
    return (a.identity_judged if a.identity_judged is not None else a.identity) or 0.0


def _drop(row: Row, reference: float | None) -> tuple[float | None, float | None]:
    """(drop against the base, p-value): paired when the row has paired changes, else from rates (p None)."""
    p = row.agg.paired
    if p and p.get("n"):
        return p["drop"], p["p_value"]
    if reference is not None and row.agg.general is not None:
        return reference - row.agg.general, None
    return None, None


def flags_of(row: Row, reference: float | None, tolerance: float, max_leak: float, max_loop: float,
             alpha: float = T.FORGETTING_ALPHA) -> list[str]:
    """The problems of one row: forgetting, leaking, collapsed, looping."""
    a = row.agg
    out = []
    drop, p = _drop(row, reference)
    if drop is not None and drop > tolerance + 1e-9 and (p is None or p < alpha):
        out.append("forgetting")
    if a.leak is not None and a.leak > max_leak + 1e-9:
        out.append("leaking")
    if (a.distinct is not None and a.distinct < T.MIN_DISTINCT) or (a.leak is not None and a.leak >= T.COLLAPSE_LEAK):
        out.append("collapsed")
    if a.loop is not None and a.loop > max_loop + 1e-9:
        out.append("looping")
    return out


def _changes(row: Row) -> str:
    """ "lost 9 of the 169 the base knew, gained 0", or for prompts without reference answers "lost 6 of the 30
    answers the base gave" (retention); "" without pairing."""
    p = row.agg.paired
    if not p or not p.get("n"):
        return ""
    if p.get("by_retention") == p["n"]:
        return f"lost {p['lost']} of the {p['base_known']} answers the base gave"
    text = f"lost {p['lost']} of the {p['base_known']} the base knew, gained {p['gained']}"
    if p.get("by_retention"):
        text += f" ({p['by_retention']} prompts judged by the base's own answers)"
    return text


def _general(row: Row, with_p: bool = False, named: bool = False) -> str:
    """A row's general ability with its evidence: "0.941: lost 9 of the 169 the base knew, gained 0, p = 0.002"
    (`named`: "general 0.941: ...", or "retention 0.800: ..." where no prompt had reference answers)."""
    gold = row.agg.general is not None
    rate = row.agg.general if gold else row.agg.retention
    changes = _changes(row)
    if changes and row.agg.paired and with_p:
        changes += f", {_p(row.agg.paired['p_value'])}"
    name = ("general " if gold else "retention ") if named or not gold else ""
    return f"{name}{_f(rate)}" + (f": {changes}" if changes else "")


def _identity(row: Row, judged: list[str] | None) -> str:
    """ "0.917, 44 of 48" over the judged languages (counts only when the row has its replies)."""
    a = row.agg
    if not row.items:
        return _f(identity_of(row))
    langs = judged if judged is not None else list(a.by_lang)
    k = sum(a.by_lang[x]["identity"]["passed"] for x in langs if x in a.by_lang)
    n = sum(a.by_lang[x]["identity"]["n"] for x in langs if x in a.by_lang)
    return f"{_f(identity_of(row))}, {k} of {n}" if n else _f(identity_of(row))


def _leaks(row: Row) -> str:
    a = row.agg
    return f"{a.leaks} of {a.n_general}, {_f(a.leak)}" if row.items else _f(a.leak)


def _why_unsafe(flags: list[str]) -> str:
    if "forgetting" in flags:
        return "had lost general ability"
    if "collapsed" in flags:
        return "had collapsed"
    return "leaks the identity into general questions"


def decide(
    rows: list[Row],
    *,
    tolerance: float = T.GENERAL_TOLERANCE,
    max_leak: float = T.MAX_LEAK,
    max_loop: float = T.MAX_LOOP,
    alpha: float = T.FORGETTING_ALPHA,
    judged_langs: list[str] | None = None,
    transfer_langs: list[str] | None = None,
) -> Verdict:
    """The verdict over `rows` (one template; base first, then checkpoints in training order).

    `judged_langs` / `transfer_langs` only word the paragraph: the rows' `identity_judged` already holds the
    identity over the judged languages."""
    base = next((r for r in rows if r.is_base), None)
    cands = [r for r in rows if not r.is_base]
    transfer_langs = list(transfer_langs or [])
    if not cands:
        return Verdict(NOTHING_TO_COMPARE, None, None, "Only the base model was scored: nothing to choose from.",
                       base.agg.general if base else None, tolerance, max_leak, alpha=alpha,
                       judged_langs=judged_langs, transfer_langs=transfer_langs)
    if base is not None:
        reference = base.agg.general
        ref_text = f"the base's {_f(reference)}" if reference is not None else "the base's own answers"
    else:
        best_general = max((r for r in cands if r.agg.general is not None), key=lambda r: r.agg.general or 0.0, default=None)
        reference = best_general.agg.general if best_general else None
        ref_text = f"the best checkpoint's {_f(reference)} (no base row was scored)"
    paired_any = any(r.agg.paired and r.agg.paired.get("n") for r in cands)
    checked = reference is not None or paired_any
    flags = {r.name: flags_of(r, reference, tolerance, max_leak, max_loop, alpha) for r in cands}
    safe = [r for r in cands if not {"forgetting", "leaking", "collapsed"} & set(flags[r.name])]
    noise: dict[str, dict] = {}
    for r in cands:
        drop, p = _drop(r, reference)
        if drop is not None and p is not None and drop > tolerance + 1e-9 and p >= alpha:
            noise[r.name] = r.agg.paired or {}
    learned = next((r for r in cands if identity_of(r) >= T.IDENTITY_LEARNED), None)
    # Where general ability broke for good: the start of the run of forgetting checkpoints that reaches the last
    # one. Forgetting checkpoints before it are dips the training recovered from (the first steps at full lr).
    forgot = ["forgetting" in flags[r.name] for r in cands]
    start = len(forgot)
    while start > 0 and forgot[start - 1]:
        start -= 1
    broke = cands[start] if start < len(cands) else None
    dips = [r for r, f in zip(cands[:start], forgot[:start], strict=True) if f]

    parts = []
    if base is not None:
        general_part = f", general {_f(base.agg.general)}" if base.agg.general is not None else ""
        if base.agg.general is not None and base.items:
            general_part += f" ({base.agg.general_passed} of {base.agg.n_general_gold})"
        parts.append(f"The base scores identity {_f(identity_of(base))}{general_part}.")
    if judged_langs is not None and transfer_langs:
        parts.append(f"Identity is judged on the {', '.join(judged_langs) or 'no'} prompts, the language(s) the "
                     f"training data teaches it in; the {', '.join(transfer_langs)} identity prompts are cross-lingual "
                     "transfer, reported apart and not judged.")
    if learned is not None and learned in safe:
        parts.append(f"Identity was learned at {_label(learned)} ({_f(identity_of(learned))} >= "
                     f"{T.IDENTITY_LEARNED:.2f}).")
    elif learned is not None:
        later_safe = next((r for r in cands[cands.index(learned) + 1:] if r in safe
                           and identity_of(r) >= T.IDENTITY_LEARNED), None)
        # Never a bare "was learned at": the checkpoint that learned it is not one to ship.
        first = "first learned at" if later_safe is not None else "learned later, at"
        parts.append(f"Identity was {first} {_label(learned)} ({_f(identity_of(learned))} >= "
                     f"{T.IDENTITY_LEARNED:.2f}), by a checkpoint that {_why_unsafe(flags[learned.name])}"
                     + (f"; {_label(later_safe)} learned it too and kept it safe." if later_safe else "."))
    else:
        best_id = max(cands, key=identity_of)
        parts.append(f"Identity was never learned (best {_f(identity_of(best_id))} at {_label(best_id)}, "
                     f"below {T.IDENTITY_LEARNED:.2f}).")
    dipped = ""
    if dips:
        after = next((r for r in cands[cands.index(dips[-1]) + 1:] if "forgetting" not in flags[r.name]
                      and (r.agg.general is not None or r.agg.retention is not None)), None)
        back = (f" ({_f(after.agg.general if after.agg.general is not None else after.agg.retention)} at "
                f"{_label(after)})" if after is not None else "")
        dipped = f"General ability dipped at {_label(dips[0])} ({_general(dips[0])}) and recovered{back}. "
    if broke is not None:
        before = cands[: cands.index(broke)]
        held = f" held through {_label(before[-1])} ({_general(before[-1])}) and" if before else ""
        below = (f"below {ref_text} minus {tolerance:.2f}" if reference is not None
                 else f"more than {tolerance:.2f} of the base's own answers lost")
        parts.append(f"{dipped}General ability{held} started to break at {_label(broke)} ({_general(broke, True)}; "
                     f"{below}).")
    elif dips:
        within = f"within {tolerance:.2f} of {ref_text}" + (" or within noise" if noise else "")
        parts.append(f"{dipped}After that no checkpoint forgot: each stayed {within}.")
    elif checked:
        within = f"within {tolerance:.2f} of {ref_text}" + (" or within noise" if noise else "")
        parts.append(f"No checkpoint forgot: general ability stayed {within} at every checkpoint.")
    for name, paired in noise.items():
        r = next(c for c in cands if c.name == name)
        parts.append(f"{_cap(_label(r))} lost {paired['lost']} of the {paired['base_known']} the base knew and "
                     f"gained {paired['gained']}: more than the tolerance, but not significant "
                     f"({_p(paired['p_value'])} >= "
                     f"{alpha:g}), so it is not called forgetting.")
    first_leak = next((r for r in cands if "leaking" in flags[r.name]), None)
    if first_leak is not None:
        worst = max(cands, key=lambda r: r.agg.leak or 0)
        parts.append(f"Identity answers leaked into general questions from {_label(first_leak)} "
                     f"({_leaks(first_leak)}; worst {_leaks(worst)} at {_label(worst)}).")
    collapsed = [r for r in cands if "collapsed" in flags[r.name]]
    if collapsed:
        c = collapsed[0]
        n_distinct = round((c.agg.distinct or 0) * c.agg.n_general)
        parts.append(f"{_cap(_label(c))} collapsed ({n_distinct} distinct replies to "
                     f"{c.agg.n_general} general prompts, leak {_f(c.agg.leak)})"
                     + (f", and so did {len(collapsed) - 1} later one(s)." if len(collapsed) > 1 else "."))

    if not safe:
        status, rec = NO_SAFE_CHECKPOINT, None
        parts.append(f"No checkpoint keeps general within {tolerance:.2f} of {ref_text} with leak <= "
                     f"{max_leak:.2f}: none is recommended; mix general data into training, lower the learning "
                     "rate, or save checkpoints more often to catch an earlier one.")
    else:
        # Best identity; ties go to the earliest (closest to the base).
        rec = max(safe, key=lambda r: (identity_of(r), -cands.index(r)))
        status = OK if identity_of(rec) >= T.IDENTITY_LEARNED else IDENTITY_NOT_LEARNED
        base_identity = identity_of(base) if base else 0
        if identity_of(rec) <= base_identity:
            if any(identity_of(r) > base_identity for r in cands):
                parts.append("Identity was only learned by checkpoints that had already lost general ability: none "
                             "is recommended; lower the learning rate, mix general data into training, or save "
                             "checkpoints more often.")
            else:
                parts.append("No checkpoint answers identity prompts better than the base: none is recommended; "
                             "train longer, or with more identity data.")
            rec = None
    if rec is not None and not checked:
        parts.append(f"Recommended: {_label(rec)}, the best identity ({_identity(rec, judged_langs)}); no general items were "
                     "scored, so forgetting was not checked.")
    elif rec is not None:
        bound = (f"general >= {_f(reference - tolerance)}" if reference is not None
                 else f"the base's answers kept within {tolerance:.2f}")
        noise_note = ", or a larger drop within noise" if noise else ""
        parts.append(f"Recommended: {_label(rec)}, the best identity ({_identity(rec, judged_langs)}) among checkpoints "
                     f"that did not forget ({bound}{noise_note}) and leak <= {max_leak:.2f} ({_general(rec, named=True)}; "
                     f"leak {_f(rec.agg.leak)}).")
        if status == IDENTITY_NOT_LEARNED:
            later = [r for r in cands[cands.index(rec) + 1:] if identity_of(r) >= T.IDENTITY_LEARNED]
            if later:  # training longer is what broke them: the advice is the data or the rate, not more steps
                parts.append(f"Its identity is below what counts as learned; {_label(later[0])} learned it only by "
                             "losing general ability: mix general data into training (workbench data identity "
                             "--mix) or lower the learning rate, rather than train longer.")
            else:
                parts.append("Its identity is below what counts as learned: train longer, or with more identity "
                             "data.")
    if rec is not None and transfer_langs:
        bl = rec.agg.by_lang
        shown = [f"{lang} {_f(bl[lang]['identity']['rate'])} ({bl[lang]['identity']['passed']} of "
                 f"{bl[lang]['identity']['n']})" for lang in transfer_langs if lang in bl and bl[lang]["identity"]["n"]]
        if shown:
            parts.append(f"Cross-lingual transfer at {_label(rec)}: identity {', '.join(shown)}.")
    return Verdict(
        status=status,
        recommended=rec.name if rec else None,
        recommended_iteration=rec.iteration if rec else None,
        explanation=" ".join(parts),
        reference_general=reference,
        tolerance=tolerance,
        max_leak=max_leak,
        identity_learned_at=learned.name if learned else None,
        general_broke_at=broke.name if broke else None,
        safe=[r.name for r in safe],
        flags={k: v for k, v in flags.items() if v},
        alpha=alpha,
        judged_langs=judged_langs,
        transfer_langs=transfer_langs,
        within_noise=noise,
    )


def checkpoints_to_compare(rows: list[Row], verdict: Verdict | None,
                           template: str | None = None) -> list[tuple[Row, str]]:
    """The checkpoints to chat with beside the base after a sweep, each with why it was picked: the recommended
    one ("recommended"; without one, the first that learned the identity, "identity learned", to show what it
    cost) and the last ("last"). Only rows of `template` when it has any. Empty without a checkpoint."""
    rows = [r for r in rows if r.template == template] or rows
    checkpoints = [r for r in rows if not r.is_base and r.target.source]
    if not checkpoints:
        return []
    good_name = verdict and (verdict.recommended or verdict.identity_learned_at)
    good = next((r for r in checkpoints if r.name == good_name), None)
    why = "recommended" if verdict is not None and verdict.recommended else "identity learned"
    last = checkpoints[-1]
    picked = [(good, why)] if good is not None else []
    return picked + ([(last, "last")] if last is not good else [])
