"""The verdict: which checkpoint to ship, and a paragraph that says why.

The base row is the reference. A checkpoint is *safe* when its general pass rate is at least
``base - tolerance`` and its leak rate at most ``max_leak``; the recommendation is the best identity
among safe checkpoints (ties go to the earliest: fewer steps away from the base). Checkpoints that
collapsed (few distinct replies, or identity answers everywhere) are flagged whatever else they score.
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
    general_broke_at: str | None = None  # first of the checkpoints, to the last, whose general is below the tolerance
    safe: list[str] = field(default_factory=list)
    #: name -> flags among: forgetting, leaking, collapsed, looping
    flags: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _label(row: Row) -> str:
    return f"iteration {row.iteration}" if row.iteration is not None else row.name


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def flags_of(row: Row, reference: float | None, tolerance: float, max_leak: float, max_loop: float) -> list[str]:
    """The problems of one row: forgetting, leaking, collapsed, looping."""
    a = row.agg
    out = []
    if reference is not None and a.general is not None and a.general < reference - tolerance - 1e-9:
        out.append("forgetting")
    if a.leak is not None and a.leak > max_leak + 1e-9:
        out.append("leaking")
    if (a.distinct is not None and a.distinct < T.MIN_DISTINCT) or (a.leak is not None and a.leak >= T.COLLAPSE_LEAK):
        out.append("collapsed")
    if a.loop is not None and a.loop > max_loop + 1e-9:
        out.append("looping")
    return out


def decide(
    rows: list[Row],
    *,
    tolerance: float = T.GENERAL_TOLERANCE,
    max_leak: float = T.MAX_LEAK,
    max_loop: float = T.MAX_LOOP,
) -> Verdict:
    """The verdict over `rows` (one template; base first, then checkpoints in training order)."""
    base = next((r for r in rows if r.is_base), None)
    cands = [r for r in rows if not r.is_base]
    if not cands:
        return Verdict(NOTHING_TO_COMPARE, None, None, "Only the base model was scored: nothing to choose from.",
                       base.agg.general if base else None, tolerance, max_leak)
    if base is not None:
        reference, ref_text = base.agg.general, f"the base's {_f(base.agg.general)}"
    else:
        best_general = max((r for r in cands if r.agg.general is not None), key=lambda r: r.agg.general, default=None)
        reference = best_general.agg.general if best_general else None
        ref_text = f"the best checkpoint's {_f(reference)} (no base row was scored)"
    flags = {r.name: flags_of(r, reference, tolerance, max_leak, max_loop) for r in cands}
    safe = [r for r in cands if "forgetting" not in flags[r.name] and "leaking" not in flags[r.name]
            and "collapsed" not in flags[r.name]]
    learned = next((r for r in cands if (r.agg.identity or 0) >= T.IDENTITY_LEARNED), None)
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
        parts.append(f"The base scores identity {_f(base.agg.identity)}{general_part}.")
    if learned is not None:
        parts.append(f"Identity was learned at {_label(learned)} ({_f(learned.agg.identity)} >= "
                     f"{T.IDENTITY_LEARNED:.2f}).")
    else:
        best_id = max(cands, key=lambda r: r.agg.identity or 0)
        parts.append(f"Identity was never learned (best {_f(best_id.agg.identity)} at {_label(best_id)}, "
                     f"below {T.IDENTITY_LEARNED:.2f}).")
    dipped = ""
    if dips:
        after = next(r for r in cands[cands.index(dips[-1]) + 1:] if "forgetting" not in flags[r.name])
        dipped = (f"General ability dipped at {_label(dips[0])} ({_f(dips[0].agg.general)}) and recovered "
                  f"({_f(after.agg.general)} at {_label(after)}). ")
    if broke is not None:
        before = cands[: cands.index(broke)]
        held = f" held through {_label(before[-1])} ({_f(before[-1].agg.general)}) and" if before else ""
        parts.append(f"{dipped}General ability{held} started to break at {_label(broke)} ({_f(broke.agg.general)}, "
                     f"below {ref_text} minus {tolerance:.2f}).")
    elif dips:
        parts.append(f"{dipped}After that it stayed within {tolerance:.2f} of {ref_text}.")
    elif reference is not None:
        parts.append(f"General ability stayed within {tolerance:.2f} of {ref_text} at every checkpoint.")
    first_leak = next((r for r in cands if "leaking" in flags[r.name]), None)
    if first_leak is not None:
        worst = max(cands, key=lambda r: r.agg.leak or 0)
        parts.append(f"Identity answers leaked into general questions from {_label(first_leak)} "
                     f"({_f(first_leak.agg.leak)}; worst {_f(worst.agg.leak)} at {_label(worst)}).")
    collapsed = [r for r in cands if "collapsed" in flags[r.name]]
    if collapsed:
        c = collapsed[0]
        n_distinct = round((c.agg.distinct or 0) * c.agg.n_general)
        parts.append(f"{_label(c)[0].upper() + _label(c)[1:]} collapsed ({n_distinct} distinct replies to "
                     f"{c.agg.n_general} general prompts, leak {_f(c.agg.leak)})"
                     + (f", and so did {len(collapsed) - 1} later one(s)." if len(collapsed) > 1 else "."))

    if not safe:
        status, rec = NO_SAFE_CHECKPOINT, None
        parts.append(f"No checkpoint keeps general within {tolerance:.2f} of {ref_text} with leak <= "
                     f"{max_leak:.2f}: none is recommended; mix general data into training, lower the learning "
                     "rate, or save checkpoints more often to catch an earlier one.")
    else:
        # Best identity; ties go to the earliest (closest to the base).
        rec = max(safe, key=lambda r: (r.agg.identity or 0, -cands.index(r)))
        status = OK if (rec.agg.identity or 0) >= T.IDENTITY_LEARNED else IDENTITY_NOT_LEARNED
        base_identity = (base.agg.identity or 0) if base else 0
        if (rec.agg.identity or 0) <= base_identity:
            if any((r.agg.identity or 0) > base_identity for r in cands):
                parts.append("Identity was only learned by checkpoints that had already lost general ability: none "
                             "is recommended; lower the learning rate, mix general data into training, or save "
                             "checkpoints more often.")
            else:
                parts.append("No checkpoint answers identity prompts better than the base: none is recommended; "
                             "train longer, or with more identity data.")
            rec = None
    if rec is not None and reference is None:
        parts.append(f"Recommended: {_label(rec)}, the best identity ({_f(rec.agg.identity)}); no general items were "
                     "scored, so forgetting was not checked.")
    elif rec is not None:
        parts.append(f"Recommended: {_label(rec)}, the best identity ({_f(rec.agg.identity)}) among checkpoints whose "
                     f"general stays >= {_f(reference - tolerance)} and leak <= {max_leak:.2f} "
                     f"(general {_f(rec.agg.general)}, leak {_f(rec.agg.leak)}).")
        if status == IDENTITY_NOT_LEARNED:
            later = [r for r in cands[cands.index(rec) + 1:] if (r.agg.identity or 0) >= T.IDENTITY_LEARNED]
            if later:  # training longer is what broke them: the advice is the data or the rate, not more steps
                parts.append(f"Its identity is below what counts as learned; {_label(later[0])} learned it only by "
                             "losing general ability: mix general data into training (workbench data identity "
                             "--mix) or lower the learning rate, rather than train longer.")
            else:
                parts.append("Its identity is below what counts as learned: train longer, or with more identity "
                             "data.")
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
    )
