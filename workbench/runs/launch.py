"""Start XTuner training as a detached child, and resume a run from a checkpoint.

The child is ``python -m workbench.runs.supervise RUN_DIR -- <tool command>`` in a new session (its own
session and process group: an SSH drop, closing the TUI or killing the launcher does not reach it), with
stdin from /dev/null and stdout+stderr going to ``RUN_DIR/stdout.log``. The tool command is
``python -m workbench.xtuner_compat train CONFIG --work-dir W ...`` (the real exit code and XTuner 0.2.0's
fixes), wrapped the way `xtuner train` itself would wrap it for several GPUs (torchrun) or Slurm (srun).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from workbench import atomic
from workbench.errors import BadInput, OperationFailed
from workbench.runs import procs, registry
from workbench.runs.model import Run, RunStatus
from workbench.xtuner.config import (
    config_facts,
    load_config,
    parse_cfg_options,
    resolve_config,
    resolve_deepspeed,
)
from workbench.xtuner.workdir import WorkDir, checkpoint_iter

#: Environment a run keeps in its record (and a resume restores).
RECORDED_ENV = ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "ADDR", "PORT", "CUDA_VISIBLE_DEVICES",
                "WORKBENCH_MODEL", "WORKBENCH_DATA", "SLURM_JOB_ID", "MASTER_ADDR", "MASTER_PORT")
START_TIMEOUT_S = 20.0


#: Inspection codes (`workbench inspect`'s) that mean the run cannot work on this machine: `start_run` refuses
#: them before anything starts instead of letting the run die at iteration 0.
PREFLIGHT_CODES = ("gpus_unavailable", "model_not_found", "data_not_found", "fp16_unsupported",
                   "quantization_needs_cuda")
#: Of those, the ones about this machine's hardware (not checked for Slurm: the job runs on other nodes).
HARDWARE_CODES = ("gpus_unavailable", "fp16_unsupported", "quantization_needs_cuda")


class PreflightFailed(BadInput):
    """The run cannot work here; `problems` holds one line per reason (``[code] message``)."""

    def __init__(self, problems: list[str]):
        super().__init__(problems[-1])
        self.problems = problems


def inspect_report(config_path: Path, *, deepspeed: str | None = None, cfg_options: dict | None = None,
                   gpus: int | None = None, loaded=None):
    """`workbench.data.inspect.inspect_config`'s report, or None when the inspector itself broke (it is
    advisory about style, so a bug in it must not block training; the checks `start_run` enforces are
    re-read from its codes)."""
    try:
        from workbench.data.inspect import inspect_config

        return inspect_config(config_path, deepspeed=deepspeed, cfg_options=cfg_options, gpus=gpus, loaded=loaded)
    except BadInput:
        raise
    except Exception:
        return None


def config_warnings(config_path: Path, facts: dict, *, deepspeed: str | None = None,
                    cfg_options: dict | None = None, report=None) -> list[str]:
    """Warnings about a config before it trains: those of `workbench.data.inspect.inspect_config` (it knows
    the traps that lose checkpoints or cause overfitting), plus the checkpoint-limit check if it did not cover it."""
    from workbench.runs.checkpoints import limit_warning

    if report is None:
        report = inspect_report(config_path, deepspeed=deepspeed, cfg_options=cfg_options)
    found = [str(getattr(w, "message", None) or w) for w in (getattr(report, "warnings", None) or [])]
    limit = limit_warning(facts)
    if limit and not any("save_total_limit" in w or "max_keep_ckpts" in w for w in found):
        found.append(limit)
    return found


def preflight_problems(report, *, srun: str | None = None) -> list[str]:
    """``[code] message`` for each inspection warning that means the run cannot work on this machine."""
    codes = [c for c in PREFLIGHT_CODES if srun is None or c not in HARDWARE_CODES]
    return [f"[{w.code}] {w.message}" for w in (getattr(report, "warnings", None) or []) if w.code in codes]


@contextlib.contextmanager
def _environ(overrides: Mapping[str, str] | None):
    """The config is read in this process but runs in the child: read it with the child's WORKBENCH_MODEL,
    WORKBENCH_DATA... (a resume or the demo pass their own), so the checks see the paths the run will."""
    changed = {k: v for k, v in (overrides or {}).items() if os.environ.get(k) != v}
    saved = {k: os.environ.get(k) for k in changed}
    os.environ.update(changed)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _unwritable(work_dir: Path) -> str | None:
    """Why `work_dir` cannot be created and written (None if it can), leaving nothing behind either way."""
    missing = []
    p = work_dir
    while not p.exists():
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        return f"not writable ({p} is not a folder)"
    try:
        for d in reversed(missing):
            d.mkdir()
        probe = work_dir / f".workbench-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"not writable ({exc.strerror or exc})"
    finally:
        for d in missing:  # created only to probe: the run folder is made later, once all checks passed
            with contextlib.suppress(OSError):
                d.rmdir()
    return None


def check_writable(work_dir: Path) -> None:
    """Make sure `work_dir` can be created and written, leaving nothing behind if it cannot."""
    why = _unwritable(work_dir)
    if why:
        raise BadInput(f"--work-dir {work_dir}: {why}")


#: Where new runs go when no --work-dir is given: ``<cwd>/work_dirs/<config stem>/<YYYYmmdd-HHMMSS>[-<name>]``.
WORK_DIRS = "work_dirs"


def fresh_work_dir(config: str | os.PathLike, name: str | None = None, *,
                   root: str | os.PathLike | None = None) -> Path:
    """The default work dir of a new run of `config`: a folder no run has used, absolute, not created yet.

    ``<root>/<config stem>/<YYYYmmdd-HHMMSS>`` (``-<name>`` appended when a run name is given), with
    `root` defaulting to ``./work_dirs``, XTuner's own default place. One folder per run, so a new run never
    lands on the checkpoints of an earlier one (XTuner's layout is kept inside it). The timestamp uses a
    hyphen, unlike the ``YYYYmmdd_HHMMSS`` folders mmengine makes inside a work dir, so the two never mix.
    Cheap (no config loading): the TUI's start dialog calls it to show the path before anything starts.
    """
    import re

    parent = Path(root).expanduser() if root else Path(WORK_DIRS) / Path(config).stem
    if not parent.is_absolute():
        parent = Path.cwd() / parent
    stem = time.strftime("%Y%m%d-%H%M%S")
    if name:
        slug = re.sub(r"[^\w.-]+", "-", name).strip("-.")[:40]
        stem = f"{stem}-{slug}" if slug else stem
    candidate, n = parent / stem, 1
    while candidate.exists():  # two starts in the same second
        n += 1
        candidate = parent / f"{stem}-{n}"
    return candidate.resolve()


def later_checkpoints(checkpoint: str | os.PathLike) -> list[str]:
    """The checkpoints after `checkpoint` in its own folder (a run resumed from it in that folder would write over
    them), by name, in order."""
    ckpt = Path(checkpoint).resolve()
    mine = checkpoint_iter(ckpt.name)
    if mine is None:
        return []
    return [c.path.name for c in WorkDir(ckpt.parent).checkpoints() if c.iteration > mine]


def work_dir_problem(work_dir: str | os.PathLike) -> str | None:
    """Why a NEW run must not write into `work_dir`, as one line naming it; None when it may.

    A folder is refused when it is not a writable folder, or when it already holds another run's files:
    checkpoints (``iter_N.pth``), mmengine's ``last_checkpoint`` or timestamped logs, converted adapters
    (``hf/``) or workbench's own run records. XTuner would write its checkpoints over those of the earlier
    run, and both runs' listings would then show files the other one wrote. Resuming a run is the one way
    to continue in its folder (`resume_run`); `start_run(..., overwrite=True)` writes there anyway.
    """
    wd = Path(work_dir).expanduser()
    if wd.exists() and not wd.is_dir():
        return f"{wd} is a file, not a folder"
    if not wd.exists():
        why = _unwritable(wd)
        return f"{wd}: {why}" if why else None
    try:
        names = sorted(p.name for p in wd.iterdir())
    except OSError as exc:
        return f"{wd}: cannot be read ({exc.strerror or exc})"
    ckpts = [c.path.name for c in WorkDir(wd).checkpoints()]
    owners = sorted({p.parent.name for p in (wd / "workbench").glob("*/run.json")})
    if not owners:
        with contextlib.suppress(Exception):  # naming the owner is a courtesy: a registry problem must not hide why
            owners = [r.id for r in registry.runs_in(wd)]
    whose = f"run {', '.join(owners[:3])}" if owners else "another run"
    if ckpts:
        shown = ckpts[0] if len(ckpts) == 1 else f"{ckpts[0]} ... {ckpts[-1]}"
        return f"{wd} already holds checkpoints of {whose} ({shown})"
    if owners:
        return f"{wd} already holds the files of {whose}"
    stamped = WorkDir(wd).log_dirs()
    if stamped:
        return f"{wd} already holds the log of an earlier run ({stamped[-1][1].name}/)"
    if "last_checkpoint" in names or (wd / "hf").is_dir():
        return f"{wd} already holds the files of an earlier run ({'last_checkpoint' if 'last_checkpoint' in names else 'hf/'})"
    why = _unwritable(wd)
    return f"{wd}: {why}" if why else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_command(config: Path, work_dir: Path, *, deepspeed: str | None, resume: str | None,
                  cfg_options: Sequence[str], env: Mapping[str, str], srun: str | None = None) -> list[str]:
    """The tool command, wrapped as `xtuner train` would: torchrun for NPROC_PER_NODE/NNODES > 1, srun for Slurm."""
    args = [str(config), "--work-dir", str(work_dir)]
    if deepspeed:
        args += ["--deepspeed", deepspeed]
    if resume:
        args += ["--resume", resume]
    if cfg_options:
        args += ["--cfg-options", *cfg_options]
    tool = [sys.executable, "-m", "workbench.xtuner_compat", "train", *args]
    if srun is not None:
        return ["srun", *shlex.split(srun), *tool, "--launcher", "slurm"]
    nproc, nnodes = int(env.get("NPROC_PER_NODE", 1)), int(env.get("NNODES", 1))
    if nproc == 1 and nnodes == 1:
        return tool
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}",
            f"--node_rank={env.get('NODE_RANK', 0)}", f"--nproc_per_node={nproc}",
            f"--master_addr={env.get('ADDR', '127.0.0.1')}", f"--master_port={env['PORT']}",
            "-m", "workbench.xtuner_compat", "train", *args, "--launcher", "pytorch"]


def start_run(config: str | os.PathLike, *, work_dir: str | os.PathLike | None = None,
              deepspeed: str | None = None, name: str | None = None, cfg_options: Sequence[str] = (),
              gpus: int | None = None, srun: str | None = None, env: Mapping[str, str] | None = None,
              resume_from: str | None = None, parent_id: str | None = None, overwrite: bool = False,
              cwd: str | os.PathLike | None = None, warn: Callable[[str], None] | None = None,
              announce: Callable[[Path], None] | None = None) -> Run:
    """Validate, then start a detached training run; return its `Run` once the supervisor is up.

    Every check runs before anything is written, and fails with a one-line `BadInput`: the config exists,
    is an XTuner config and loads with the cfg-options; the DeepSpeed preset/JSON; the work dir (a fresh one,
    `fresh_work_dir`, when none is given; a given one must be unused, `work_dir_problem`, unless the run
    resumes from a checkpoint there or `overwrite`); and the pre-flight (`PREFLIGHT_CODES`: more GPUs than
    visible, fp16 or 4-bit without CUDA, a missing model or data path; a `PreflightFailed` lists them all).
    `env` overrides the caller's environment for the child (a resume passes the original run's) and is also
    what the config is read with; `cwd` is where the tool runs (default: here). `announce` gets the work dir
    and `warn` each warning about the config, after the checks passed and before the run starts.
    """
    base = Path(cwd).resolve() if cwd else Path.cwd()
    config = config if Path(config).expanduser().is_absolute() or not (base / config).exists() else base / config
    config_path = resolve_config(config)
    options = parse_cfg_options(list(cfg_options))
    child_env = dict(os.environ)
    child_env.update(env or {})
    if gpus is not None:
        if gpus < 1:
            raise BadInput(f"--gpus {gpus}: must be at least 1")
        child_env["NPROC_PER_NODE"] = str(gpus)
    for key in ("NPROC_PER_NODE", "NNODES", "NODE_RANK"):
        if not str(child_env.get(key, "1")).isdigit():
            raise BadInput(f"{key}={child_env[key]}: not a number")
    nproc = int(child_env.get("NPROC_PER_NODE", 1))
    with _environ(env):
        cfg = load_config(config_path, options)
        facts = config_facts(cfg)
        ds = resolve_deepspeed(deepspeed) if deepspeed else None
        if work_dir:
            wd = (base / Path(work_dir).expanduser()).resolve()
            problem = None if (resume_from or overwrite) else work_dir_problem(wd)
            if problem:
                owners = [r.id for r in registry.runs_in(wd)] if wd.is_dir() else []
                hint = (f"; continue it with `workbench resume {owners[-1] if owners else 'RUN'}`, choose another "
                        "--work-dir, or pass --overwrite") if wd.is_dir() else ""
                raise BadInput(f"--work-dir {problem}{hint}")
        else:
            root = cfg.get("work_dir")
            wd = fresh_work_dir(config_path, name, root=(base / root) if root else base / WORK_DIRS / config_path.stem)
        check_writable(wd)
        report = inspect_report(config_path, deepspeed=ds, cfg_options=options, gpus=nproc if srun is None else None,
                                loaded=cfg)
    problems = preflight_problems(report, srun=srun)
    if problems:
        raise PreflightFailed(problems)
    warnings = config_warnings(config_path, facts, report=report)
    if announce:
        announce(wd)
    for w in warnings:
        if warn:
            warn(w)

    distributed = nproc > 1 or int(child_env.get("NNODES", 1)) > 1
    if distributed and srun is None:
        child_env.setdefault("PORT", str(_free_port()))
    if (ds or facts.get("deepspeed_in_config")) and not distributed and srun is None:
        # DeepSpeed wants a process group even alone; without a launcher it reads these.
        for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
            child_env.setdefault(key, value)
        child_env.setdefault("MASTER_PORT", str(_free_port()))
    child_env["PYTHONUNBUFFERED"] = "1"  # stdout.log is followed live
    command = build_command(config_path, wd, deepspeed=ds, resume=resume_from, cfg_options=list(cfg_options),
                            env=child_env, srun=srun)

    run_id = registry.new_id()
    run_dir = wd / "workbench" / run_id
    run_dir.mkdir(parents=True)
    config_text = config_path.read_text(encoding="utf-8", errors="replace")
    atomic.write_text(run_dir / "config.py", config_text)
    run = Run(
        id=run_id, name=name or config_path.stem, config_path=str(config_path), work_dir=str(wd),
        run_dir=str(run_dir), command=command, env={k: child_env[k] for k in RECORDED_ENV if k in child_env},
        cfg_options=list(cfg_options), deepspeed=ds, host=socket.gethostname(), started_at=time.time(),
        status=RunStatus.RUNNING, parent_id=parent_id, resume_from=resume_from,
        max_iters=facts.get("max_iters"), meta={"cwd": str(base), "srun": srun, "warnings": warnings, **facts,
                                               **({"overwrite": True} if overwrite else {})},
    )
    registry.add(run, config_text)
    supervisor = [sys.executable, "-m", "workbench.runs.supervise", str(run_dir), "--", *command]
    with open(run.stdout_path, "ab") as out:
        proc = subprocess.Popen(supervisor, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=child_env, cwd=base, start_new_session=True, close_fds=True)
    run.pid = run.pgid = proc.pid
    run.meta.update(start_ticks=procs.start_ticks(proc.pid), boot_id=procs.boot_id())
    registry.update(run.id, pid=run.pid, pgid=run.pgid, meta=run.meta)
    atomic.write_json(run_dir / "run.json", run.to_dict())
    _wait_started(run, proc)
    return run


def _wait_started(run: Run, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    pid_file = Path(run.run_dir) / "pid.json"
    while time.monotonic() < deadline:
        if pid_file.exists():
            return
        if proc.poll() is not None:
            tail = run.stdout_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            raise OperationFailed(f"run {run.id}: the supervisor exited with {proc.returncode} at start: {tail[0]}")
        time.sleep(0.05)
    raise OperationFailed(f"run {run.id}: the supervisor did not start within {START_TIMEOUT_S:.0f} s")


def last_checkpoint(work_dir: str | os.PathLike) -> str | None:
    """What mmengine's ``last_checkpoint`` file points at (falling back to the highest iter_N.pth)."""
    last = WorkDir(work_dir).last_checkpoint()
    return str(last) if last else None


