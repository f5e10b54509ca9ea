"""What an eval produces: `Target` (what was scored, `workbench.models.target`), `Row` (one target under one
template, scored), and `score_row`, the one function that turns replies into a row (the sweep, `--responses` and
`--from-log` all go through it, via `score_rows`, so the same replies always give the same numbers).

`score_rows` also gives each checkpoint the base's replies as the reference for retention and pairs its
general items with the base's (`pair_rows`: kept, lost, gained, never known), the evidence the verdict uses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from workbench.evals.evalset import EvalItem
from workbench.evals.scoring import Aggregates, ItemScore, aggregate, identity_references, score_item
from workbench.evals.stats import mcnemar_one_sided, wilson
from workbench.models.target import (  # noqa: F401 - the eval's names for them
    ADAPTER,
    BASE,
    CHECKPOINT,
    MERGED,
    Target,
    iteration_of,
)


def target_from_label(label: str | None) -> Target:
    """The target a saved response's ``checkpoint`` label names ("base", "iter_20", anything else)."""
    if not label or label == BASE:
        return Target(BASE, BASE)
    it = iteration_of(label)
    return Target(label, CHECKPOINT if it is not None else ADAPTER, iteration=it)


@dataclass
class Row:
    """One target scored under one chat template."""

    target: Target
    template: str
    items: list[ItemScore]
    agg: Aggregates
    #: How the replies were obtained: generated / cached counts, seconds (empty when re-scored).
    stats: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def iteration(self) -> int | None:
        return self.target.iteration

    @property
    def is_base(self) -> bool:
        return self.target.kind == BASE

    def to_dict(self, items: bool = True) -> dict:
        d = {**self.target.to_dict(), "template": self.template, **self.agg.to_dict()}
        if self.stats:
            d["stats"] = self.stats
        if items:
            d["items"] = [s.to_dict() for s in self.items]
        return d


def score_row(
    target: Target,
    template: str,
    items: Sequence[EvalItem],
    responses: Mapping[str, str],
    *,
    identity_refs=None,
    stats: dict | None = None,
    reference: Mapping[str, str] | None = None,
    training=None,
) -> Row:
    """Score `responses` (item id -> reply) of one target; items without a response are left out.

    `identity_refs` default to the identity answers among `items` (what a general reply must not claim).
    `reference`: the base's replies (item id -> reply) of the same template, for retention (ignored for the base
    itself). `training` (a `training.TrainingData`): marks prompts seen in training and the judged languages.
    """
    if identity_refs is None:
        identity_refs = identity_references(i for i in items if i.kind == "identity")
    ref = {} if reference is None or target.kind == BASE else reference
    scores = [score_item(i, responses[i.id], identity_refs, ref.get(i.id),
                         training.seen(i.prompt) if training is not None else None)
              for i in items if i.id in responses]
    judged = list(training.judged_langs) if training is not None else None
    return Row(target, template, scores, aggregate(scores, judged_langs=judged), stats or {})


def score_rows(
    entries: Sequence[tuple[Target, str, Mapping[str, str], dict | None]],
    items: Sequence[EvalItem],
    *,
    training=None,
) -> list[Row]:
    """Score (target, template, responses, stats) entries: every row through `score_row`, each checkpoint with
    the base's replies of its template as the retention reference; then `fill_vs_base` pairs them."""
    bases = {template: responses for target, template, responses, _ in entries if target.kind == BASE}
    rows = [score_row(target, template, items, responses, stats=stats, reference=bases.get(template),
                      training=training)
            for target, template, responses, stats in entries]
    fill_vs_base(rows)
    return rows


def order_rows(rows: list[Row]) -> list[Row]:
    """Base first, then checkpoints by iteration, then the others in the order given."""
    def key(ix_row):
        ix, r = ix_row
        if r.is_base:
            return (0, 0, ix)
        if r.iteration is not None:
            return (1, r.iteration, ix)
        return (2, 0, ix)

    return [r for _, r in sorted(enumerate(rows), key=key)]


def fill_vs_base(rows: list[Row]) -> None:
    """Set each row's `general_vs_base` and paired changes (`pair_rows`) from the base row of the same template."""
    base = {r.template: r.agg.general for r in rows if r.is_base}
    for r in rows:
        b = base.get(r.template)
        if r.agg.general is not None and b:
            r.agg.general_vs_base = round(r.agg.general / b, 4)
    pair_rows(rows)


def pair(base: Row, row: Row) -> dict:
    """The paired changes of `row` against `base` on the general prompts both answered.

    A prompt with reference answers is kept (both pass), lost (the base passed, the row fails), gained, or
    never-knew (both fail); one without reference answers counts by retention (kept when the row still gives the
    base's answer, lost when not; only where the base gave a real answer). Each item's `change` is set too.
    `drop` = (lost - gained) / compared; `p_value` is the one-sided exact McNemar test of "fewer than the base".
    """
    by_id = {s.id: s for s in base.items if s.kind == "general"}
    counts = {"kept": 0, "lost": 0, "gained": 0, "never-knew": 0}
    by_retention = 0
    for s in row.items:
        b = by_id.get(s.id)
        if s.kind != "general" or b is None:
            continue
        if s.gold:
            s.change = ("kept" if s.passed else "lost") if b.passed else ("gained" if s.passed else "never-knew")
        elif s.retained is not None:
            by_retention += 1
            s.change = "kept" if s.retained else "lost"
        else:
            continue
        counts[s.change] += 1
    n = sum(counts.values())
    kept, lost, gained, never = counts["kept"], counts["lost"], counts["gained"], counts["never-knew"]
    ci = wilson(lost, kept + lost)
    return {
        "against": base.name, "n": n, "base_known": kept + lost, "base_unknown": gained + never,
        "kept": kept, "lost": lost, "gained": gained, "never_knew": never, "by_retention": by_retention,
        "drop": round((lost - gained) / n, 4) if n else None,
        "lost_rate": round(lost / (kept + lost), 4) if kept + lost else None, "lost_ci": list(ci) if ci else None,
        "p_value": float(f"{mcnemar_one_sided(lost, gained):.4g}"),
    }


def pair_rows(rows: list[Row]) -> None:
    """Fill `agg.paired` of every non-base row that has a base row of its template with item replies."""
    bases = {r.template: r for r in rows if r.is_base and r.items}
    for r in rows:
        b = bases.get(r.template)
        if b is not None and not r.is_base and r.items:
            r.agg.paired = pair(b, r)
