"""The eval front door that `workbench eval` and the TUI's Eval screen both call.

`Request` says what to score and how; `sweep_report`, `responses_report` and `log_report` turn it into an
`EvalReport` (rows, verdict, gates, warnings). What a request scores (the base model, the checkpoints of a
run, their names, trust_remote_code, the {name}/{org} variables) is found by `workbench.targets.resolve`, the
resolver chat uses too; the chat template by `workbench.models.templates.resolve_format`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import BadInput
from workbench.evals import thresholds as T
from workbench.evals.evalset import EvalSet, combine, resolve
from workbench.evals.report import EvalReport, compare_templates
from workbench.evals.results import Row, order_rows
from workbench.progress import ProgressFn
from workbench.targets import Resolved

if TYPE_CHECKING:
    from workbench.settings import Settings

Log = Callable[[str], None]


@dataclass
class Request:
    """What to score. Exactly one source: `run`, `checkpoints` (a work dir), `adapters`, `merged`, or
    only `base`. The base model comes from `base`, else the run's config, else the adapter's config."""

    run: str | None = None
    checkpoints: str | None = None
    adapters: Sequence[str] = ()
    merged: Sequence[str] = ()
    base: str | None = None
    config: str | None = None  # the training config (for iter_N.pth outside a work dir)
    iters: str | None = None  # "10,20,last": only these checkpoints
    evalsets: Sequence[str] = ("identity", "general")
    variables: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    compare_templates: Sequence[str] = ()
    max_new_tokens: int = T.EVAL_MAX_NEW_TOKENS
    batch_size: int | None = None  # None: the backend's own (the transformers backend's follows its device)
    backend: str = "transformers"
    backend_options: dict = field(default_factory=dict)
    #: None: the training config's choice, else the trust_remote_code setting (`workbench.targets.resolve`).
    trust_remote_code: bool | None = None
    #: The front end's `workbench.settings.Settings` (None: read them when a setting is needed).
    settings: Settings | None = None
    use_cache: bool = True
    tolerance: float = T.GENERAL_TOLERANCE
    max_leak: float = T.MAX_LEAK
    fail_under: dict[str, float] = field(default_factory=dict)
    maxes: dict[str, float] = field(default_factory=dict)
    gate: str = "recommended"
    save_responses: str | None = None
    plot: str | None = None
    #: The training data file (default: the one the training config names): splits identity into prompts seen
    #: in training and held out, and decides which languages' identity the verdict judges.
    train_data: str | None = None


# -- variables and eval sets --------------------------------------------------------------------------

def parse_vars(pairs: Sequence[str]) -> dict[str, str]:
    """``["name=Tutu", "org=Workbench Lab"]`` -> dict; a pair without ``=`` is a `BadInput`."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or not key.isidentifier():
            raise BadInput(f"--var {pair!r}: expected NAME=VALUE (for example --var name=Tutu)")
        out[key] = value
    return out


def training_for(req: Request, config: str | None, variables: dict[str, str], log: Log, saved: Sequence[str] = ()):
    """The run's training data (`training.TrainingData`): `req.train_data`, else the files the config names, else
    `saved` (the files a saved-responses file recorded, if still there); None when unknown (then identity is not
    split into seen / held-out and every language is judged)."""
    from workbench.evals.training import training_of

    given = req.train_data or (None if config else [p for p in saved if Path(p).is_file()] or None)
    data = training_of(config, given, variables.values(), warn=lambda m: log(f"warning: {m}"))
    if data is not None:
        log(f"training data: {', '.join(data.paths)} ({data.conversations} conversations, "
            f"identity judged on {', '.join(data.judged_langs) or 'no'} prompts)")
    return data


def training_meta(data, evalset: EvalSet) -> dict | None:
    """meta["training"]: the data's paths and languages, the languages judged and those shown as transfer."""
    if data is None:
        return None
    langs = sorted({i.lang for i in evalset.items if i.kind == "identity"})
    return {**data.to_dict(), "transfer_langs": [lang for lang in langs if lang not in data.judged_langs]}


def load_evalsets(specs: Sequence[str], variables: dict[str, str]) -> tuple[EvalSet, list[dict]]:
    """The eval sets named by `specs` (built-in names or paths), combined and filled with `variables`."""
    sets = [resolve(s) for s in specs]
    combined = combine(sets)
    return combined.fill(variables), [{"name": s.name, "path": str(s.path), "items": len(s)} for s in sets]


