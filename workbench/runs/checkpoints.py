"""A work dir's checkpoints (``iter_N.pth``: a file, or a folder when DeepSpeed wrote it).

Also the warning the seeds ask for: XTuner's ``save_total_limit`` (mmengine's ``max_keep_ckpts``) deletes
old checkpoints as new ones are saved, which are exactly the ones a user wants to compare afterwards.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from workbench.errors import BadInput
from workbench.runs.model import Checkpoint
from workbench.xtuner.workdir import WorkDir, is_deepspeed_folder


def adapter_dir(work_dir: str | os.PathLike, iteration: int) -> Path:
    """Where `workbench convert` puts the PEFT adapter of ``iter_<iteration>.pth`` by default."""
    return WorkDir(work_dir).adapter_dir(iteration)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def list_checkpoints(work_dir: str | os.PathLike) -> list[Checkpoint]:
    """Every ``iter_N.pth`` in `work_dir` (`WorkDir.checkpoints`), by iteration, with size, time and its
    converted adapter if any."""
    wd = WorkDir(work_dir)
    last = wd.marked_checkpoint()
    out = []
    for ck in wd.checkpoints():
        try:
            st = ck.path.stat()
        except OSError:  # deleted by max_keep_ckpts while we looked
            continue
        adapter = wd.adapter_dir(ck.iteration)
        out.append(Checkpoint(
            iteration=ck.iteration, path=str(ck.path), size_bytes=_size(ck.path), mtime=st.st_mtime,
            deepspeed=ck.deepspeed, adapter_path=str(adapter) if (adapter / "adapter_config.json").is_file() else None,
            is_last=ck.path.name == last,
        ))
    return out


#: Seconds after a run's recorded end in which a checkpoint file may still carry its time (the end of the
#: last write can follow the last log line), and before its start (whole-second timestamps).
ATTRIBUTION_SLACK_S = 30.0


def _lineage(run, by_id: dict) -> set[str]:
    """The run and the runs it resumed, transitively (their checkpoints are the start of its curve)."""
    ids, cur = set(), run
    while cur is not None and cur.id not in ids:
        ids.add(cur.id)
        cur = by_id.get(cur.parent_id) if cur.parent_id else None
    return ids


def attribute_checkpoints(ckpts: list[Checkpoint], runs: list) -> list[Checkpoint]:
    """Set `written_by` on each checkpoint from its modification time and the runs that used its work dir.

    A run's window is [start, end + slack], cut at the next run's start; a checkpoint belongs to the run
    whose window holds its time. One that fits no window, or two runs at once that ran side by side, is
    marked `uncertain`. With a single run (or one run and its resumes) there is nothing to tell apart.
    """
    import time as _time

    ordered = sorted(runs, key=lambda r: r.started_at or 0.0)
    windows = []
    for i, r in enumerate(ordered):
        start = (r.started_at or 0.0) - 2.0
        end = (r.ended_at + ATTRIBUTION_SLACK_S) if (r.ended_at and r.status.ended) else _time.time() + 1e9
        if i + 1 < len(ordered):
            end = min(end, max((ordered[i + 1].started_at or 0.0) - 1.0, r.ended_at or 0.0))
        windows.append((start, end, r))
    for c in ckpts:
        fits = [r for start, end, r in windows if start <= c.mtime <= end]
        if len(fits) == 1:
            c.written_by, c.uncertain = fits[0].id, False
        else:
            c.written_by, c.uncertain = None, len(ordered) > 1
    return ckpts


def run_checkpoints(run) -> list[Checkpoint]:
    """The checkpoints of one run: those it wrote and those of the runs it resumed, never another run's.

    A work dir holds one run by default, but a run started with --overwrite, or a plain `xtuner train`
    folder used several times and imported, holds files of several runs: each checkpoint is attributed by
    its time (`attribute_checkpoints`). Checkpoints that cannot be attributed are kept and marked
    `uncertain`. Listings, convert, resume and the eval sweep of a run should use this rather than
    `list_checkpoints(run.work_dir)`.
    """
    from workbench.runs import registry

    ckpts = list_checkpoints(run.work_dir)
    try:
        runs = registry.runs_in(run.work_dir)
    except Exception:  # the registry is only needed to tell runs apart: without it, show the folder as it is
        return ckpts
    by_id = {r.id: r for r in runs}
    by_id.setdefault(run.id, run)
    runs = list(by_id.values())
    mine = _lineage(run, by_id)
    attribute_checkpoints(ckpts, runs)
    if all(r.id in mine for r in runs):
        for c in ckpts:  # one lineage in the folder: every file is its own, whatever the times say
            c.written_by, c.uncertain = c.written_by or run.id, False
        return ckpts
    return [c for c in ckpts if c.uncertain or c.written_by in mine]


def validate_checkpoint(path: str | os.PathLike, *, deep: bool = False) -> Path:
    """Raise a one-line `BadInput` unless `path` is a checkpoint mmengine or DeepSpeed wrote.

    The quick check reads the zip directory at the end of the file (a truncated file has none); `deep`
    also reads every member against its CRC (torch.save writes stored, CRC-checked members), which finds
    bytes damaged in the middle, at about the speed of reading the file. Use it before handing the file to
    a child that would fail later with a long traceback (convert, resume).
    """
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such checkpoint")
    if path.is_dir():
        if not is_deepspeed_folder(path):
            raise BadInput(f"{path}: not a checkpoint (a folder without DeepSpeed model states)")
        return path
    if not zipfile.is_zipfile(path):
        size = path.stat().st_size
        raise BadInput(f"{path}: not a checkpoint (not a file torch.save wrote, or cut short: {size} bytes)")
    if deep:
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise BadInput(f"{path}: damaged checkpoint ({exc})") from None
        if bad is not None:
            raise BadInput(f"{path}: damaged checkpoint (member {bad} fails its CRC check)")
    return path


def split_damaged(ckpts: list[Checkpoint]) -> tuple[list[Checkpoint], list[str]]:
    """(the checkpoints that pass `validate_checkpoint(deep=True)`, one line for each that does not)."""
    good, bad = [], []
    for c in ckpts:
        try:
            validate_checkpoint(c.path, deep=True)
        except BadInput as exc:
            bad.append(exc.message)
        else:
            good.append(c)
    return good, bad


def checkpoint_at(work_dir: str | os.PathLike, iteration: int) -> Checkpoint:
    """The checkpoint of one iteration, or a `BadInput` naming the iterations that exist."""
    ckpts = list_checkpoints(work_dir)
    for c in ckpts:
        if c.iteration == iteration:
            return c
    have = ", ".join(str(c.iteration) for c in ckpts) or "none"
    raise BadInput(f"--iter {iteration}: no iter_{iteration}.pth in {work_dir} (checkpoints: {have})")


def limit_warning(facts: dict[str, Any]) -> str | None:
    """A warning when the checkpoint limit will delete checkpoints of this run, else None.

    `facts` holds ``max_keep_ckpts`` / ``save_total_limit``, ``max_iters`` and ``save_interval``
    (`workbench.xtuner.config.config_facts` or `dumped_facts` give them).
    """
    keep = facts.get("max_keep_ckpts")
    if keep is None or keep == -1:
        keep = facts.get("save_total_limit")
    if not isinstance(keep, int) or keep <= 0:
        return None
    max_iters, every = facts.get("max_iters"), facts.get("save_interval")
    if isinstance(max_iters, int) and isinstance(every, int) and every > 0:
        total = max_iters // every
        if total <= keep:
            return None
        lost = total - keep
        doomed = f"iter_{every}" if lost == 1 else f"iter_{every}..iter_{lost * every}"
        return (f"save_total_limit = {keep}: only the last {keep} of the {total} checkpoints this run saves are kept; "
                f"{doomed} will be deleted as training goes on. "
                "Set save_total_limit = -1 to keep them all for comparison.")
    return (f"save_total_limit = {keep}: only the last {keep} checkpoints are kept, older ones are deleted as "
            "training goes on. Set save_total_limit = -1 to keep them all for comparison.")


def run_limit_warning(work_dir: str | os.PathLike, facts: dict[str, Any] | None = None) -> str | None:
    """`limit_warning` for a run: from the config copy mmengine dumped in its work dir, else `facts`."""
    from workbench.xtuner.config import dumped_facts

    dumped = WorkDir(work_dir).config()
    return limit_warning(dumped_facts(dumped) if dumped else (facts or {}))
