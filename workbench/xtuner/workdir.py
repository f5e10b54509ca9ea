"""An XTuner work dir on disk: the config copy mmengine dumps into it, the ``iter_N.pth`` checkpoints (a file, or a
folder when DeepSpeed wrote it), mmengine's ``last_checkpoint`` marker and its timestamped log folders.

Every other package lists checkpoints and finds the config copy through `WorkDir`; nothing here reads the
registry (which run wrote which checkpoint is `workbench.runs.checkpoints`' question).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

#: A checkpoint's name, as mmengine's CheckpointHook writes it.
CKPT_NAME = re.compile(r"^iter_(\d+)\.pth$")
#: mmengine's ``<work_dir>/<YYYYmmdd_HHMMSS>/`` log folders.
TS_DIR = re.compile(r"^\d{8}_\d{6}$")


def checkpoint_iter(path: str | os.PathLike) -> int | None:
    """N of a checkpoint path ``.../iter_N.pth``, else None."""
    m = CKPT_NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def model_states(folder: str | os.PathLike) -> list[Path]:
    """The ``*model_states.pt`` files of a DeepSpeed checkpoint folder, rank 0's first: directly inside it, or in
    the one tag folder inside it (``iter_N.pth/<tag>/``, beside a ``latest`` file naming the tag)."""
    p = Path(folder)
    for pattern in ("*model_states.pt", "*/*model_states.pt"):
        found = sorted(p.glob(pattern), key=lambda f: ("mp_rank_00_model_states" not in f.name, str(f)))
        if found:
            return found
    return []


def is_deepspeed_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a checkpoint folder DeepSpeed wrote: a ``latest`` file, or model states inside."""
    p = Path(path)
    return p.is_dir() and ((p / "latest").is_file() or bool(model_states(p)))


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is an XTuner checkpoint: a ``*.pth`` file, or a ``*.pth`` DeepSpeed folder."""
    p = Path(path)
    return p.suffix == ".pth" and (p.is_file() or is_deepspeed_folder(p))


@dataclass(frozen=True)
class CheckpointFile:
    """One ``iter_N.pth`` of a work dir."""

    iteration: int
    path: Path

    @property
    def name(self) -> str:
        """``iter_N``: what the checkpoint is called wherever it is shown."""
        return f"iter_{self.iteration}"

    @property
    def deepspeed(self) -> bool:
        return self.path.is_dir()


class WorkDir:
    """An XTuner work dir (``xtuner train --work-dir``), read without importing anything."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"WorkDir({str(self.path)!r})"

    def config(self, config_name: str | None = None) -> Path | None:
        """The config copy mmengine wrote here (``<config stem>.py``; given the original config's name, that one
        when present), else the newest ``*.py``; None when there is none."""
        if config_name:
            candidate = self.path / f"{Path(config_name).stem}.py"
            if candidate.is_file():
                return candidate
        found = []
        with contextlib.suppress(OSError):
            for p in self.path.glob("*.py"):
                with contextlib.suppress(OSError):
                    if p.is_file():
                        found.append((p.stat().st_mtime, p))
        return max(found, key=lambda t: t[0])[1] if found else None

    def checkpoints(self) -> list[CheckpointFile]:
        """Every ``iter_N.pth`` here (file or DeepSpeed folder), by iteration."""
        try:
            entries = list(self.path.iterdir())
        except OSError:
            return []
        out = [CheckpointFile(int(m.group(1)), p) for p in entries if (m := CKPT_NAME.match(p.name))]
        return sorted(out, key=lambda c: c.iteration)

    def checkpoint(self, iteration: int) -> CheckpointFile | None:
        return next((c for c in self.checkpoints() if c.iteration == iteration), None)

    def marked_checkpoint(self) -> str | None:
        """The file name mmengine's ``last_checkpoint`` marker points at (``iter_N.pth``), None without one."""
        with contextlib.suppress(OSError):
            target = (self.path / "last_checkpoint").read_text(encoding="utf-8").strip()
            return Path(target).name if target else None
        return None

    def last_checkpoint(self) -> Path | None:
        """What ``last_checkpoint`` points at when it exists, else the highest ``iter_N.pth`` (None: none here)."""
        with contextlib.suppress(OSError):
            target = (self.path / "last_checkpoint").read_text(encoding="utf-8").strip()
            if target and Path(target).exists():
                return Path(target)
        ckpts = self.checkpoints()
        return ckpts[-1].path if ckpts else None

    def adapter_dir(self, iteration: int) -> Path:
        """Where the PEFT adapter of ``iter_<iteration>.pth`` is converted to by default (``hf/iter_N``)."""
        return self.path / "hf" / f"iter_{iteration}"

    def log_dirs(self) -> list[tuple[float, Path]]:
        """mmengine's ``<YYYYmmdd_HHMMSS>/`` folders that hold a log, oldest first, with their time."""
        out = []
        try:
            entries = list(self.path.iterdir())
        except OSError:
            return []
        for d in entries:
            if TS_DIR.match(d.name) and (d / f"{d.name}.log").exists():
                when = dt.datetime.strptime(d.name, "%Y%m%d_%H%M%S").timestamp()  # local time, like mmengine
                out.append((when, d))
        return sorted(out)
