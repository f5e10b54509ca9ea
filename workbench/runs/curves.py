"""A run's whole loss curve, for comparing runs in one chart (the TUI's compare view).

A run's own losses come from its ``vis_data/scalars.json`` (the full-precision values mmengine stored;
`follow.read_scalars`), or from its log when there is none; a resumed run's curve starts with the losses of
the runs it resumed, up to where it took over (`follow.lineage_metrics`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from workbench.runs.events import MetricsEvent
from workbench.runs.follow import find_log_file, lineage_metrics, read_scalars, resume_iteration
from workbench.runs.model import Run


@dataclass
class LossCurve:
    """The training loss of `run` by iteration, oldest first; the first `inherited` points are its parents'."""

    run: Run
    iters: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    inherited: int = 0

    @property
    def last(self) -> float | None:
        return next((v for v in reversed(self.loss) if math.isfinite(v)), None)

    @property
    def best(self) -> tuple[int, float] | None:
        """(iteration, loss) of the lowest loss logged."""
        points = [(v, i) for i, v in zip(self.iters, self.loss, strict=True) if math.isfinite(v)]
        if not points:
            return None
        v, i = min(points)
        return i, v


def own_losses(run: Run) -> dict[int, float]:
    """The losses `run` logged itself, by iteration: scalars.json's, else its log's."""
    from workbench.runs.logparse import parse_file

    log = find_log_file(run)
    if log is None or not log.is_file():
        return {}
    scalars = log.parent / "vis_data" / "scalars.json"
    rows = read_scalars(scalars) if scalars.is_file() else {}
    if rows:
        return {it: float(row["loss"]) for it, row in rows.items()}
    return {ev.iter: ev.loss for ev in parse_file(log)
            if isinstance(ev, MetricsEvent) and ev.mode == "train" and ev.loss is not None}


def loss_curve(run: Run) -> LossCurve:
    """`run`'s loss curve, its parents' part first (a resumed run's iterations continue theirs)."""
    took_over = resume_iteration(run) or 0
    inherited = {ev.iter: ev.loss for ev in lineage_metrics(run) if ev.loss is not None and ev.iter <= took_over}
    own = {it: v for it, v in own_losses(run).items() if it > took_over or not inherited}
    points = sorted({**inherited, **own}.items())
    return LossCurve(run, [i for i, _ in points], [v for _, v in points],
                     inherited=sum(1 for i, _ in points if i in inherited and i not in own))


def loss_curves(run_ids: list[str]) -> list[LossCurve]:
    """The loss curves of the runs `run_ids` (ids, prefixes or names, as `registry.get` takes), in that order."""
    from workbench.runs import registry

    return [loss_curve(registry.get(ref)) for ref in run_ids]
