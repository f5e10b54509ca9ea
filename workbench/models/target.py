"""`Target`: one thing that answers (the base, a checkpoint, an adapter, a merged model), the identity a chat
session's variants and an eval's rows share. `workbench.targets` finds them and names them; it sits above the
runs core, so the type lives here, where the chat session can hold it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BASE, CHECKPOINT, ADAPTER, MERGED = "base", "checkpoint", "adapter", "merged"
KINDS = (BASE, CHECKPOINT, ADAPTER, MERGED)
_ITER = re.compile(r"iter[_-]?(\d+)")


@dataclass(frozen=True)
class Target:
    """One thing that answers: the base, a checkpoint (``iter_N.pth``), a PEFT adapter, or a merged model."""

    name: str  # the label shown everywhere: "base", "iter_20", an adapter's folder name, ...
    kind: str  # one of KINDS
    source: str | None = None  # the base / .pth / adapter folder / merged model folder
    iteration: int | None = None
    config: str | None = None  # the training config (an iter_N.pth needs it)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "source": self.source, "iteration": self.iteration}


def iteration_of(name: str) -> int | None:
    """The training iteration in a checkpoint name (``iter_600``, ``iter_600.pth``, ``hf/iter_600``)."""
    m = _ITER.search(name)
    return int(m.group(1)) if m else None
