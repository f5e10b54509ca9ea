"""Start XTuner training as a detached child, and resume a run from a checkpoint.

The child is ``python -m workbench.runs.supervise RUN_DIR -- <tool command>`` in a new session (its own
session and process group: an SSH drop, closing the TUI or killing the launcher does not reach it), with
stdin from /dev/null and stdout+stderr going to ``RUN_DIR/stdout.log``. The tool command is
``python -m workbench.xtuner_compat train CONFIG --work-dir W ...`` (the real exit code and XTuner 0.2.0's
fixes), wrapped the way `xtuner train` itself would wrap it for several GPUs (torchrun) or Slurm (srun).
"""

from __future__ import annotations

import contextlib
import json
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
from workbench.runs.config import config_facts, load_config, parse_cfg_options, resolve_config, xtuner_dir
from workbench.runs.model import Run, RunStatus

#: Environment a run keeps in its record (and a resume restores).
RECORDED_ENV = ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "ADDR", "PORT", "CUDA_VISIBLE_DEVICES",
                "WORKBENCH_MODEL", "WORKBENCH_DATA", "SLURM_JOB_ID", "MASTER_ADDR", "MASTER_PORT")
DEEPSPEED_PRESETS = ("deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero2_offload", "deepspeed_zero3",
                     "deepspeed_zero3_offload")
START_TIMEOUT_S = 20.0


def resolve_deepspeed(value: str) -> str:
    """A DeepSpeed preset name of XTuner's, or a JSON file; returned as an absolute path."""
    path = Path(value).expanduser()
    if path.is_file():
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadInput(f"--deepspeed {value}: not a JSON file ({exc})") from None
        return str(path.resolve())
    root = xtuner_dir()
    if value in DEEPSPEED_PRESETS and root and (root / "configs" / "deepspeed" / f"{value}.json").is_file():
        return str(root / "configs" / "deepspeed" / f"{value}.json")
    raise BadInput(f"--deepspeed {value}: neither a file nor one of {', '.join(DEEPSPEED_PRESETS)}")


def config_warnings(config_path: Path, facts: dict, *, deepspeed: str | None = None,
                    cfg_options: dict | None = None) -> list[str]:
    """Warnings about a config before it trains: those of `workbench.data.inspect.inspect_config` when that
    module exists (it knows the seeds' traps), plus the checkpoint-limit check if it did not cover it."""
    from workbench.runs.checkpoints import limit_warning

    found: list[str] = []
    try:
        from workbench.data.inspect import inspect_config
    except ImportError:
        inspect_config = None
    if inspect_config is not None:
        try:
            try:
                result = inspect_config(config_path, deepspeed=deepspeed, cfg_options=cfg_options)
            except TypeError:
                result = inspect_config(config_path)
            items = getattr(result, "warnings", result) or []
            found = [str(getattr(w, "message", None) or w) for w in items]
        except Exception:  # the inspector is advisory: a bug in it must not block training
            found = []
    limit = limit_warning(facts)
    if limit and not any("save_total_limit" in w or "max_keep_ckpts" in w for w in found):
        found.append(limit)
    return found


