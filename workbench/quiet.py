"""Third-party output a user cannot act on, silenced at its source: set up before the libraries are imported.

- DeepSpeed's logger writes to stdout, which is data for workbench's commands (JSON, CSV, run ids); it is
  pointed at stderr. DeepSpeed is imported by more than training: transformers' `save_pretrained` imports it.
- DeepSpeed announces its accelerator at import: "Setting ds_accelerator to cpu (auto detect)" and, without a GPU,
  "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it." Those two
  records are dropped (nothing in them calls for action: a GPU that torch cannot see fails loudly elsewhere).
  Every other DeepSpeed record, its warnings and errors included, still reaches stderr (and a training run's
  log, where workbench turns warnings into events).
- DeepSpeed's triton autotune cache runs `df -T` on its folder (`$TRITON_CACHE_DIR`, else `~/.triton/autotune`)
  *before* creating it, so the first import on a machine printed "df: .../.triton/autotune: No such file or
  directory". The folder, which DeepSpeed creates right after, is created first, and only where DeepSpeed and
  triton are installed.

Importing this module imports nothing heavy; `quiet_libraries()` imports no third-party module either.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

#: DeepSpeed's accelerator announcements, dropped by their message's start (the source file is
#: deepspeed/accelerator/real_accelerator.py).
_DROPPED = ("Setting ds_accelerator to ", "Setting accelerator to CPU. If you have GPU")


class _DropAcceleratorNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or not record.filename.startswith("real_accelerator"):
            return True
        return not str(record.msg).startswith(_DROPPED)


def _deepspeed_logger_to_stderr(lg: logging.Logger) -> None:
    """DeepSpeed creates its logger at import with a stdout handler; the one `logging.getLogger("DeepSpeed")`
    instance is prepared here so that handler is pointed at stderr as it is added."""
    add = lg.addHandler

    def add_handler(handler: logging.Handler) -> None:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
        add(handler)

    lg.addHandler = add_handler  # type: ignore[method-assign,assignment]
    for h in lg.handlers:  # already imported: move its handler now
        if isinstance(h, logging.StreamHandler) and h.stream is sys.stdout:
            h.setStream(sys.stderr)


def _triton_autotune_dir() -> None:
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None or importlib.util.find_spec("triton") is None:
        return
    folder = Path(os.environ.get("TRITON_CACHE_DIR") or Path.home() / ".triton" / "autotune")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # DeepSpeed reports it itself when it tries


def quiet_libraries() -> None:
    """Set the above up once per process (the CLI's entry point and the training child call it first)."""
    lg = logging.getLogger("DeepSpeed")
    if getattr(lg, "_workbench_quiet", False):
        return
    _deepspeed_logger_to_stderr(lg)
    lg.addFilter(_DropAcceleratorNotes())
    lg._workbench_quiet = True  # type: ignore[attr-defined]
    _triton_autotune_dir()
