"""The training-runs core: launch XTuner detached, keep a registry, follow and parse logs, list checkpoints,
stop, resume, convert and merge. No textual here: the CLI (`workbench.commands.runs`) and the TUI call
these same functions.

Modules (each importable alone, none imports torch at import time):
    model        Run, RunStatus, Checkpoint
    events       LogEvent and its kinds (metrics, sample, checkpoint, warning, error, train_end, run_end)
    logparse     LogParser (line state machine), LogFollower (one file by byte offset), parse_file, split_sample
    follow       RunFollower (a whole run: log + console + scalars.json + end), find_log_file, read_scalars
    registry     the SQLite registry: get, list_runs, refresh, add, update
    state        derive_state: status from processes and files
    launch       start_run, resume_run, fresh_work_dir, work_dir_problem, build_command, config_warnings
    supervise    the detached supervisor (python -m workbench.runs.supervise)
    control      stop_run
    checkpoints  list_checkpoints, run_checkpoints (a run's own), checkpoint_at, validate_checkpoint, limit_warning
    importer     import_work_dir
    convert      convert_run, merge_adapter (children: convert_worker, merge_worker)
    config       resolve_config, load_config, read_dumped_config, dumped_config_path

The names below can also be imported from `workbench.runs` directly; they are loaded on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Run": "model", "RunStatus": "model", "Checkpoint": "model",
    "LogEvent": "events", "MetricsEvent": "events", "SampleEvent": "events", "CheckpointEvent": "events",
    "WarningEvent": "events", "ErrorEvent": "events", "TrainEndEvent": "events", "RunEndEvent": "events",
    "group_samples": "events",
    "LogFollower": "logparse", "LogParser": "logparse", "parse_file": "logparse",
    "RunFollower": "follow", "find_log_file": "follow", "read_scalars": "follow",
    "derive_state": "state",
    "start_run": "launch", "resume_run": "launch", "fresh_work_dir": "launch", "work_dir_problem": "launch",
    "stop_run": "control",
    "list_checkpoints": "checkpoints", "run_checkpoints": "checkpoints", "validate_checkpoint": "checkpoints",
    "import_work_dir": "importer",
    "convert_run": "convert", "merge_adapter": "convert",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"workbench.runs.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'workbench.runs' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