# -- targets ------------------------------------------------------------------------------------------

def resolve_targets(req: Request, *, need_checkpoints: bool = True) -> Resolved:
    """Find the base model, the training config and the targets of `req` (base first): `workbench.targets.resolve`
    with eval's rules (damaged checkpoints left out, a base needed unless only merged models are scored)."""
    from workbench.targets import require_base, resolve

    res = resolve(run=req.run, work_dir=req.checkpoints, adapters=list(req.adapters), merged=list(req.merged),
                  base=req.base, config=req.config, iters=req.iters, trust_remote_code=req.trust_remote_code,
                  variables=req.variables, settings=req.settings, checkpoints=need_checkpoints, check=True)
    require_base(res, merged=bool(req.merged))
    return res


# -- finishing a report ---------------------------------------------------------------------------------

def finish(rows: list[Row], req: Request, meta: dict, warnings: list[str], *, main_template: str | None) -> EvalReport:
    """Order rows, decide the verdict (on the main template's rows), check the gates, plot."""
    from workbench.evals import gates as G
    from workbench.evals.verdict import decide

    rows = order_rows(rows)
    main = [r for r in rows if main_template is None or r.template == main_template] or rows
    training = meta.get("training") or {}
    verdict = decide(main, tolerance=req.tolerance, max_leak=req.maxes.get("leak", req.max_leak),
                     judged_langs=training.get("judged_langs"), transfer_langs=training.get("transfer_langs")) if rows else None
    report = EvalReport(rows, verdict, meta, warnings)
    if len({r.template for r in rows}) > 1:
        report.comparison = compare_templates(rows, meta.get("training_template"))
    if req.fail_under or req.maxes:
        chosen = G.gated_rows(main, req.gate, verdict.recommended if verdict else None)
        if isinstance(chosen, str):
            report.gate_message = chosen
        else:
            report.gates = G.check(chosen, req.fail_under, req.maxes)
    if req.plot:
        from workbench.evals.plot import plot_curve

        report.plot = str(plot_curve(main, verdict, req.plot, title=meta.get("source", "")))
    return report


def eval_settings(req: Request):
    """Greedy decoding with the request's token budget (eval compares models, so never sample)."""
    from workbench.models.base import GenerationSettings

    if req.max_new_tokens < 1:
        raise BadInput(f"--max-new-tokens {req.max_new_tokens}: must be at least 1")
    return GenerationSettings(max_new_tokens=req.max_new_tokens, temperature=0.0)


def resolve_vars(res: Resolved, log: Log) -> dict[str, str]:
    """--var values, else the name/org of the run's dataset recipe (as `resolve_targets` found them), said in `log`."""
    if res.variables_from:
        log(f"variables from the recipe of {res.variables_from}: "
            + ", ".join(f"{k}={v}" for k, v in res.variables.items()))
    return dict(res.variables)


def sweep_report(req: Request, progress: ProgressFn | None = None, log: Log | None = None,
                 cancel: threading.Event | None = None) -> EvalReport:
    """Score the base and every target of `req` with one loaded base (the `workbench eval` sweep)."""
    from workbench.evals import responses as R
    from workbench.evals.sweep import Plan, generate, score
    from workbench.models.base import settings_options
    from workbench.models.templates import get_format, resolve_format

    log = log or (lambda _m: None)
    res = resolve_targets(req)
    variables = resolve_vars(res, log)
    evalset, sets_meta = load_evalsets(req.evalsets, variables)
    resolved = resolve_format(req.template, req.system, res.config, res.base or (req.merged[0] if req.merged else None))
    warnings = [*res.warnings, *([resolved.warning] if resolved.warning else [])]
    formats = [resolved.format]
    if req.compare_templates:
        system = resolved.format.system if req.system is None else req.system
        formats = [get_format(name, system) for name in req.compare_templates]
        if resolved.training_format and resolved.training_format not in req.compare_templates:
            warnings.append(f"the training template {resolved.training_format!r} is not among --compare-templates")
        for f in formats:
            if resolved.training_format and f.name != resolved.training_format:
                warnings.append(f"template {f.name!r} is not the one used in training ({resolved.training_format!r})")
    settings = eval_settings(req)
    options = {**settings_options(req.backend, req.settings), **req.backend_options, "trust_remote_code": res.trust}
    plan = Plan(res.base, res.targets, formats, list(evalset.items), settings, req.backend, options,
                req.batch_size, req.use_cache)
    training = training_for(req, res.config, variables, log)
    generated = generate(plan, progress, log, cancel=cancel)  # cancel: sweep.SweepCancelled
    rows = score(generated, plan.items, training)
    if req.save_responses:
        R.write(req.save_responses, generated, plan.items, training.paths if training else ())
        log(f"responses saved to {req.save_responses}")
    main_template = (resolved.training_format if resolved.training_format in [f.name for f in formats]
                     else formats[0].name)
    meta = {
        "source": res.source, "model": res.base, "config": res.config, "evalsets": sets_meta, "vars": variables,
        "settings": {"max_new_tokens": settings.max_new_tokens, "greedy": True},
        "template": main_template, "template_source": resolved.source if not req.compare_templates else "flag",
        "training_template": resolved.training_format, "backend": req.backend,
        "generated": sum(g.generated for g in generated), "cached": sum(g.cached for g in generated),
        "training": training_meta(training, evalset),
    }
    return finish(rows, req, meta, warnings, main_template=main_template)


