"""`workbench train | runs (rm, rename) | import | logs | checkpoints | stop | resume | convert | merge`.

Thin: every command parses its flags, calls one function of `workbench.runs` (the same ones the TUI
calls) and prints the result (stdout = data, stderr = diagnostics).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from workbench.commands._common import emit_json, info, split_config_args, table
from workbench.errors import BadInput, ExitCode


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}"


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, required=True, metavar="CONFIG")
@click.option("--work-dir", help="Where XTuner writes checkpoints and logs (default: a new folder "
                                 "./work_dirs/<config name>/<YYYYmmdd-HHMMSS>[-<name>]). Must not hold another "
                                 "run's files unless --resume or --overwrite.")
@click.option("--resume", "resume_from", metavar="ITER_N.PTH",
              help="Continue from this checkpoint (xtuner's --resume); the work dir defaults to its folder, or to a "
                   "new one when later checkpoints are there (they would be written over).")
@click.option("--overwrite", is_flag=True, help="Write into a --work-dir that holds another run's files.")
@click.option("--deepspeed", metavar="NAME|PATH.json", help="deepspeed_zero1/2/3(_offload) or a DeepSpeed JSON.")
@click.option("--name", help="A label for the run (default: the config's name).")
@click.option("--cfg-options", "cfg_options", multiple=True, metavar="K=V ...",
              help="Override config values, as xtuner does (e.g. train_cfg.max_iters=30).")
@click.option("--gpus", type=int, help="GPUs on this node: sets NPROC_PER_NODE (XTuner then runs torchrun).")
@click.option("--srun", metavar="ARGS", help="Launch through Slurm: `srun ARGS ... --launcher slurm`.")
@click.option("--follow", is_flag=True, help="Stay and show the parsed log until the run ends (Ctrl-C only detaches).")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
def train(args, work_dir, resume_from, overwrite, deepspeed, name, cfg_options, gpus, srun, follow, as_json):
    """Start XTuner training on CONFIG, detached: it survives this terminal, the TUI and SSH drops.

    Each run gets a new work dir unless --work-dir says otherwise; the run is refused before anything starts
    when it cannot work on this machine (more GPUs than visible, fp16 or 4-bit without CUDA, a missing
    model or data path). Multi-node settings NNODES, NODE_RANK, ADDR and PORT are read from the environment,
    as `xtuner train` reads them; WORKBENCH_MODEL and WORKBENCH_DATA pass through to the config.
    """
    from workbench.runs.launch import (
        PreflightFailed,
        checkpoint_owner,
        fresh_work_dir,
        later_checkpoints,
        start_run,
    )

    config, options = split_config_args(args, cfg_options)
    parent = None
    if resume_from:
        from workbench.runs.checkpoints import validate_checkpoint

        ckpt = validate_checkpoint(Path(resume_from).expanduser(), deep=True).resolve()
        later = [] if overwrite else later_checkpoints(ckpt)
        named = f"{', '.join(later[:3])}{' …' if len(later) > 3 else ''} come after {ckpt.name}"
        if later and not work_dir:  # a branch: the earlier run's later checkpoints stay as they are
            work_dir = str(fresh_work_dir(config, name))
            info(f"{named} in its folder: the resumed run writes to a new one, so they stay")
        elif later and Path(work_dir).expanduser().resolve() == ckpt.parent:
            raise BadInput(f"--work-dir {ckpt.parent}: {named} there and the resumed run would write over them: "
                           "leave --work-dir out (the run then gets a new folder), or pass --overwrite")
        resume_from, work_dir = str(ckpt), work_dir or str(ckpt.parent)
        parent = checkpoint_owner(ckpt)
    try:
        run = start_run(config, work_dir=work_dir, deepspeed=deepspeed, name=name, cfg_options=options, gpus=gpus,
                        srun=srun, resume_from=resume_from, parent_id=parent.id if parent else None,
                        overwrite=overwrite, announce=lambda wd: info(f"work dir: {wd}"),
                        warn=lambda w: info(f"warning: {w}"))
    except PreflightFailed as exc:
        for problem in exc.problems[:-1]:  # one line each; the last one is the error the CLI prints
            info(f"workbench: error: {problem}")
        raise
    _started(run, as_json)
    if follow and (code := _follow(run, as_json=False)):
        raise SystemExit(code)


def _started(run, as_json: bool) -> None:
    if as_json:
        emit_json(run.to_dict())
    else:
        click.echo(run.id)
        parent = f", continuing run {run.parent_id}" if run.parent_id else ""
        info(f"started run {run.id} ({run.name}) in {run.work_dir}, pid {run.pid}{parent}")
        info(f"  follow it: workbench logs {run.id} --follow    stop it: workbench stop {run.id}")


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--filter", "query", metavar="TEXT", default="",
              help="Only the runs whose id, name, config or status contains every word (`status:running`, "
                   "`status:ended`... filter by status).")
@click.pass_context
def runs(ctx, as_json, query):
    """List training runs, with their status derived now from processes and files, and the progress, loss and
    eta they last logged. `workbench runs rm RUN` deletes a run with its files, `workbench runs rename RUN NAME`
    renames one."""
    if ctx.invoked_subcommand is not None:
        return
    from workbench.runs import registry
    from workbench.runs.follow import latest_metrics
    from workbench.runs.manage import filter_runs

    found = filter_runs(registry.list_runs(), query)
    latest = {r.id: latest_metrics(r) for r in found}
    if as_json:
        emit_json([{**r.to_dict(), **_progress(r, latest[r.id])} for r in found])
        return
    if not found:
        info(f"no run matches {query!r}" if query else "no runs yet (start one with `workbench train CONFIG`)")
        return
    rows = [{"id": r.id, "name": r.name, "status": r.status.value, **_progress_cells(r, latest[r.id]),
             "started": _when(r.started_at), "time": _duration(r.duration), "exit": r.exit_code,
             "parent": r.parent_id or "", "reason": _clip(r.reason or "", 100), "work_dir": r.work_dir} for r in found]
    click.echo(table(rows, ["id", "name", "status", "progress", "loss", "eta", "started", "time", "exit", "parent",
                            "work_dir", "reason"]))


@runs.command("rm")
@click.argument("run_ref", metavar="RUN")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (needed without a terminal).")
def runs_rm(run_ref, yes):
    """Delete a run with its files: its run folder and log folder, and its work dir when no other run used it
    (and it holds only what training writes). A running run is refused: stop it first."""
    import sys

    from workbench.runs.manage import delete_run, plan_delete

    plan = plan_delete(run_ref)
    info(f"run {plan.run.id} ({plan.run.name}, {plan.run.status.value}):")
    for line in plan.describe():
        info(f"  {line}")
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput(f"not deleting run {plan.run.id} without --yes (no terminal to ask in)")
        if not click.confirm("Delete it?", default=False, err=True):
            info("nothing deleted")
            return
    delete_run(plan.run, confirmed=plan)
    click.echo(f"{plan.run.id} deleted")


@runs.command("rename")
@click.argument("run_ref", metavar="RUN")
@click.argument("name")
def runs_rename(run_ref, name):
    """Give RUN another NAME (shown in `workbench runs`, the TUI, checkpoint labels)."""
    from workbench.runs.manage import rename_run

    run = rename_run(run_ref, name)
    click.echo(f"{run.id} {run.name}")


def _progress(run, last) -> dict:
    """The JSON fields of a run's latest logged metrics: ``iter`` (None before the first log line), ``loss``,
    ``eta`` (None once the run ended)."""
    return {"iter": last.iter if last else None, "loss": last.loss if last else None,
            "eta": last.eta if last and not run.status.ended else None}


def _progress_cells(run, last) -> dict:
    """The table's progress (``30/60``), loss and eta (while running) cells."""
    from workbench.runs.model import RunStatus

    total = (last.max_iters if last else None) or run.max_iters
    done = last.iter if last else (run.max_iters if run.status is RunStatus.FINISHED else None)
    return {"progress": f"{done}/{total}" if total and done is not None else "",
            "loss": f"{last.loss:.4g}" if last and last.loss is not None else "",
            "eta": (last.eta or "") if last and not run.status.ended else ""}


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command()
@click.argument("work_dir", type=click.Path())
@click.option("--name", help="A label for the imported runs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def import_run(work_dir, name, as_json):
    """Register a work dir made by plain `xtuner train` (one run per invocation found in it)."""
    from workbench.runs.checkpoints import run_checkpoints
    from workbench.runs.importer import import_work_dir

    found = import_work_dir(work_dir, name=name)
    owned = {r.id: run_checkpoints(r) for r in found}
    if len(found) > 1:
        unsure = sorted({c.iteration for cs in owned.values() for c in cs if c.uncertain})
        if unsure:
            info(f"warning: {len(found)} runs used {found[0].work_dir}; which of them wrote "
                 + ", ".join(f"iter_{n}.pth" for n in unsure) + " cannot be told from the times: listed for each")
    if as_json:
        emit_json([{**r.to_dict(), "checkpoints": [c.iteration for c in owned[r.id]]} for r in found])
        return
    for r in found:
        iters = ",".join(str(c.iteration) for c in owned[r.id] if c.written_by == r.id or c.uncertain)
        click.echo(f"{r.id}  {r.status.value}  {r.log_path or r.run_dir}" + (f"  checkpoints {iters}" if iters else ""))


def _follow(run, *, as_json: bool, follow: bool = True) -> int:
    """Print a run's events; with `follow`, until the run ends. Returns the exit code for the command."""
    import json

    from workbench.runs.follow import follow_run
    from workbench.runs.model import RunStatus

    last_group = None
    failed = False

    def show(events, _follower) -> None:
        nonlocal last_group, failed
        for ev in events:
            if ev.kind == "run_end":
                failed = ev.status in (RunStatus.FAILED, RunStatus.LOST)  # type: ignore[attr-defined]
            if as_json:
                click.echo(json.dumps(ev.to_dict(), ensure_ascii=False))
                continue
            if ev.kind == "sample":
                group = (ev.iteration, ev.phase)  # type: ignore[attr-defined]
                if group != last_group:
                    click.echo(f"-- samples at iter {group[0]} ({group[1]}) --")
                    last_group = group
            else:
                last_group = None
            click.echo(ev.summary())

    follow_run(run, show, until_end=follow)
    return int(ExitCode.FAILED) if (failed and follow) else 0


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--follow", "-f", is_flag=True, help="Keep following until the run ends (Ctrl-C only detaches).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line, one per event.")
def logs(run_ref, follow, as_json):
    """Show a run's parsed log: metrics, samples by iteration, checkpoints, warnings, errors.

    RUN is a run id (or a unique prefix), a run name, or a registered work dir. With --follow the exit
    code is 3 when the run ends failed or lost.
    """
    from workbench.runs import registry

    code = _follow(registry.get(run_ref), as_json=as_json, follow=follow)
    if code:
        raise SystemExit(code)


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def checkpoints(run_ref, as_json):
    """List a run's checkpoints (iter_N.pth files or DeepSpeed folders) and whether each was converted."""
    from workbench.runs import registry
    from workbench.runs.checkpoints import run_checkpoints, run_limit_warning

    run = registry.get(run_ref)
    ckpts = run_checkpoints(run)
    warning = run_limit_warning(run.work_dir, run.meta)
    if warning:
        info(f"warning: {warning}")
    unsure = [c for c in ckpts if c.uncertain]
    if unsure:
        info(f"warning: several runs used {run.work_dir}; " + ", ".join(Path(c.path).name for c in unsure)
             + " may have been written by another run (its time fits none of them)")
    if as_json:
        emit_json([c.to_dict() for c in ckpts])
        return
    if not ckpts:
        info(f"run {run.id}: no checkpoints yet in {run.work_dir}")
        return
    rows = [{"iter": c.iteration, "size": f"{c.size_bytes / 2**20:.1f} MiB", "saved": _when(c.mtime),
             "kind": "deepspeed" if c.deepspeed else "file", "converted": c.adapter_path or "no",
             "last": "*" if c.is_last else "", "run": "?" if c.uncertain else (c.written_by or ""),
             "path": c.path} for c in ckpts]
    click.echo(table(rows, ["iter", "size", "saved", "run", "kind", "last", "converted", "path"]))


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--grace", type=float, help="Seconds to wait after SIGINT before SIGTERM (default 20).")
def stop(run_ref, grace):
    """Stop a running run: SIGINT, then SIGTERM, then SIGKILL to all its processes, with grace periods."""
    import signal

    from workbench.runs.control import stop_run

    run = stop_run(run_ref, grace={signal.SIGINT: grace} if grace is not None else None,
                   progress=lambda done, total, label: info(label))
    click.echo(f"{run.id} {run.status.value}")


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--iter", "iteration", type=int, help="Resume from iter_N.pth instead of the last checkpoint.")
@click.option("--max-iters", type=int, help="Train on past the original end, to N iterations (needed to "
                                            "continue a finished run).")
@click.option("--name", help="A label for the new run (default: the original's).")
@click.option("--follow", is_flag=True, help="Stay and show the parsed log until the run ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the new run record as JSON.")
def resume(run_ref, iteration, max_iters, name, follow, as_json):
    """Continue a run from its last checkpoint (a new run in the same work dir, linked to the original as its
    parent; its loss curve in `workbench logs` starts with the parent's). A finished run is refused unless
    --max-iters asks for more iterations."""
    from workbench.runs.launch import resume_run

    run = resume_run(run_ref, iteration=iteration, name=name, max_iters=max_iters)
    _started(run, as_json)
    if follow and (code := _follow(run, as_json=False)):
        raise SystemExit(code)


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--iter", "iteration", type=int, help="Convert iter_N.pth only.")
@click.option("--all", "all_", is_flag=True, help="Convert every checkpoint not converted yet.")
@click.option("--out", type=click.Path(), help="Adapter folder (with --iter), or root for iter_N folders (--all).")
@click.option("--force", is_flag=True, help="Convert again even where an adapter exists.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def convert(run_ref, iteration, all_, out, force, as_json):
    """Convert checkpoints to PEFT adapter folders (safetensors); default: the last one, into <work_dir>/hf/."""
    from workbench.progress import Bar
    from workbench.runs.convert import convert_run

    with Bar("convert") as bar:
        done = convert_run(run_ref, iteration=iteration, all_checkpoints=all_, out=out, force=force, progress=bar)
    if as_json:
        emit_json([c.to_dict() for c in done])
        return
    for c in done:
        click.echo(f"iter {c.iteration}: {c.adapter_path}" + ("  (already converted)" if c.skipped else ""))


@click.command()
@click.argument("base", required=False)
@click.argument("adapter", required=False, type=click.Path())
@click.argument("out", required=False, type=click.Path())
@click.option("--run", "run_ref", metavar="RUN", help="Instead: merge a checkpoint of this run (--iter N) into its "
                                                       "base, at <work_dir>/merged/iter_N (converted first if needed).")
@click.option("--iter", "iteration", type=int, help="With --run: the checkpoint's iteration.")
@click.option("--dtype", default="auto", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              help="auto: the base's dtype on a GPU, float32 on a CPU.")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--trust-remote-code/--no-trust-remote-code", default=None,
              help="Run model code shipped in BASE (InternLM2 needs it). Default: with --run, the training config's "
                   "choice, else the trust_remote_code setting.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists (with --run: merge again).")
def merge(base, adapter, out, run_ref, iteration, dtype, device, trust_remote_code, force):
    """Merge a PEFT ADAPTER into BASE and save the full model at OUT (peft merge_and_unload, safetensors);
    or, with --run RUN --iter N, a run's checkpoint into the base it trained on (as the TUI's Merge does)."""
    from workbench.runs.convert import merge_adapter, merge_checkpoint

    if run_ref is not None:
        if iteration is None or base or adapter or out:
            raise BadInput("--run takes --iter N and no BASE ADAPTER OUT")
        from workbench import settings as user_settings
        from workbench.targets import resolve

        found = resolve(run=run_ref, checkpoints=False, trust_remote_code=trust_remote_code,
                        settings=user_settings.load())
        if not found.base:
            raise BadInput(f"run {run_ref}: its training config names no base model")
        click.echo(str(merge_checkpoint(run_ref, iteration, base=found.base, trust_remote_code=found.trust,
                                        dtype=dtype, device=device, force=force)))
        return
    if not (base and adapter and out):
        raise BadInput("give BASE ADAPTER OUT, or --run RUN --iter N")
    if trust_remote_code is None:
        from workbench import settings as user_settings

        trust_remote_code = user_settings.load().trust_remote_code
    path = merge_adapter(base, adapter, out, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                         force=force)
    click.echo(str(path))
