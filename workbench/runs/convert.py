"""Checkpoints -> PEFT adapters, and adapter + base -> merged model. Both in a child process.

Convert goes through XTuner's own ``pth_to_hf`` (only XTuner knows how its `SupervisedFinetune` wraps the
LoRA weights, and DeepSpeed folders), run by `convert_worker` in one child for all requested checkpoints
so the ~8 s of imports are paid once. Output: safetensors, fp32 (adapters are small; fp16 would round
away the small LoRA updates of a short run). Default place: ``<work_dir>/hf/iter_N``.

Merge uses peft's ``merge_and_unload`` directly (`merge_worker`), not ``xtuner convert merge``: XTuner's
tool is the same peft call but hard-codes fp16 loading and ``trust_remote_code=True``; fp16 on a CPU is
slow and lossy for an fp32 model, and a bf16 model saved as fp16 can overflow. We load in the base's own
dtype (fp32 on a CPU), run code shipped in the base folder only when the user said so (as chat does), and
write safetensors.

Every output is built under a temporary name beside its destination and renamed into place, so a crash
never leaves a half-written adapter or model.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from workbench.errors import BadInput, OperationFailed
from workbench.models.loading import require_trust
from workbench.progress import ProgressFn
from workbench.runs import registry
from workbench.runs.checkpoints import adapter_dir, checkpoint_at, run_checkpoints, validate_checkpoint
from workbench.runs.launch import check_writable
from workbench.runs.model import Checkpoint, Run
from workbench.xtuner.workdir import WorkDir

DONE_MARK = "@@workbench-done"


@dataclass
class Conversion:
    iteration: int
    checkpoint: str
    adapter_path: str
    skipped: bool = False  # already converted (use force=True to redo)

    def to_dict(self) -> dict:
        return asdict(self)


def conversion_config(run: Run) -> Path:
    """The config to convert with: the copy mmengine dumped into the work dir (what was really trained,
    cfg-options included), else the run's own config."""
    dumped = WorkDir(run.work_dir).config(Path(run.config_path).name if run.config_path else None)
    if dumped is not None:
        return dumped
    if run.config_path and Path(run.config_path).is_file():
        return Path(run.config_path)
    raise BadInput(f"run {run.id}: no config to convert with (neither a copy in {run.work_dir} nor {run.config_path})")


def _run_child(cmd: list[str], total: int, label: str, progress: ProgressFn | None) -> None:
    tail: collections.deque[str] = collections.deque(maxlen=400)
    done = 0
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          env=env, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(DONE_MARK):
                done += 1
                if progress:
                    progress(done, total, label)
            else:
                tail.append(line.rstrip("\n"))
        code = proc.wait()
    if code != 0:
        from workbench.runs.events import ErrorEvent
        from workbench.runs.logparse import LogParser

        parser = LogParser(label, mmengine_records=False)
        errors = [e for line in tail for e in parser.feed(line) if isinstance(e, ErrorEvent)] + \
                 [e for e in parser.finish() if isinstance(e, ErrorEvent)]
        why = errors[-1].message if errors else (tail[-1] if tail else f"exit code {code}")
        raise OperationFailed(f"{label} failed: {why}")


