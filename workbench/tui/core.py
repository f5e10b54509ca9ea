"""The TUI's calls into the cores, gathered in one place (each a few lines: no logic of their own).

Everything here runs in a worker thread: it may read files, start children and load models, and must
not touch widgets. The screens import these functions inside their workers.
"""

from __future__ import annotations

from pathlib import Path

#: The hyperparameters the start form edits: (form label, `ConfigReport` field, the key training reads it
#: from). The dotted keys matter: ``--cfg-options lr=1e-4`` would change only the top-level name, which the
#: config had already copied into ``optim_wrapper.optimizer.lr`` (the inspection warns about exactly that).
START_FIELDS = (
    ("max_iters", "max_iters", "train_cfg.max_iters"),
    ("lr", "lr", "optim_wrapper.optimizer.lr"),
    ("batch size", "batch_size", "train_dataloader.batch_size"),
    ("save_steps", "save_steps", "default_hooks.checkpoint.interval"),
)
#: An epoch-based config trains for ``train_cfg.max_epochs`` (XTuner's TrainLoop refuses both at once).
EPOCHS_FIELD = ("max_epochs", "max_epochs", "train_cfg.max_epochs")


def inspect_for_start(config: str, cfg_options: list[str], name: str | None):
    """What the start form shows: the inspection with the form's cfg-options (its report and text) and
    a fresh work dir for a run of `config` called `name` (`workbench.runs.launch.fresh_work_dir`)."""
    from workbench.data.inspect import format_report, inspect_config, parse_cfg_options
    from workbench.runs.launch import fresh_work_dir

    report = inspect_config(config, cfg_options=parse_cfg_options(list(cfg_options)) or None)
    return report, format_report(report), str(fresh_work_dir(config, name or None))


def work_dir_problem(work_dir: str) -> str | None:
    """Why a new run must not write into `work_dir` (another run's checkpoints...), or None."""
    from workbench.runs.launch import work_dir_problem as problem

    return problem(work_dir)


def last_train_metrics(run, tail_bytes: int = 256 << 10):
    """The last training `MetricsEvent` in the tail of a run's mmengine log (None if none is there yet).

    The runs list fills every row with it, not only the highlighted run's (an ended run's numbers do not
    change, so one read of its log's tail is enough)."""
    from workbench.runs.follow import find_log_file
    from workbench.runs.logparse import LogFollower

    path = find_log_file(run)
    if path is None or not path.exists():
        return None
    follower = LogFollower(path, offset=max(0, path.stat().st_size - tail_bytes))
    try:
        events = follower.poll()
    finally:
        follower.close()
    return next((ev for ev in reversed(events) if ev.kind == "metrics" and ev.mode == "train"), None)


def convert_checkpoint(run, ck) -> str:
    """Convert one checkpoint of `run` to a PEFT adapter folder (skipped if already converted)."""
    from workbench.runs.convert import convert_run

    (conv,) = convert_run(run, iteration=ck.iteration)
    return conv.adapter_path


def merge_checkpoint(run, ck) -> str:
    """Convert (if needed) then merge one checkpoint into the run's base: ``<work_dir>/merged/iter_N``."""
    from workbench.models import xtuner_ckpt
    from workbench.runs.convert import merge_adapter

    adapter = ck.adapter_path or convert_checkpoint(run, ck)
    out = Path(run.work_dir) / "merged" / f"iter_{ck.iteration}"
    if (out / "config.json").is_file():
        return str(out)
    config = run_config(run)  # a config that trusts its base's code (InternLM2's do) is the user's choice
    trust = xtuner_ckpt.read_config(config).trust_remote_code if config else None
    return str(merge_adapter(run_base_model(run), adapter, out, trust_remote_code=trust))


def run_base_model(run) -> str:
    """The base model a run trained on (as the eval core resolves it)."""
    from workbench.evals.evaluate import Request, resolve_targets

    return str(resolve_targets(Request(run=run.id), need_checkpoints=False).base)


