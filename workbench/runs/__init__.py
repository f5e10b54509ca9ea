"""The training-runs core: launch XTuner detached, keep a registry, follow and parse logs, list checkpoints,
stop, resume, convert and merge. No textual here: the CLI (`workbench.commands.runs`) and the TUI call
these same functions.

Modules (each importable alone, none imports torch at import time):
    model        Run, RunStatus, Checkpoint
    events       LogEvent and its kinds (metrics, sample, checkpoint, warning, error, train_end, run_end)
    logparse     LogParser (line state machine), LogFollower (one file by byte offset), parse_file, split_sample
    follow       RunFollower (a whole run: log + console + scalars.json + end), find_log_file, read_scalars
    registry     the SQLite registry: get, list_runs, refresh, add, update, remove
    state        derive_state: status from processes and files
    launch       start_run, resume_run, fresh_work_dir, work_dir_problem, build_command, config_warnings
    supervise    the detached supervisor (python -m workbench.runs.supervise)
    control      stop_run
    manage       filter_runs, rename_run, plan_delete / delete_run (a run with its files; never a running one)
    curves       loss_curve(s): a run's whole loss curve (its parents' first), for comparing runs
    checkpoints  list_checkpoints, run_checkpoints (a run's own), checkpoint_at, validate_checkpoint, limit_warning
    importer     import_work_dir
    convert      convert_run, merge_adapter (children: convert_worker, merge_worker)

XTuner's own files (configs, work dirs, checkpoints) are read by `workbench.xtuner`.
"""
