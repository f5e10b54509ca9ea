"""What an eval produces: `Target` (what was scored), `Row` (one target under one template, scored),
and `score_row`, the one function that turns replies into a row (the sweep, `--responses` and
`--from-log` all go through it, so the same replies always give the same numbers)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from workbench.evals.evalset import EvalItem
from workbench.evals.scoring import Aggregates, ItemScore, aggregate, identity_references, score_item

BASE, CHECKPOINT, ADAPTER, MERGED = "base", "checkpoint", "adapter", "merged"
_ITER = re.compile(r"iter[_-]?(\d+)")


@dataclass(frozen=True)
class Target:
    """One model to score: the base, a checkpoint (``iter_N.pth``), a PEFT adapter, or a merged model."""

    name: str  # the label shown everywhere: "base", "iter_20", an adapter's folder name, ...
    kind: str  # base | checkpoint | adapter | merged
    source: str | None = None  # the .pth / adapter folder / merged model folder
    iteration: int | None = None
    config: str | None = None  # the training config (an iter_N.pth needs it)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "source": self.source, "iteration": self.iteration}


def iteration_of(name: str) -> int | None:
    """The training iteration in a checkpoint name (``iter_600``, ``iter_600.pth``, ``hf/iter_600``)."""
    m = _ITER.search(name)
    return int(m.group(1)) if m else None


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
    identity_refs: Sequence[str] | None = None,
    stats: dict | None = None,
) -> Row:
    """Score `responses` (item id -> reply) of one target; items without a response are left out.

    `identity_refs` default to the identity answers among `items` (what a general reply must not be).
    """
    if identity_refs is None:
        identity_refs = identity_references(i for i in items if i.kind == "identity")
    scores = [score_item(i, responses[i.id], identity_refs) for i in items if i.id in responses]
    return Row(target, template, scores, aggregate(scores), stats or {})


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
    """Set each row's `general_vs_base` from the base row of the same template."""
    base = {r.template: r.agg.general for r in rows if r.is_base}
    for r in rows:
        b = base.get(r.template)
        if r.agg.general is not None and b:
            r.agg.general_vs_base = round(r.agg.general / b, 4)
