"""The model core's small interface: one loaded base model, adapters attached by name, generation.

Front ends (the `workbench chat` REPL, the TUI's Chat screen, `workbench eval`) talk to a `Backend` only.
Backends are registered by name as ``"module:Class"`` strings and imported on first use (the shape of
lm-evaluation-harness), so nothing here imports torch: `workbench --help` stays fast.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import BadInput

if TYPE_CHECKING:
    from workbench.models.templates import ChatFormat

# Stop reasons of a `Reply`.
EOS, STOP_WORD, LENGTH, LOOP, CANCELLED = "eos", "stop_word", "length", "loop", "cancelled"

BACKENDS: dict[str, str] = {
    "transformers": "workbench.models.hf:TransformersBackend",
    "lmdeploy": "workbench.models.lmdeploy:LmdeployBackend",
}


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode. ``temperature == 0`` means greedy (top_p/top_k are then ignored)."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def key(self) -> str:
        """A stable short hash of these settings (the eval cache keys responses by it)."""
        blob = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class Reply:
    """One generated answer. ``stop_reason`` is one of eos, stop_word, length, loop, cancelled."""

    text: str
    tokens: int
    stop_reason: str
    looped: bool = False


@dataclass(frozen=True)
class AdapterInfo:
    """What `Backend.add_adapter` attached: where from, and its LoRA shape."""

    name: str
    source: str
    kind: str  # "peft" | "xtuner-pth"
    r: int | None = None
    alpha: float | None = None
    target_modules: tuple[str, ...] = ()
    base_model: str | None = None  # the base the adapter says it was trained on
    config: str | None = None  # the training config (for .pth checkpoints), when known
    extra: dict = field(default_factory=dict, compare=False)


ProgressFn = Callable[[int, int, str], None]


class Backend(ABC):
    """One loaded base model with adapters attached by name; the active one answers.

    Adapters: `add_adapter` (a PEFT folder or an XTuner ``iter_N.pth``), `set_active(name)`,
    `set_active(None)` for the base itself. Switching never reloads the base.
    """

    name: str = "?"

    @abstractmethod
    def add_adapter(self, name: str, source: str | Path, *, config: str | Path | None = None) -> AdapterInfo:
        """Attach an adapter under `name`: a PEFT adapter folder, or an XTuner checkpoint ``iter_N.pth``
        (a file, or a DeepSpeed folder) read straight into the loaded base. `config` is the training config
        (needed for a .pth; default: the config copy in the checkpoint's work dir). Raises `BadInput` when
        the adapter does not fit the base (the message names both)."""

    @abstractmethod
    def remove_adapter(self, name: str) -> None:
        """Detach an adapter; if it was active, the base becomes active."""

    @abstractmethod
    def set_active(self, name: str | None) -> None:
        """Make adapter `name` answer; ``None`` = the base with every adapter disabled."""

    @property
    @abstractmethod
    def active(self) -> str | None:
        """The active adapter's name, or None for the base."""

    @abstractmethod
    def adapters(self) -> list[str]:
        """Names of the attached adapters, in the order they were added."""

    @abstractmethod
    def generate(
        self,
        conversations: list[list[dict]],
        template: ChatFormat,
        settings: GenerationSettings,
        progress: ProgressFn | None = None,
    ) -> list[Reply]:
        """Answer each conversation (a list of ``{"role", "content"}`` messages ending with a user turn)
        with the active model; batched with left padding. One `Reply` per conversation, same order."""

    @abstractmethod
    def stream(
        self,
        messages: list[dict],
        template: ChatFormat,
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield the answer to one conversation piece by piece as it is generated (generation runs in a
        worker thread). Setting `cancel` stops it within one token step. After the iterator ends,
        `last_reply` holds the full `Reply`."""

    last_reply: Reply | None = None

    def close(self) -> None:  # noqa: B027 - most backends have nothing to release beyond the model
        """Release the model (and any server process)."""

    def describe(self) -> dict:
        """A small dict for display: backend, base, active adapter, adapters."""
        return {"backend": self.name, "active": self.active, "adapters": self.adapters()}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def get_backend(name: str, base: str | Path, **options) -> Backend:
    """Load `base` with the backend registered as `name` ("transformers" or "lmdeploy").

    The backend's module is imported now, not before: choosing a backend is what pays for torch.
    Options are backend-specific (transformers: device, dtype, load_in_4bit, trust_remote_code, merged).
    """
    if name not in BACKENDS:
        raise BadInput(f"--backend {name!r}: unknown backend (choose from {', '.join(BACKENDS)})")
    module_name, cls_name = BACKENDS[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(base, **options)