def responses_report(path: str, req: Request, log: Log | None = None) -> EvalReport:
    """Re-score saved replies (``--responses FILE``) against the eval sets, without any model. The training data
    is `req.train_data`, else the one `req.config` names, else the one the sweep recorded in the file (if it is
    still there), else unknown."""
    from workbench.evals import responses as R

    log = log or (lambda _m: None)
    saved = R.read(path)
    evalset, sets_meta = load_evalsets(req.evalsets, dict(req.variables))
    training = training_for(req, req.config, dict(req.variables), log, R.saved_train_data(saved))
    rows = R.rescore(saved, list(evalset.items), warn=log, training=training)
    templates = list(dict.fromkeys(r.template for r in rows))
    main_template = req.template if req.template in templates else templates[0]
    meta = {"source": f"responses {path}", "model": None, "evalsets": sets_meta, "vars": dict(req.variables),
            "template": main_template or None, "training": training_meta(training, evalset)}
    return finish(rows, req, meta, [], main_template=main_template)


def log_report(req: Request, log: Log | None = None) -> EvalReport:
    """Score the EvaluateChatHook samples a run already logged (``--from-log``): no model is loaded."""
    from workbench.evals.fromlog import collect_samples, log_dirs, score_samples

    log = log or (lambda _m: None)
    if not (req.run or req.checkpoints):
        raise BadInput("--from-log needs --run RUN or --checkpoints WORK_DIR")
    res = resolve_targets(req, need_checkpoints=False)
    assert res.work_dir is not None  # a run or a work dir was given
    dirs = log_dirs(res.work_dir, res.log_path)
    samples = collect_samples(dirs)
    if not samples:
        raise BadInput(f"--from-log: no EvaluateChatHook samples in the logs of {res.work_dir}")
    variables = resolve_vars(res, log)
    evalset, sets_meta = load_evalsets(req.evalsets, variables)
    template = res.training.template if res.config and res.training else None
    training = training_for(req, res.config, variables, log)
    rows, unmatched = score_samples(samples, list(evalset.items), template or "", training)
    n = max(r.agg.n_identity + r.agg.n_general for r in rows)
    warnings = [f"scored on the {n} hook prompt(s) only: a first look, not a full eval"]
    judged = [u for u in unmatched if u in samples.get(0, {})]
    if judged:
        warnings.append(f"{len(judged)} hook prompt(s) are in no eval set and were scored by retention (does each "
                        "checkpoint still give the base's before_train answer): "
                        + ", ".join(repr(u) for u in judged[:3]))
    if len(judged) < len(unmatched):
        warnings.append(f"{len(unmatched) - len(judged)} hook prompt(s) are in no eval set and have no before_train "
                        "sample to compare with, so they were not scored: "
                        + ", ".join(repr(u) for u in unmatched if u not in judged)[:200])
    meta = {"source": f"{res.source} (training log)", "model": res.base, "config": res.config,
            "evalsets": sets_meta, "vars": variables, "template": template or None, "template_source": "training",
            "training_template": template, "logs": [str(d) for d in dirs],
            "training": training_meta(training, evalset)}
    return finish(rows, req, meta, warnings, main_template=None)
