"""What a training run is, in the user's words: `Run`, `RunStatus`, `Checkpoint`.

Plain dataclasses with no behaviour that touches processes or files, so the TUI can hold and render them
freely. `to_dict()` gives the `--json` form of each.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class RunStatus(str, enum.Enum):
    """Where a run stands. Derived from the process and the files on every read (see `state.py`)."""

    RUNNING = "running"
    FINISHED = "finished"  # the tool exited 0
    FAILED = "failed"  # the tool exited non-zero or was killed by a signal nobody asked for
    STOPPED = "stopped"  # `workbench stop` ended it
    LOST = "lost"  # no process and no recorded exit: a reboot, or the supervisor was killed

    @property
    def ended(self) -> bool:
        return self is not RunStatus.RUNNING

    def __str__(self) -> str:
        return self.value


@dataclass
class Run:
    """One invocation of XTuner's training tool, started by workbench or imported from a work dir.

    `run_dir` (``<work_dir>/workbench/<id>``) holds what the supervisor writes: ``stdout.log`` (the tool's
    stdout and stderr), ``pid.json``, ``exit.json``, ``stop.json`` and ``config.py`` (a copy of the config).
    """

    id: str
    name: str
    config_path: str
    work_dir: str
    run_dir: str
    command: list[str] = field(default_factory=list)
    #: Launch settings worth keeping: NPROC_PER_NODE, NNODES, NODE_RANK, ADDR, PORT, WORKBENCH_MODEL, ...
    env: dict[str, str] = field(default_factory=dict)
    cfg_options: list[str] = field(default_factory=list)
    deepspeed: str | None = None
    pid: int | None = None
    pgid: int | None = None
    host: str = ""
    started_at: float = 0.0
    ended_at: float | None = None
    status: RunStatus = RunStatus.RUNNING
    exit_code: int | None = None
    reason: str | None = None
    #: The run this one resumed, and the checkpoint it resumed from.
    parent_id: str | None = None
    resume_from: str | None = None
    max_iters: int | None = None
    #: The mmengine log (``<work_dir>/<ts>/<ts>.log``), once it is known.
    log_path: str | None = None
    #: True for runs started by plain `xtuner train` and registered with `workbench import`.
    imported: bool = False
    #: Free-form facts: save interval, save_total_limit, launcher, peak memory of the child...
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def stdout_path(self) -> Path:
        return Path(self.run_dir) / "stdout.log"

    @property
    def config_copy(self) -> Path:
        return Path(self.run_dir) / "config.py"

    @property
    def duration(self) -> float | None:
        import time

        if not self.started_at:
            return None
        return (self.ended_at or time.time()) - self.started_at

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


@dataclass
class Checkpoint:
    """One ``iter_N.pth`` in a work dir: a file, or a folder when DeepSpeed wrote it."""

    iteration: int
    path: str
    size_bytes: int
    mtime: float
    deepspeed: bool
    #: The PEFT adapter folder converted from it, when there is one (``<work_dir>/hf/iter_N``).
    adapter_path: str | None = None
    #: The one `last_checkpoint` points at (what `workbench resume` continues from).
    is_last: bool = False
    #: The run that wrote it, told by its time against the runs of the work dir (`checkpoints.run_checkpoints`).
    written_by: str | None = None
    #: True when several runs used the work dir and its time fits none of them (a copy that lost the times):
    #: it may be another run's file.
    uncertain: bool = False

    @property
    def converted(self) -> bool:
        return self.adapter_path is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["converted"] = self.converted
        return d