def run_config(run) -> str | None:
    """The training config of a run that chat and eval read the template from."""
    from workbench.evals.evaluate import Request, resolve_targets

    return resolve_targets(Request(run=run.id), need_checkpoints=False).config


def adapter_name(run, iteration: int, runs: list | None = None) -> str:
    """The variant name of a run's checkpoint in chat: ``<run name>-iter_<N>``, in the characters an
    adapter name may hold (torch module names: no dot). When another of `runs` has the same name (the same
    config started twice), the run id is added (``<run name>-<id>-iter_<N>``), so names tell runs apart."""
    import re

    name = re.sub(r"[^A-Za-z0-9_-]", "_", run.name)
    shared = any(r.name == run.name and r.id != run.id for r in runs or [])
    return f"{name}-{run.id}-iter_{iteration}" if shared else f"{name}-iter_{iteration}"


def chat_candidates() -> tuple[str | None, list[tuple[str, str, str, str]]]:
    """A default base (the newest run's) and every checkpoint of every run: ``(name, path, config, label)``,
    newest run first; `label` names the run and the checkpoint as the picker lists them
    (``tiny_cpu_lora/iter_60  run 7679c3``).

    A converted checkpoint is offered as its adapter folder (faster to attach), others as ``iter_N.pth``.
    Read the way the chat session reads them (the work dir's config copy names the base).
    """
    from workbench.models import xtuner_ckpt
    from workbench.runs import registry
    from workbench.runs.checkpoints import list_checkpoints

    base = None
    items: list[tuple[str, str, str, str]] = []
    runs = registry.list_runs()
    for run in reversed(runs):
        config = xtuner_ckpt.work_dir_config(run.work_dir)
        if base is None and config is not None:
            try:
                base = xtuner_ckpt.read_config(config).base_model
            except Exception:  # noqa: BLE001 - an unreadable config names no base; its checkpoints still count
                pass
        for ck in reversed(list_checkpoints(run.work_dir)):
            label = f"{run.name}/iter_{ck.iteration}  run {run.id}"
            items.append((adapter_name(run, ck.iteration, runs), ck.adapter_path or ck.path, str(config or ""), label))
    return base, items


def parse_variables(text: str) -> dict[str, str]:
    """``name=Tutu org=Workbench Lab`` (or comma-separated pairs) to a dict, as `--var` reads them."""
    import re

    from workbench.evals.evaluate import parse_vars

    pairs = [p.strip() for p in re.split(r",|\s+(?=\w+=)", text) if p.strip()]
    return parse_vars(pairs)


def sweep_run(run_id: str, sets: list[str], progress, settings=None, variables: dict | None = None,
              iters: str | None = None):
    """Sweep a run's checkpoints on `sets` (the `workbench eval --run` sweep); returns the report and the
    expected answers of every item by id (for the replies view)."""
    from workbench.evals.evaluate import Request, load_evalsets, sweep_report

    backend = settings.default_backend if settings is not None else "transformers"
    req = Request(run=run_id, evalsets=tuple(sets), backend=backend, variables=dict(variables or {}), iters=iters)
    report = sweep_report(req, progress=progress)
    evalset, _ = load_evalsets(req.evalsets, report.meta.get("vars") or {})
    return report, {item.id: list(item.answers) for item in evalset.items}


class _NotCached(Exception):
    pass