def checkpoint_owner(path: str | os.PathLike) -> Run | None:
    """The registered run that wrote checkpoint `path` (by its time, `attribute_checkpoints`), else None."""
    from workbench.runs.checkpoints import attribute_checkpoints, list_checkpoints

    path = Path(path).resolve()
    runs = registry.runs_in(path.parent)
    if not runs:
        return None
    if len(runs) == 1:
        return runs[0]
    for c in attribute_checkpoints(list_checkpoints(path.parent), runs):
        if Path(c.path).resolve() == path and c.written_by:
            return next(r for r in runs if r.id == c.written_by)
    return None


def resume_run(ref: str | Run, *, iteration: int | None = None, name: str | None = None,
               max_iters: int | None = None) -> Run:
    """Start a new run that continues `ref` from its last checkpoint (or from ``iter_<iteration>.pth``).

    It uses the original config path (not the work-dir copy, whose relative paths may point elsewhere),
    the same work dir, cfg-options, DeepSpeed setting and recorded environment, and links to the original
    (`parent_id`). A run that finished has nothing left to train: it is refused unless `max_iters` asks to
    continue past its end (``train_cfg.max_iters=N``, N above the iterations it reached).
    """
    from workbench.runs.checkpoints import checkpoint_at, run_checkpoints, validate_checkpoint

    run = registry.get(ref) if isinstance(ref, str) else registry.refresh(ref)
    if run.status is RunStatus.RUNNING:
        raise BadInput(f"run {run.id} is still running; stop it first (`workbench stop {run.id}`)")
    reached = run.max_iters or 0
    if max_iters is not None and max_iters <= reached:
        raise BadInput(f"--max-iters {max_iters}: run {run.id} already trained {reached} iterations; give more")
    if run.status is RunStatus.FINISHED and max_iters is None and iteration is None:
        raise BadInput(f"run {run.id} finished all {reached or 'its'} iterations; to train on, resume with "
                       f"--max-iters N (N > {reached})" if reached else
                       f"run {run.id} finished; to train on, resume with --max-iters N")
    ckpt: str | None
    if iteration is not None:
        ckpt = checkpoint_at(run.work_dir, iteration).path
    else:
        own = run_checkpoints(run)
        last = last_checkpoint(run.work_dir)
        # mmengine's last_checkpoint may point at another run's file in a shared folder: take the run's own
        ckpt = last if last and any(c.path == last for c in own) else (own[-1].path if own else None)
        if ckpt is None:
            raise BadInput(f"run {run.id}: no checkpoint in {run.work_dir} to resume from")
    validate_checkpoint(ckpt, deep=True)
    config = run.config_path
    if not Path(config).is_file():
        config = str(run.config_copy if run.config_copy.is_file() else "")
        if not config:
            raise BadInput(f"run {run.id}: its config {run.config_path} is gone")
    cwd = run.meta.get("cwd")
    options = list(run.cfg_options)
    if max_iters is not None:
        options = [o for o in options if not o.startswith("train_cfg.max_iters=")] + [f"train_cfg.max_iters={max_iters}"]
    return start_run(config, work_dir=run.work_dir, deepspeed=run.deepspeed, cfg_options=options,
                     srun=run.meta.get("srun"), env=run.env, resume_from=ckpt, parent_id=run.id,
                     name=name or run.name, cwd=cwd if cwd and Path(cwd).is_dir() else None)