def convert_run(ref: str | Run, *, iteration: int | None = None, all_checkpoints: bool = False,
                out: str | os.PathLike | None = None, force: bool = False,
                progress: ProgressFn | None = None) -> list[Conversion]:
    """Convert a run's checkpoints to PEFT adapter folders.

    With neither `iteration` nor `all_checkpoints`, the last checkpoint. `out` is the adapter folder for
    one checkpoint, or the root (``out/iter_N``) with `all_checkpoints`. Already converted checkpoints
    are skipped unless `force`.
    """
    run = registry.get(ref) if isinstance(ref, str) else ref
    if iteration is not None and all_checkpoints:
        raise BadInput("--iter and --all: choose one")
    ckpts: list[Checkpoint]
    if all_checkpoints:
        ckpts = run_checkpoints(run)
    elif iteration is not None:
        ckpts = [checkpoint_at(run.work_dir, iteration)]
    else:
        ckpts = run_checkpoints(run)[-1:]
    if not ckpts:
        raise BadInput(f"run {run.id}: no checkpoints in {run.work_dir}")
    for c in ckpts:  # all of them before the child starts: a damaged one is named here, in one line
        validate_checkpoint(c.path, deep=True)
    config = conversion_config(run)

    def dest(c: Checkpoint) -> Path:
        if out is None:
            return adapter_dir(run.work_dir, c.iteration)
        return Path(out) / f"iter_{c.iteration}" if all_checkpoints else Path(out)

    results, jobs = [], []
    for c in ckpts:
        d = dest(c).resolve()
        skip = not force and ((d / "adapter_config.json").is_file() or (d / "config.json").is_file())
        if not skip and d.exists() and not force:
            raise BadInput(f"{d}: already exists and is not an adapter; remove it or pass --force")
        results.append(Conversion(c.iteration, c.path, str(d), skipped=skip))
        if not skip:
            jobs += [c.path, str(d)]
    if jobs:
        parent = Path(jobs[1]).parent
        check_writable(parent)
        cmd = [sys.executable, "-m", "workbench.runs.convert_worker", str(config), *jobs]
        _run_child(cmd, len(jobs) // 2, f"convert run {run.id}", progress)
    return results


def merge_adapter(base: str | os.PathLike, adapter: str | os.PathLike, out: str | os.PathLike, *,
                  dtype: str = "auto", device: str = "auto", trust_remote_code: bool = False,
                  force: bool = False, progress: ProgressFn | None = None) -> Path:
    """Merge a PEFT adapter into its base model and save the result (safetensors) at `out`.

    `dtype` ``auto`` keeps the base's dtype on a GPU and uses fp32 on a CPU. `trust_remote_code` is the caller's
    decision (a flag, the training config, the trust_remote_code setting): a base that ships its own model code
    (``auto_map``, as InternLM2 does) is refused unless it is trusted, never run silently.
    """
    base_p, adapter_p, out_p = Path(base).expanduser(), Path(adapter).expanduser(), Path(out).expanduser()
    if base_p.exists() and not (base_p / "config.json").is_file():
        raise BadInput(f"{base}: not a model folder (no config.json)")
    if not base_p.exists() and (base_p.is_absolute() or str(base).startswith(".") or str(base).count("/") != 1):
        raise BadInput(f"{base}: no such model folder")
    if adapter_p.is_file() or adapter_p.name.endswith(".pth"):
        raise BadInput(f"{adapter}: a training checkpoint, not an adapter; convert it first (`workbench convert`)")
    if not (adapter_p / "adapter_config.json").is_file():
        raise BadInput(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise BadInput(f"--dtype {dtype}: one of auto, float32, bfloat16, float16")
    if out_p.exists() and not force:
        raise BadInput(f"{out}: already exists; choose another OUT or pass --force")
    check_writable(out_p.resolve().parent)
    if base_p.exists():
        require_trust(base_p, trust_remote_code)
    cmd = [sys.executable, "-m", "workbench.runs.merge_worker", str(base_p if base_p.exists() else base),
           str(adapter_p.resolve()), str(out_p.resolve()), "--dtype", dtype, "--device", device]
    if trust_remote_code:
        cmd.append("--trust-remote-code")
    _run_child(cmd, 1, f"merge {adapter_p.name}", progress)
    return out_p.resolve()


def merged_path(run: Run, iteration: int) -> Path:
    """Where a run's checkpoint merged into its base goes: ``<work_dir>/merged/iter_N``."""
    return Path(run.work_dir) / "merged" / f"iter_{iteration}"


def merge_checkpoint(ref: str | Run, iteration: int, *, base: str, trust_remote_code: bool, dtype: str = "auto",
                     device: str = "auto", force: bool = False, progress: ProgressFn | None = None) -> Path:
    """Merge one checkpoint of a run into `base` (the run's base, `trust_remote_code` decided by the caller's
    resolver): converted first when it has no adapter yet, saved at `merged_path`. A merge already there (its
    ``config.json`` written) is reused, not redone, unless `force`."""
    run = ref if isinstance(ref, Run) else registry.get(ref)
    out = merged_path(run, iteration)
    if (out / "config.json").is_file() and not force:
        return out
    ck = checkpoint_at(run.work_dir, iteration)
    adapter = ck.adapter_path or convert_run(run, iteration=iteration, progress=progress)[0].adapter_path
    return merge_adapter(base, adapter, out, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                         force=force, progress=progress)


__all__ = ["Conversion", "convert_run", "merge_adapter", "merge_checkpoint", "merged_path", "conversion_config",
           "validate_checkpoint"]
