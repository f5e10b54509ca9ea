"""A work dir's checkpoints (``iter_N.pth``: a file, or a folder when DeepSpeed wrote it).

Also the warning the seeds ask for: XTuner's ``save_total_limit`` (mmengine's ``max_keep_ckpts``) deletes
old checkpoints as new ones are saved, which are exactly the ones a user wants to compare afterwards.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

from workbench.errors import BadInput
from workbench.runs.model import Checkpoint

CKPT_NAME = re.compile(r"^iter_(\d+)\.pth$")


def adapter_dir(work_dir: str | os.PathLike, iteration: int) -> Path:
    """Where `workbench convert` puts the PEFT adapter of ``iter_<iteration>.pth`` by default."""
    return Path(work_dir) / "hf" / f"iter_{iteration}"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _is_deepspeed_folder(path: Path) -> bool:
    if (path / "latest").is_file():
        return True
    return any(path.glob("*model_states.pt")) or any(path.glob("*/*model_states.pt"))


def list_checkpoints(work_dir: str | os.PathLike) -> list[Checkpoint]:
    """Every ``iter_N.pth`` in `work_dir`, by iteration, with size, time and its converted adapter if any."""
    work_dir = Path(work_dir)
    last = None
    try:
        last = Path((work_dir / "last_checkpoint").read_text(encoding="utf-8").strip()).name
    except OSError:
        pass
    out = []
    try:
        entries = list(work_dir.iterdir())
    except OSError:
        return []
    for path in entries:
        m = CKPT_NAME.match(path.name)
        if not m:
            continue
        try:
            st = path.stat()
        except OSError:  # deleted by max_keep_ckpts while we looked
            continue
        n = int(m.group(1))
        adapter = adapter_dir(work_dir, n)
        out.append(Checkpoint(
            iteration=n, path=str(path), size_bytes=_size(path), mtime=st.st_mtime, deepspeed=path.is_dir(),
            adapter_path=str(adapter) if (adapter / "adapter_config.json").is_file() else None,
            is_last=path.name == last,
        ))
    return sorted(out, key=lambda c: c.iteration)


def validate_checkpoint(path: str | os.PathLike) -> Path:
    """Raise a one-line `BadInput` unless `path` is a checkpoint mmengine or DeepSpeed wrote."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such checkpoint")
    if path.is_dir():
        if not _is_deepspeed_folder(path):
            raise BadInput(f"{path}: not a checkpoint (a folder without DeepSpeed model states)")
    elif not zipfile.is_zipfile(path):
        raise BadInput(f"{path}: not a checkpoint (not a file torch.save wrote)")
    return path


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
    (`config.config_facts` or `config.dumped_facts` give them).
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
    from workbench.runs.config import dumped_config_path, dumped_facts

    dumped = dumped_config_path(work_dir)
    return limit_warning(dumped_facts(dumped) if dumped else (facts or {}))
