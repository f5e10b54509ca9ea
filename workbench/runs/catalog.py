"""Every checkpoint of every registered run, in one list: what a picker offers (the TUI's Chat models dialog).
"""

from __future__ import annotations


def checkpoint_catalog() -> tuple[str | None, list[tuple[str, str, str, str]]]:
    """A default base (the newest run's) and every checkpoint of every run: ``(key, path, config, label)``,
    newest run first; `key` is unique (the path: two runs have an ``iter_60`` each), `label` names the run and
    the checkpoint as a picker lists them (``tiny_cpu_lora/iter_60  run 7679c3``). Variant names are given
    when they load (`workbench.targets`).

    A converted checkpoint is offered as its adapter folder (faster to attach), others as ``iter_N.pth``.
    Read the way the chat session reads them (the work dir's config copy names the base).
    """
    from workbench.runs import registry
    from workbench.runs.checkpoints import list_checkpoints
    from workbench.xtuner.config import read_training_config
    from workbench.xtuner.workdir import WorkDir

    base = None
    items: list[tuple[str, str, str, str]] = []
    runs = registry.list_runs()
    for run in reversed(runs):
        config = WorkDir(run.work_dir).config()
        if base is None and config is not None:
            try:
                base = read_training_config(config).base_model
            except Exception:  # noqa: BLE001 - an unreadable config names no base; its checkpoints still count
                pass
        for ck in reversed(list_checkpoints(run.work_dir)):
            label = f"{run.name}/iter_{ck.iteration}  run {run.id}"
            path = ck.adapter_path or ck.path
            items.append((path, path, str(config or ""), label))
    return base, items
