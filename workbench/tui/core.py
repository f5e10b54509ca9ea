"""What is left of the TUI's own glue with the cores: the run -> base model and checkpoint -> variant name
lookups of the Runs screen's Chat action, and the Chat screen's session opening (`open_chat_session`). They
are being replaced by the resolver in `workbench.targets`; everything else the screens need lives in the
cores (`workbench.runs.follow`, `workbench.runs.convert`, `workbench.runs.plan`, `workbench.runs.catalog`,
`workbench.evals.run_sweep`, `workbench.models.conversations`, `workbench.models.session`).

Everything here runs in a worker thread: it may read files and load models, and must not touch widgets.
"""

from __future__ import annotations


def run_base_model(run) -> str:
    """The base model a run trained on (`workbench.targets.resolve`)."""
    from workbench.targets import resolve

    return str(resolve(run=run.id, checkpoints=False).base)


def adapter_name(run, iteration: int, runs: list | None = None) -> str:
    """The variant name of a run's checkpoint in chat: ``iter_<N>``, as everywhere (`workbench.targets`'s naming
    rule); a clash with another run's checkpoint already loaded is settled when it loads (`open_chat_session`)."""
    from workbench.targets import target_name

    return target_name(f"iter_{iteration}.pth")


# -- chat ------------------------------------------------------------------------------------------------
def open_chat_session(spec: dict, current, settings, conversation_id: str | None = None, notice=None):
    """A `ChatSession` for `spec` (ModelSpec fields; ``adapters`` as ``[[key, path], ...]``).

    The adapters are named by `workbench.targets`' rule (``iter_N``, the run's name in front only on a clash), so a
    checkpoint is called here what the CLI calls it. When `current` already has the same base, backend and format
    loaded, the new adapters are attached to it (the base is not loaded again) and `current` is returned.
    `conversation_id` reopens a saved conversation with the models it was held with. `notice` gets what loading is
    doing (one line each).
    """
    from dataclasses import replace

    from workbench.models import conversations as convs
    from workbench.models.base import GenerationSettings
    from workbench.models.session import open_session, spec_from
    from workbench.targets import BASE, resolve, resolve_spec

    folder = convs.conversations_dir(settings)
    conv = convs.find(conversation_id, folder) if conversation_id else None
    if conv is not None and conv.header.get("spec"):
        ms = spec_from(settings, **conv.header["spec"])  # its variants keep the names its messages use
    else:
        ms = spec_from(settings, **spec)
        ms.adapters = [("", src) for _, src in ms.adapters]  # named by the rule, below
    same = (current is not None and conv is None and current.spec.base == ms.base and ms.merged is None
            and current.spec.backend == ms.backend and (ms.template, ms.system) == (None, None))
    if same:
        loaded = {v.source: n for n, v in current.variants.items()}
        new = [src for _, src in ms.adapters if str(src) not in loaded]
        if new:
            res = resolve(adapters=new, base=ms.base, settings=settings,
                          taken={n: v.source for n, v in current.variants.items()})
            for t in res.targets:
                if t.kind != BASE:
                    loaded[str(t.source)] = current.load_adapter(t).name
        if ms.adapters:
            current.switch(loaded[str(ms.adapters[0][1])])
        return current
    res = resolve_spec(ms, settings)
    names = {str(t.source): t.name for t in res.targets if t.kind != BASE}
    ms = replace(ms, adapters=[(name or names[str(src)], src) for name, src in ms.adapters])
    gen = GenerationSettings(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature)
    return open_session(ms, gen, notice=notice, conversation=conv, resolved=res, conversations=folder)


