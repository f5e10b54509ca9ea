"""Sweep one registered run's checkpoints, as the Eval screen does: the report plus the expected answers of
every item (for the replies view), or the report from the reply cache alone (no model loaded).

Both are `evaluate.sweep_report` on ``Request(run=...)``, the `workbench eval --run` sweep.
"""

from __future__ import annotations

import threading

from workbench.progress import ProgressFn


def parse_variables(text: str) -> dict[str, str]:
    """``name=Tutu org=Workbench Lab`` (or comma-separated pairs) to a dict, as `--var` reads them."""
    import re

    from workbench.evals.evaluate import parse_vars

    pairs = [p.strip() for p in re.split(r",|\s+(?=\w+=)", text) if p.strip()]
    return parse_vars(pairs)


def sweep_run(run_id: str, sets: list[str], progress: ProgressFn | None, settings=None,
              variables: dict | None = None, iters: str | None = None, cancel: threading.Event | None = None):
    """Sweep a run's checkpoints on `sets`; returns the report and the expected answers of every item by id.
    Setting `cancel` stops it (`workbench.evals.sweep.SweepCancelled`); what it generated stays cached."""
    from workbench.evals.evaluate import Request, load_evalsets, sweep_report

    backend = settings.default_backend if settings is not None else "transformers"
    options = {"device": settings.device} if settings is not None else {}
    # trust_remote_code: the training config's, else the setting, as chat decides it (`workbench.targets`)
    req = Request(run=run_id, evalsets=tuple(sets), backend=backend, backend_options=options, settings=settings,
                  variables=dict(variables or {}), iters=iters)
    report = sweep_report(req, progress=progress, cancel=cancel)
    evalset, _ = load_evalsets(req.evalsets, report.meta.get("vars") or {})
    return report, {item.id: list(item.answers) for item in evalset.items}


def cached_sweep(run_id: str, sets: list[str], settings=None, variables: dict | None = None,
                 iters: str | None = None):
    """`sweep_run`'s result when every reply it needs is already cached, else None; never loads a model.

    The sweep looks a target's replies up in the cache and reports progress before it loads a model for
    what is missing: a progress callback that cancels it at the first target not fully cached keeps it
    from generating anything.
    """
    from workbench.errors import WorkbenchError
    from workbench.evals.evaluate import Request, resolve_targets
    from workbench.evals.sweep import SweepCancelled

    try:
        targets = len(resolve_targets(Request(run=run_id, iters=iters, settings=settings)).targets)
    except WorkbenchError:  # no base, no checkpoints...: `g` will say so; a probe stays quiet
        return None
    seen: list[str] = []
    cancel = threading.Event()

    def progress(done: int, total: int, label: str) -> None:
        if label not in seen:
            seen.append(label)
        if not targets or done != len(seen) * (total // targets):
            cancel.set()

    try:
        return sweep_run(run_id, sets, progress, settings, variables, iters, cancel)
    except (SweepCancelled, WorkbenchError):
        return None
