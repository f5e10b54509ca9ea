"""The events a training log turns into. `LogFollower.poll()` and `RunFollower.poll()` return lists of these.

Every event knows where it came from (`source` file and byte `offset` of its first line) and the mmengine
timestamp text (`ts`, ``2026/11/23 10:37:44`` or, from the console, ``11/23 10:37:44``). `to_dict()` is
the JSON form used by `workbench logs --json` (one object a line, with a ``kind`` key).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass
class LogEvent:
    kind: ClassVar[str] = "event"
    ts: str | None = None
    source: str = ""
    offset: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind, **asdict(self)}
        # JSON has no NaN/inf: spell them as strings so the file stays valid JSON.
        for k, v in d.items():
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = str(v)
        return d

    def summary(self) -> str:
        """One line for a terminal."""
        return self.kind


@dataclass
class MetricsEvent(LogEvent):
    """One ``Iter(train) [10/60]  lr: ...  loss: ...`` line.

    `loss`, `time` and `data_time` are what mmengine logs: means over its smoothing window (10 iterations
    by default), the same numbers `vis_data/scalars.json` holds at full precision.
    """

    kind: ClassVar[str] = "metrics"
    mode: str = "train"
    iter: int = 0
    max_iters: int = 0
    epoch: int | None = None
    lr: float | None = None
    loss: float | None = None
    grad_norm: float | None = None
    time: float | None = None
    data_time: float | None = None
    #: Peak GPU memory in MB (mmengine logs it only on CUDA).
    memory: float | None = None
    eta: str | None = None
    #: Any other logged scalar (per-part losses, tokens per second...).
    extra: dict[str, float] = field(default_factory=dict)
    #: Set on the metrics of an earlier run that a resumed run's curve starts with (`follow.lineage_metrics`):
    #: the id of the run that logged them. None for the run's own.
    run_id: str | None = None

    def summary(self) -> str:
        parts = [f"iter {self.iter:>{len(str(self.max_iters))}}/{self.max_iters}"]
        if self.epoch is not None:
            parts[0] = f"epoch {self.epoch} {parts[0]}"
        for label, value, fmt in (("loss", self.loss, ".4f"), ("lr", self.lr, ".3e"), ("grad_norm", self.grad_norm, ".3f"),
                                  ("time", self.time, ".3f"), ("data_time", self.data_time, ".3f"),
                                  ("memory", self.memory, ".0f")):
            if value is not None:
                parts.append(f"{label} {value:{fmt}}")
        parts += [f"{k} {v:.4g}" for k, v in self.extra.items()]
        if self.eta:
            parts.append(f"eta {self.eta}")
        if self.run_id:
            parts.append(f"(run {self.run_id})")
        return "  ".join(parts)


@dataclass
class SampleEvent(LogEvent):
    """One EvaluateChatHook ``Sample output:`` block: the templated prompt and the model's generation.

    `iteration` is the training iteration the sample was generated at (0 before training); `phase` says
    which hook produced it (``before_train``, ``after_train_iter``, ``after_train``, ``after_val``).
    """

    kind: ClassVar[str] = "sample"
    iteration: int = 0
    phase: str = ""
    #: The user's input as typed into `evaluation_inputs` (when the chat template is recognised).
    input: str | None = None
    #: Everything up to and including the assistant's turn marker.
    prompt: str = ""
    #: The generation, with the template's stop word removed.
    answer: str = ""
    text: str = ""

    def summary(self) -> str:
        if self.input is None:
            return f"  {self.text}"
        return f"  Q: {self.input}\n  A: {self.answer}"


@dataclass
class CheckpointEvent(LogEvent):
    """``Saving checkpoint at N iterations``."""

    kind: ClassVar[str] = "checkpoint"
    iteration: int = 0

    def summary(self) -> str:
        return f"checkpoint saved: iter_{self.iteration}.pth"


@dataclass
class WarningEvent(LogEvent):
    kind: ClassVar[str] = "warning"
    message: str = ""

    def summary(self) -> str:
        return f"warning: {self.message}"


@dataclass
class ErrorEvent(LogEvent):
    """Something went wrong.

    `error` is one of ``traceback`` (a Python exception; `message` is its last line), ``oom`` (CUDA or
    CPU out of memory), ``nan_loss`` (a NaN or inf loss), ``error`` (an mmengine ERROR line) and ``died``
    (the process ended without reaching the end of training).
    """

    kind: ClassVar[str] = "error"
    error: str = "error"
    message: str = ""
    detail: str = ""
    iteration: int | None = None

    def summary(self) -> str:
        return f"ERROR ({self.error}): {self.message}"


@dataclass
class TrainEndEvent(LogEvent):
    """Training reached its end (``after_train``, or the last iteration was logged)."""

    kind: ClassVar[str] = "train_end"
    iteration: int = 0

    def summary(self) -> str:
        return f"training reached its end at iter {self.iteration}"


@dataclass
class RunEndEvent(LogEvent):
    """The run's process is gone (only `RunFollower` emits this): its final status, exit code and reason."""

    kind: ClassVar[str] = "run_end"
    status: str = ""
    exit_code: int | None = None
    reason: str | None = None

    def summary(self) -> str:
        code = "" if self.exit_code is None else f", exit code {self.exit_code}"
        return f"run {self.status}{code}" + (f": {self.reason}" if self.reason else "")


def group_samples(events: list[LogEvent]) -> dict[int, list[SampleEvent]]:
    """Sample outputs keyed by iteration, in log order (what the TUI shows as "samples at iter N")."""
    groups: dict[int, list[SampleEvent]] = {}
    for ev in events:
        if isinstance(ev, SampleEvent):
            groups.setdefault(ev.iteration, []).append(ev)
    return groups
