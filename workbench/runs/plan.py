"""What starting a run from a config would do, before anything starts: the config's inspection with the
overrides a user typed, the hyperparameters a start form edits, and the fresh work dir the run would get.

The TUI's start form calls `plan_start` from a worker thread (loading a config can take seconds).
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


def plan_start(config: str, cfg_options: list[str], name: str | None):
    """The inspection of `config` with `cfg_options` (its report and text) and a fresh work dir for a run of
    it called `name` (`workbench.runs.launch.fresh_work_dir`)."""
    from workbench.data.inspect import format_report, inspect_config
    from workbench.runs.launch import fresh_work_dir
    from workbench.xtuner.config import parse_cfg_options

    report = inspect_config(config, cfg_options=parse_cfg_options(list(cfg_options)) or None)
    return report, format_report(report), str(fresh_work_dir(config, name or None))


def resolve_shipped(path: str) -> str:
    """A config path as typed, or the name of a shipped config (``tiny_cpu_lora.py``)."""
    from workbench.paths import shipped_config

    return str(shipped_config(path) or Path(path).expanduser())
