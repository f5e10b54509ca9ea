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
from workbench.progress import ProgressFn

if TYPE_CHECKING:
    from workbench.models.templates import ChatFormat
    from workbench.settings import Settings

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
    """One answer. ``stop_reason`` is one of eos, stop_word, length, loop, cancelled.

    A backend always fills `tokens` and `stop_reason`; they are None only for a reply read back from an eval cache
    row that did not record them. `cached`: read back from the eval cache, not generated now."""

    text: str
    tokens: int | None
    stop_reason: str | None
    looped: bool = False
    cached: bool = False


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


class ReplyStream(ABC):
    """The answer to one conversation as it is generated: iterate it for text pieces; once the iteration has ended,
    `reply` is the whole `Reply`. `tokens` counts the tokens generated so far; `cancel()` (or the caller's event)
    stops the generation. Iterating twice continues the same iteration (it is started once)."""

    def __init__(self, cancel: threading.Event | None = None):
        self.cancel_event = cancel or threading.Event()
        self.tokens = 0
        self._reply: Reply | None = None
        self._gen: Iterator[str] | None = None

    @abstractmethod
    def _read(self) -> Iterator[str]:
        """Generate, yielding text pieces; set `_reply` before returning."""

    def __iter__(self) -> Iterator[str]:
        if self._gen is None:
            self._gen = self._read()
        return self._gen

    def __next__(self) -> str:
        return next(iter(self))

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def reply(self) -> Reply:
        """The whole reply; only once the iteration has ended (a `RuntimeError` before)."""
        if self._reply is None:
            raise RuntimeError("the reply is not finished: read the stream to its end first")
        return self._reply

    def wait(self) -> Reply:
        """Read to the end (discarding the text) and return the reply."""
        for _ in self:
            pass
        return self.reply


Notice = Callable[[str], None]


class Backend(ABC):
    """One loaded base model with adapters attached by name; the active one answers.

    Adapters: `add_adapter` (a PEFT folder or an XTuner ``iter_N.pth``), `set_active(name)`,
    `set_active(None)` for the base itself. Switching never reloads the base. The bookkeeping of what is attached
    (`_infos`, `_active`) is shared here; a backend does the attaching.
    """

    name: str = "?"
    #: A line for the front ends about how this backend shares the machine (the CPU backend's threads), or None.
    cpu_note: str | None = None

    def __init__(self) -> None:
        self._infos: dict[str, AdapterInfo] = {}
        self._active: str | None = None

    def _check_new(self, name: str) -> None:
        """Refuse a name that is already attached."""
        if name in self._infos:
            raise BadInput(f"adapter {name!r} is already loaded (from {self._infos[name].source})")

    def _check_known(self, name: str | None) -> None:
        """Refuse an adapter name that is not attached (None, the base, is always known)."""
        if name is not None and name not in self._infos:
            raise BadInput(f"no adapter named {name!r} (loaded: {', '.join(self._infos) or 'none'})")

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
    def active(self) -> str | None:
        """The active adapter's name, or None for the base."""
        return self._active

    def adapters(self) -> list[str]:
        """Names of the attached adapters, in the order they were added."""
        return list(self._infos)

    def prepare(self, template: ChatFormat, notice: Notice | None = None) -> None:  # noqa: B027 - optional hook
        """Pay the start-up cost now rather than on the first message: start a server with `template`, compile a
        decode step. `notice` is told, in one line, what is being waited for. Idempotent; nothing by default."""

    @property
    def preferred_batch_size(self) -> int | None:
        """How many conversations one `generate` call should get for the best throughput (None: no preference)."""
        return None

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
    ) -> ReplyStream:
        """The answer to one conversation, piece by piece as it is generated (generation runs in a worker thread
        or on a server). Setting `cancel` stops it within one token step. After the iteration ends, the stream's
        `reply` is the full `Reply`."""

    def count_tokens(self, text: str) -> int | None:
        """How many tokens `text` is to this model (no special tokens), or None when the backend cannot tell
        (a server): the chat's context line then estimates. Call it from the thread that generates."""
        return None

    def close(self) -> None:  # noqa: B027 - most backends have nothing to release beyond the model
        """Release the model (and any server process)."""

    def describe(self) -> dict:
        """A small dict for display: backend, base, active adapter, adapters."""
        return {"backend": self.name, "active": self.active, "adapters": self.adapters()}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def settings_options(backend: str, settings: Settings | None) -> dict:
    """The options of backend `backend` that the user's settings decide (the lmdeploy backend's Python, from
    ``lmdeploy_python``). Cores that hold the front end's `Settings` merge them under their explicit options."""
    if backend == "lmdeploy" and settings is not None and settings.lmdeploy_python:
        return {"python": settings.lmdeploy_python}
    return {}


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
