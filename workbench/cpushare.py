"""CPU threads that share a CPU-only machine between training runs and the torch work workbench does beside them.

Two torch processes that each start one OpenMP thread per core do not share the cores, they fight: each parallel
region ends in a barrier where a thread spins waiting for a sibling that the other process has descheduled.
Measured on 2 cores (bench/cpu_share.py): an XTuner LoRA step of SmolLM2 took 1.17 s alone and 37.8 s beside a
`workbench eval` that used every core. Limiting the eval to the cores training leaves free was not enough (14.0 s):
the trainer's own threads still spun at every barrier while the eval held a core.

So both sides give way:
- **Beside training** (chat, eval, replay: `TransformersBackend` on the CPU), a process takes
  ``cores // (trainers + 1)`` torch threads (`share_cpu_with_training`), and while it generates it posts a *claim*
  (`cpu_turn`): a small file on a machine-wide board naming its pid and its thread count, removed when the
  generation ends. A chat that waits for the user claims nothing.
- **Training** (`python -m workbench.xtuner_compat train` on a machine without CUDA) reads the board before each
  iteration (`TrainerShare`) and runs on the cores the claims leave, at least one, at most what it started with;
  when the claims go, it takes its threads back. Every change is one line in the run's log.

The thread count does not change the results: under the portable numerics (workbench/numerics.py) MKL's sums are
independent of it, so a run that gave way for a sweep trains the same bits as one that ran alone.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: `WORKBENCH_CPU_SHARE=0` turns sharing off on both sides (for measuring the "before").
CPU_SHARE_ENV = "WORKBENCH_CPU_SHARE"
#: Where claims are posted; machine-wide by default (the cores are), overridable for tests.
BOARD_ENV = "WORKBENCH_CPU_BOARD"
_TRAINING_MARKERS = (b"workbench.xtuner_compat\x00train", b"xtuner.tools.train", b"xtuner/tools/train.py")


def enabled() -> bool:
    return os.environ.get(CPU_SHARE_ENV, "1") != "0"


def training_processes() -> list[int]:
    """Pids of XTuner training processes on this machine (workbench's own runs and plain `xtuner train`), this one
    excluded, read from /proc; empty where there is no /proc. A trainer's own children (data workers forked with its
    command line) are not counted again."""
    found: dict[int, int] = {}  # pid -> parent pid
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read()
            # the supervisor's command line names the training command too, but it only waits for it
            if any(m in cmd for m in _TRAINING_MARKERS) and b"workbench.runs.supervise" not in cmd:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    found[int(name)] = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    me = os.getpid()
    # a trainer's children are its own data workers; anyone else's children (a test's, the demo's) are trainers
    mine = me in found
    return sorted(pid for pid, parent in found.items()
                  if pid != me and parent not in found and not (mine and parent == me))


def cpu_count() -> int:
    """The cores this process may run on (its affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def shared_threads(cores: int | None = None, trainers: int | None = None) -> int | None:
    """The torch thread count for in-process work beside `trainers` training processes on `cores` cores, or None
    when there is nothing to share with (or sharing is turned off)."""
    if not enabled():
        return None
    cores = cpu_count() if cores is None else cores
    trainers = len(training_processes()) if trainers is None else trainers
    if trainers == 0:
        return None
    return max(1, cores // (trainers + 1))


def trainer_threads(cores: int, own: int, trainers: int, claimed: int) -> int:
    """A training process's thread count: the cores the claims leave, split between the `trainers` training
    processes, at least one, at most the `own` count it started with."""
    free = cores - claimed
    return max(1, min(own, free // max(1, trainers)))


# -- the board ------------------------------------------------------------------------------------------------------
def board_dir() -> Path:
    if os.environ.get(BOARD_ENV):
        return Path(os.environ[BOARD_ENV])
    shm = Path("/dev/shm")
    root = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return root / f"workbench-cpu-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (read from /proc, like `training_processes`)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def claims(board: Path | None = None) -> dict[int, int]:
    """The live claims on the board: {pid: threads}. A claim left by a process that died is removed."""
    board = board or board_dir()
    out: dict[int, int] = {}
    try:
        entries = list(board.iterdir())
    except OSError:
        return out
    for entry in entries:
        try:
            pid = int(entry.name)
            threads = int(json.loads(entry.read_text(encoding="utf-8"))["threads"])
        except (ValueError, OSError, KeyError, TypeError):
            continue  # being written, or not ours
        if pid == os.getpid():
            continue
        if _alive(pid):
            out[pid] = threads
        else:
            entry.unlink(missing_ok=True)
    return out


_turns = 0
_turn_lock = threading.Lock()


@contextmanager
def cpu_turn(threads: int, trainers: int | None = None) -> Iterator[None]:
    """Post this process's claim of `threads` cores for the duration of the block (re-entrant; a no-op when
    sharing is off or no training runs; `trainers`: their count when the caller has just looked)."""
    global _turns
    if not enabled() or not (len(training_processes()) if trainers is None else trainers):
        yield
        return
    board = board_dir()
    path = board / str(os.getpid())
    with _turn_lock:
        _turns += 1
        if _turns == 1:
            try:
                board.mkdir(parents=True, exist_ok=True)
                tmp = board / f".{os.getpid()}.tmp"
                tmp.write_text(json.dumps({"threads": threads, "since": time.time()}), encoding="utf-8")
                os.replace(tmp, path)
            except OSError:
                pass  # a board that cannot be written: training just does not give way
    try:
        yield
    finally:
        with _turn_lock:
            _turns -= 1
            if _turns == 0:
                path.unlink(missing_ok=True)


# -- the side beside training ---------------------------------------------------------------------------------------
_own_threads: int | None = None  # the count this process had before sharing limited it


def share_cpu_with_training(trainers: int | None = None) -> str | None:
    """Limit this process's torch threads while training runs on this CPU-only machine, and give them back when
    it no longer does; return a line saying so (for the TUI and stderr) when limited, else None. Call it once torch
    is imported, for CPU work only; it is cheap enough to call before every generation (one /proc scan)."""
    global _own_threads
    import torch

    if _own_threads is None:
        _own_threads = torch.get_num_threads()
    threads = shared_threads(trainers=trainers)
    if threads is None or threads >= _own_threads:
        if torch.get_num_threads() != _own_threads:
            torch.set_num_threads(_own_threads)
        return None
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return (f"CPU: {threads} of {cpu_count()} torch threads, the rest left to the training run on this machine "
            f"({CPU_SHARE_ENV}=0 to use all)")


@contextmanager
def generating() -> Iterator[str | None]:
    """Around one generation on the CPU: share the threads (`share_cpu_with_training`) and post the claim; yields
    the share's note (None when not limited)."""
    import torch

    trainers = len(training_processes()) if enabled() else 0  # one /proc scan for both
    note = share_cpu_with_training(trainers) if enabled() else None
    with cpu_turn(torch.get_num_threads(), trainers):
        yield note


# -- the training side ----------------------------------------------------------------------------------------------
class TrainerShare:
    """Before each training iteration: the thread count the claims on the board leave this trainer."""

    def __init__(self, torch, log=None, cores: int | None = None) -> None:
        self.torch, self.log = torch, log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.cores = cores or cpu_count()
        self.own = torch.get_num_threads()
        self.current = self.own

    def adjust(self) -> int:
        found = claims()
        claimed = sum(found.values())
        trainers = len(training_processes()) + 1  # the others and this one
        wanted = self.own if not found else trainer_threads(self.cores, self.own, trainers, claimed)
        if wanted != self.current:
            self.torch.set_num_threads(wanted)
            if found:
                who = ", ".join(f"pid {p}" for p in sorted(found))
                self.log(f"workbench: training on {wanted} of {self.cores} CPU threads while chat/eval ({who}) "
                         f"runs beside it")
            else:
                self.log(f"workbench: training back on {wanted} CPU threads")
            self.current = wanted
        return wanted


def install_trainer_share() -> TrainerShare | None:
    """In a training process on a machine without CUDA: give way to the board's claims before every iteration of
    mmengine's train loops. Returns the share (None when sharing is off or CUDA is there)."""
    if not enabled():
        return None
    import torch

    if torch.cuda.is_available():
        return None
    from mmengine.runner import loops

    share = TrainerShare(torch)
    for loop in (loops.IterBasedTrainLoop, loops.EpochBasedTrainLoop):
        original = loop.run_iter
        if getattr(original, "workbench_share", False):
            continue

        def run_iter(self, *args, _original=original, **kwargs):
            share.adjust()
            return _original(self, *args, **kwargs)

        run_iter.workbench_share = True  # type: ignore[attr-defined]
        loop.run_iter = run_iter  # type: ignore[method-assign]
    return share