def check_writable(work_dir: Path) -> None:
    """Make sure `work_dir` can be created and written, leaving nothing behind if it cannot."""
    missing = []
    p = work_dir
    while not p.exists():
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise BadInput(f"--work-dir {work_dir}: not writable ({p} is not a folder)")
    try:
        for d in reversed(missing):
            d.mkdir()
        probe = work_dir / f".workbench-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BadInput(f"--work-dir {work_dir}: not writable ({exc.strerror or exc})") from None
    finally:
        for d in missing:  # created only to probe: the run folder is made later, once all checks passed
            with contextlib.suppress(OSError):
                d.rmdir()


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
              resume_from: str | None = None, parent_id: str | None = None,
              cwd: str | os.PathLike | None = None, warn: Callable[[str], None] | None = None) -> Run:
    """Validate, then start a detached training run; return its `Run` once the supervisor is up.

    Every check (config exists and loads with the cfg-options, DeepSpeed preset/JSON, work dir writable,
    --gpus) runs before anything is written, and fails with a one-line `BadInput`. `env` overrides the
    caller's environment for the child (a resume passes the original run's); `cwd` is where the tool runs
    (default: here), which relative paths in the config and the arguments are read from. `warn` gets each
    warning about the config (`config_warnings`) after the checks passed and before the run starts.
    """
    base = Path(cwd).resolve() if cwd else Path.cwd()
    config = config if Path(config).expanduser().is_absolute() or not (base / config).exists() else base / config
    config_path = resolve_config(config)
    options = parse_cfg_options(list(cfg_options))
    cfg = load_config(config_path, options)
    facts = config_facts(cfg)
    ds = resolve_deepspeed(deepspeed) if deepspeed else None
    if gpus is not None and gpus < 1:
        raise BadInput(f"--gpus {gpus}: must be at least 1")
    wd = Path(work_dir).expanduser() if work_dir else Path(cfg.get("work_dir") or f"work_dirs/{config_path.stem}")
    wd = (base / wd).resolve()
    check_writable(wd)
    warnings = config_warnings(config_path, facts, deepspeed=ds, cfg_options=options)
    for w in warnings:
        if warn:
            warn(w)

    child_env = dict(os.environ)
    child_env.update(env or {})
    if gpus is not None:
        child_env["NPROC_PER_NODE"] = str(gpus)
    for key in ("NPROC_PER_NODE", "NNODES", "NODE_RANK"):
        if not str(child_env.get(key, "1")).isdigit():
            raise BadInput(f"{key}={child_env[key]}: not a number")
    distributed = int(child_env.get("NPROC_PER_NODE", 1)) > 1 or int(child_env.get("NNODES", 1)) > 1
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
        max_iters=facts.get("max_iters"), meta={"cwd": str(base), "srun": srun, "warnings": warnings, **facts},
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
    from workbench.runs.checkpoints import list_checkpoints

    marker = Path(work_dir) / "last_checkpoint"
    with contextlib.suppress(OSError):
        target = marker.read_text(encoding="utf-8").strip()
        if target and Path(target).exists():
            return target
    ckpts = list_checkpoints(work_dir)
    return ckpts[-1].path if ckpts else None


def resume_run(ref: str | Run, *, iteration: int | None = None, name: str | None = None) -> Run:
    """Start a new run that continues `ref` from its last checkpoint (or from ``iter_<iteration>.pth``).

    It uses the original config path (not the work-dir copy, whose relative paths may point elsewhere),
    the same work dir, cfg-options, DeepSpeed setting and recorded environment, and links to the original.
    """
    from workbench.runs.checkpoints import checkpoint_at, validate_checkpoint

    run = registry.get(ref) if isinstance(ref, str) else registry.refresh(ref)
    if run.status is RunStatus.RUNNING:
        raise BadInput(f"run {run.id} is still running; stop it first (`workbench stop {run.id}`)")
    if iteration is not None:
        ckpt = checkpoint_at(run.work_dir, iteration).path
    else:
        ckpt = last_checkpoint(run.work_dir)
        if ckpt is None:
            raise BadInput(f"run {run.id}: no checkpoint in {run.work_dir} to resume from")
    validate_checkpoint(ckpt)
    config = run.config_path
    if not Path(config).is_file():
        config = str(run.config_copy if run.config_copy.is_file() else "")
        if not config:
            raise BadInput(f"run {run.id}: its config {run.config_path} is gone")
    cwd = run.meta.get("cwd")
    return start_run(config, work_dir=run.work_dir, deepspeed=run.deepspeed, cfg_options=run.cfg_options,
                     srun=run.meta.get("srun"), env=run.env, resume_from=ckpt, parent_id=run.id,
                     name=name or run.name, cwd=cwd if cwd and Path(cwd).is_dir() else None)


def __getattr__(name: str):
    # `stop_run` lives in control.py (stopping is not launching); callers that look for it here get it too.
    if name == "stop_run":
        from workbench.runs.control import stop_run

        return stop_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
