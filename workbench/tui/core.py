"""The TUI's calls into the cores, gathered in one place (each a few lines: no logic of their own).

Everything here runs in a worker thread: it may read files, start children and load models, and must
not touch widgets. The screens import these functions inside their workers.
"""

from __future__ import annotations

from pathlib import Path


def inspect_summary(config: str) -> str:
    """The config inspection (`workbench inspect`): its fields and warnings, as shown before a start."""
    from workbench.data.inspect import format_report, inspect_config

    return format_report(inspect_config(config))


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


def adapter_name(run, iteration: int) -> str:
    """The variant name of a run's checkpoint in chat: ``<run name>-iter_<N>``, in the characters an
    adapter name may hold (torch module names: no dot)."""
    import re

    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', run.name)}-iter_{iteration}"


def chat_candidates() -> tuple[str | None, list[tuple[str, str, str]]]:
    """A default base (the newest run's) and every checkpoint of every run: ``(name, path, config)``.

    A converted checkpoint is offered as its adapter folder (faster to attach), others as ``iter_N.pth``.
    Read the way the chat session reads them (the work dir's config copy names the base).
    """
    from workbench.models import xtuner_ckpt
    from workbench.runs import registry
    from workbench.runs.checkpoints import list_checkpoints

    base = None
    items: list[tuple[str, str, str]] = []
    for run in reversed(registry.list_runs()):
        config = xtuner_ckpt.work_dir_config(run.work_dir)
        if base is None and config is not None:
            try:
                base = xtuner_ckpt.read_config(config).base_model
            except Exception:  # noqa: BLE001 - an unreadable config names no base; its checkpoints still count
                pass
        for ck in reversed(list_checkpoints(run.work_dir)):
            items.append((adapter_name(run, ck.iteration), ck.adapter_path or ck.path, str(config or "")))
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
        when = time.strftime("%m-%d %H:%M", time.localtime(c.updated or c.created))
        out.append((c.id, f"{when}  {c.display_title[:40]}  ({turns} turns)"))
    return out
