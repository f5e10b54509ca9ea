"""The eval front door that `workbench eval` and the TUI's Eval screen both call.

`Request` says what to score and how; `sweep_report`, `responses_report` and `log_report` turn it into an
`EvalReport` (rows, verdict, gates, warnings). Resolving a request (the base model, the checkpoints of a
run, the chat template, the {name}/{org} variables) happens here, once, for every front end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import BadInput
from workbench.evals import thresholds as T
from workbench.evals.evalset import EvalSet, combine, resolve
from workbench.evals.report import EvalReport, compare_templates
from workbench.evals.results import ADAPTER, BASE, CHECKPOINT, MERGED, Row, Target, order_rows
from workbench.progress import ProgressFn

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


def vars_from_config(config: str | Path | None) -> tuple[dict[str, str], str | None]:
    """{name, org} from the recipe (``<data>.recipe.json``, written by `workbench data`) beside the training
    data a config names, and that data file's path; ({}, None) when there is none."""
    from workbench.data.identity import find_recipe
    from workbench.evals.training import config_data_files

    for data in config_data_files(config):
        raw = find_recipe(data)
        found = {k: raw[k] for k in ("name", "org") if raw and isinstance(raw.get(k), str) and raw[k]}
        if found:
            return found, str(data)
    return {}, None


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

def parse_iters(text: str | None) -> tuple[set[int], bool] | None:
    """``"10,20,last"`` -> ({10, 20}, True); None selects every checkpoint."""
    if not text:
        return None
    wanted, last = set(), False
    for part in text.split(","):
        part = part.strip()
        if part == "last":
            last = True
        elif part.isdigit():
            wanted.add(int(part))
        elif part:
            raise BadInput(f"--iters {text!r}: {part!r} is not an iteration number or 'last'")
    return wanted, last


def list_checkpoints(work_dir: str | Path) -> list:
    """The checkpoints of a work dir (objects with `iteration` and `path`), oldest first."""
    from workbench.runs.checkpoints import list_checkpoints as _list

    return sorted(_list(work_dir), key=lambda c: c.iteration)


def _select(ckpts: list, iters: str | None, where: str) -> list:
    if not ckpts:
        raise BadInput(f"{where}: no checkpoints (iter_*.pth) to score")
    sel = parse_iters(iters)
    if sel is None:
        return ckpts
    wanted, last = sel
    chosen = [c for c in ckpts if c.iteration in wanted or (last and c is ckpts[-1])]
    missing = sorted(wanted - {c.iteration for c in ckpts})
    if missing:
        have = ", ".join(str(c.iteration) for c in ckpts)
        raise BadInput(f"--iters: no checkpoint at iteration {', '.join(map(str, missing))} in {where} (have {have})")
    return chosen


def _base_from_config(config: str | Path | None) -> str | None:
    if not config:
        return None
    from workbench.runs.config import read_dumped_config

    value = read_dumped_config(config).get("pretrained_model_name_or_path")
    return value if isinstance(value, str) and value else None


def _base_from_adapter(path: str | Path) -> str | None:
    cfg = Path(path) / "adapter_config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path") or None
    except (OSError, ValueError):
        return None


@dataclass
class Resolved:
    """A request with its sources found: the base, the targets, the training config and the run's vars."""

    base: str | None
    targets: list[Target]
    config: str | None
    work_dir: str | None
    source: str
    log_path: str | None = None
    #: Checkpoints left out of the sweep (damaged), one line each, shown as report warnings.
    warnings: list[str] = field(default_factory=list)