def cached_sweep(run_id: str, sets: list[str], settings=None, variables: dict | None = None,
                 iters: str | None = None):
    """`sweep_run`'s result when every reply it needs is already cached, else None; never loads a model.

    The sweep looks a target's replies up in the cache, reports progress, and only then loads a model
    for what is missing: a progress callback that stops it at the first target not fully cached keeps
    it from generating anything. (The eval core has no cache-only mode of its own.)
    """
    from workbench.errors import WorkbenchError
    from workbench.evals.evaluate import Request, resolve_targets

    try:
        targets = len(resolve_targets(Request(run=run_id, iters=iters)).targets)
    except WorkbenchError:  # no base, no checkpoints...: `g` will say so; a probe stays quiet
        return None
    seen: list[str] = []

    def progress(done: int, total: int, label: str) -> None:
        if label not in seen:
            seen.append(label)
        if not targets or done != len(seen) * (total // targets):
            raise _NotCached()

    try:
        return sweep_run(run_id, sets, progress, settings, variables, iters)
    except (_NotCached, WorkbenchError):
        return None


# -- chat ------------------------------------------------------------------------------------------------
def open_chat_session(spec: dict, current, settings, conversation_id: str | None = None, notice=None):
    """A `ChatSession` for `spec` (ModelSpec fields; ``adapters`` as ``[[name, path], ...]``).

    When `current` already has the same base, backend and format loaded, the new adapters are attached to
    it (the base is not loaded again) and `current` is returned. `conversation_id` reopens a saved
    conversation with the models it was held with. `notice` gets what loading is doing (one line each).
    """
    from workbench.models import conversations as convs
    from workbench.models.base import GenerationSettings
    from workbench.models.session import ModelSpec, open_session

    conv = convs.find(conversation_id) if conversation_id else None
    if conv is not None and conv.header.get("spec"):
        ms = ModelSpec.from_dict(conv.header["spec"])
    else:
        fields = {k: v for k, v in spec.items() if k in ModelSpec.__dataclass_fields__}
        fields.setdefault("backend", settings.default_backend)
        fields.setdefault("device", settings.device)
        ms = ModelSpec.from_dict(fields)
    same = (current is not None and conv is None and current.spec.base == ms.base and ms.merged is None
            and current.spec.backend == ms.backend and (ms.template, ms.system) == (None, None))
    if same:
        for name, src in ms.adapters:
            if name not in current.variants:
                current.load_adapter(name, src, config=ms.config)
        if ms.adapters:
            current.switch(ms.adapters[0][0])
        return current
    gen = GenerationSettings(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature)
    return open_session(ms, gen, notice=notice, conversation=conv)


def refit_format(session, template: str | None = None, system: str | None = None) -> None:
    """Change the session's chat template and/or system prompt; the warning against training is recomputed."""
    from workbench.models.templates import resolve_format

    fmt = session.format
    name = template or (fmt.format.name if fmt.source == "flag" else session.spec.template)
    new = resolve_format(name, system if system is not None else fmt.format.system, session.train_config,
                         session.spec.base or session.spec.merged)
    session.format = new
    if system is not None:
        session.set_system(system)


def list_conversations() -> list[tuple[str, str]]:
    """``(id, label)`` of every saved conversation, most recently updated first."""
    import time

    from workbench.models import conversations as convs

    out = []
    for c in convs.list_all():
        turns = sum(m["role"] == "user" for m in c.messages)
        counts = [f"{turns} turn{'s' if turns != 1 else ''}"] if turns or not c.comparisons else []
        if c.comparisons:
            counts.append(f"{len(c.comparisons)} compared")
        when = time.strftime("%m-%d %H:%M", time.localtime(c.updated or c.created))
        title = c.display_title if c.messages or c.title or not c.comparisons else c.comparisons[0].get("prompt", "")
        out.append((c.id, f"{when}  {title[:40]}  ({', '.join(counts)})"))
    return out


def saved_comparisons(conversation_id: str) -> list[tuple[str, list[tuple[str, dict]]]]:
    """The side-by-side comparisons a saved conversation holds: ``(prompt, [(variant, answer), ...])``,
    each answer the saved record (``text``, ``stop_reason``)."""
    from workbench.models import conversations as convs

    return [(c.get("prompt", ""), [(a.get("variant", ""), a) for a in c.get("answers", [])])
            for c in convs.find(conversation_id).comparisons]