def resolve_targets(req: Request, *, need_checkpoints: bool = True) -> Resolved:
    """Find the base model, the training config and the targets of `req` (base first)."""
    from workbench.runs.config import dumped_config_path

    sources = [bool(req.run), bool(req.checkpoints), bool(req.adapters), bool(req.merged)]
    if sum(sources) > 1:
        raise BadInput("give one of --run, --checkpoints, --adapter or --model")
    config, work_dir, log_path = req.config, None, None
    targets: list[Target] = []
    skipped: list[str] = []
    if req.run or req.checkpoints:
        if req.run:
            from workbench.runs import registry

            run = registry.get(req.run)
            work_dir, log_path = run.work_dir, run.log_path
            where = f"run {run.id} ({work_dir})"
            source = f"run {run.id}"
        else:
            work_dir = req.checkpoints
            if not Path(work_dir).is_dir():
                raise BadInput(f"--checkpoints {work_dir}: not a folder")
            where, source = work_dir, f"checkpoints {work_dir}"
        # The copy mmengine dumped into the work dir is what really trained (cfg-options and environment
        # variables resolved); the run's own config copy is the fallback.
        dumped = dumped_config_path(work_dir)
        config = config or (str(dumped) if dumped else None)
        if config is None and req.run and Path(run.config_copy).is_file():
            config = str(run.config_copy)
        if need_checkpoints:
            from workbench.runs.checkpoints import run_checkpoints, split_damaged

            # A run's own checkpoints only (a shared work dir holds other runs' too); a damaged one is left
            # out and named, and the others are still scored.
            chosen = _select(run_checkpoints(run) if req.run else list_checkpoints(work_dir), req.iters, where)
            chosen, damaged = split_damaged(chosen)
            if damaged and not chosen:
                raise BadInput(damaged[0])
            skipped = [f"left out of the sweep: {why}" for why in damaged]
            for c in chosen:
                targets.append(Target(f"iter_{c.iteration}", CHECKPOINT, str(c.path), c.iteration, config))
        base = req.base or _base_from_config(dumped) or _base_from_config(config)
    elif req.adapters:
        base = req.base
        for a in req.adapters:
            p = Path(a)
            if not p.exists():
                raise BadInput(f"--adapter {a}: not found")
            cfg = config
            if p.suffix == ".pth":  # an XTuner checkpoint (a file, or a DeepSpeed folder)
                dumped = dumped_config_path(p.parent)
                cfg = cfg or (str(dumped) if dumped else None)
                base = base or _base_from_config(cfg)
                kind = CHECKPOINT
            else:
                if not (p / "adapter_config.json").is_file():
                    raise BadInput(f"--adapter {a}: neither an iter_N.pth nor a PEFT adapter folder "
                                   "(no adapter_config.json)")
                # `xtuner convert pth_to_hf` copies the training config into the adapter folder: its template
                # is the one to chat with (the seeds' "你是谁 answered as the base model" came from ignoring it).
                if cfg is None and (p / "xtuner_config.py").is_file():
                    cfg = str(p / "xtuner_config.py")
                base = base or _base_from_adapter(p) or _base_from_config(cfg)
                kind = ADAPTER
            name = p.stem if kind == CHECKPOINT else p.name
            if name in {t.name for t in targets}:  # two runs' hf/iter_600: tell them apart by their folder
                name = f"{p.resolve().parent.name}/{name}"
            targets.append(Target(name, kind, str(p), _iter_of(p), cfg))
        config = config or next((t.config for t in targets if t.config), None)
        source = "adapter " + ", ".join(req.adapters)
    elif req.merged:
        base = req.base
        for m in req.merged:
            if not Path(m).is_dir():
                raise BadInput(f"--model {m}: not a model folder")
            targets.append(Target(Path(m).name, MERGED, str(m)))
        source = "model " + ", ".join(req.merged)
    else:
        base, source = req.base, "base"
    if base is None and (req.run or req.checkpoints or req.adapters or not req.merged):
        raise BadInput("no base model: give --base PATH (it is not in the training config or adapter_config.json)")
    if base is not None and not Path(base).exists() and "/" in base and Path(base).is_absolute():
        raise BadInput(f"base model {base}: not found (give --base PATH)")
    all_targets = ([Target(BASE, BASE)] if base is not None else []) + targets
    return Resolved(base, all_targets, config, work_dir, source, log_path, warnings=skipped)


def _iter_of(p: Path) -> int | None:
    from workbench.evals.results import iteration_of

    return iteration_of(p.name)


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


def resolve_vars(req: Request, config: str | None, log: Log) -> dict[str, str]:
    """--var values, else the name/org of the run's dataset recipe."""
    if req.variables:
        return dict(req.variables)
    found, data = vars_from_config(config)
    if found:
        log(f"variables from the recipe of {data}: " + ", ".join(f"{k}={v}" for k, v in found.items()))
    return found


def sweep_report(req: Request, progress: ProgressFn | None = None, log: Log | None = None) -> EvalReport:
    """Score the base and every target of `req` with one loaded base (the `workbench eval` sweep)."""
    from workbench.evals import responses as R
    from workbench.evals.sweep import Plan, generate, score
    from workbench.models.templates import get_format, resolve_format

    log = log or (lambda _m: None)
    res = resolve_targets(req)
    variables = resolve_vars(req, res.config, log)
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
    plan = Plan(res.base, res.targets, formats, list(evalset.items), settings, req.backend, dict(req.backend_options),
                req.batch_size, req.use_cache)
    training = training_for(req, res.config, variables, log)
    generated = generate(plan, progress, log)
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
    from workbench.models.templates import training_format

    log = log or (lambda _m: None)
    if not (req.run or req.checkpoints):
        raise BadInput("--from-log needs --run RUN or --checkpoints WORK_DIR")
    res = resolve_targets(req, need_checkpoints=False)
    dirs = log_dirs(res.work_dir, res.log_path)
    samples = collect_samples(dirs)
    if not samples:
        raise BadInput(f"--from-log: no EvaluateChatHook samples in the logs of {res.work_dir}")
    variables = resolve_vars(req, res.config, log)
    evalset, sets_meta = load_evalsets(req.evalsets, variables)
    template = training_format(res.config)[0] if res.config else None
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
