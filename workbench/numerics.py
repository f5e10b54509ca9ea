"""CPU numerics that come out the same on every x86-64 machine, and CPU threads that share the machine.

Why: the tiny world and the demo's LoRA runs are trained on the spot. With torch's defaults the kernels are
picked by what the CPU offers (AVX-512 here, AVX2 there) and MKL blocks its sums by ISA and thread count, so
the same seed gave weights that differed in their last bits from one CPU to the next; over a few hundred
training steps that moved the forgetting curve by a checkpoint or two and flipped the demo's verdict
(issue 15). Pinning the kernels to AVX2 (every x86-64 CPU of the last decade has it) and MKL to its
conditional-numerical-reproducibility mode with STRICT (results independent of the thread count) makes the
bits the same everywhere. Measured on this project's CPU: the tiny world's weights after 40 steps are
identical with 1 and 2 threads under the pin, and differ between AVX-512 and AVX2 without it
(bench/numerics_matrix.py). The price is speed: AVX2 instead of AVX-512 kernels.

The variables must be in the environment before torch runs its first kernel, so they are set for child
processes (training runs, the tiny world's build) and, by the demo and the test suite, at process start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

#: The environment that makes torch's CPU arithmetic the same on every x86-64 machine with AVX2.
PORTABLE_CPU_ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorised kernels (softmax, norms, reductions)
    "MKL_CBWR": "AVX2,STRICT",  # MKL's GEMMs: one code path, and sums that do not depend on the thread count
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN primitives, where torch uses them
}

#: The label of those numerics, part of the tiny world's recipe (a world built under other numerics is another world).
PORTABLE_CPU_LABEL = "avx2-mkl-cbwr-strict"


def portable_env() -> dict[str, str]:
    """`PORTABLE_CPU_ENV`, for a child process's environment."""
    return dict(PORTABLE_CPU_ENV)


def is_portable(env: Mapping[str, str] | None = None) -> bool:
    """Whether `env` (default: this process's) asks for the portable numerics."""
    env = os.environ if env is None else env
    return all(env.get(k) == v for k, v in PORTABLE_CPU_ENV.items())


def use_portable_numerics() -> bool:
    """Ask for the portable numerics in this process and its children.

    Returns True when this process's own arithmetic follows (torch had not been imported yet, or the
    environment already asked for it when the process started); False when torch was already loaded, in
    which case only child processes follow.
    """
    already = is_portable()
    os.environ.update(PORTABLE_CPU_ENV)
    return already or "torch" not in sys.modules


def process_is_portable() -> bool:
    """Whether this process's torch arithmetic follows the portable numerics (the environment asked for them
    and torch, if loaded, reports the AVX2 kernels)."""
    if not is_portable():
        return False
    torch = sys.modules.get("torch")
    if torch is None:
        return True
    try:
        return torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT")
    except Exception:  # an old torch without the query: trust the environment
        return True


# -- CPU threads that share the machine ---------------------------------------------------------------------------
# Two torch processes that each start one OpenMP thread per core on a CPU-only machine do not share it, they fight:
# each parallel region ends in a barrier where a thread spins waiting for a sibling that the other process has
# descheduled. Measured on 2 cores: an XTuner LoRA step of SmolLM2 took 25-35 s beside a chat or sweep instead of
# 1.1 s (bench/cpu_share.py). So torch work that workbench runs in its own process (chat, eval, replay) takes only
# the cores that training runs leave free.

#: `WORKBENCH_CPU_SHARE=0` turns the limit off (for measuring the "before").
CPU_SHARE_ENV = "WORKBENCH_CPU_SHARE"
_TRAINING_MARKERS = (b"workbench.xtuner_compat\x00train", b"xtuner.tools.train", b"xtuner/tools/train.py")


def training_processes() -> list[int]:
    """Pids of XTuner training processes on this machine (workbench's own runs and plain `xtuner train`), read from
    /proc; empty where there is no /proc."""
    pids = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    me = os.getpid()
    for name in entries:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        # the supervisor's command line names the training command too, but it only waits for it
        if any(m in cmd for m in _TRAINING_MARKERS) and b"workbench.runs.supervise" not in cmd:
            pids.append(int(name))
    return pids


def cpu_count() -> int:
    """The cores this process may run on (its affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def shared_threads(cores: int | None = None, trainers: int | None = None) -> int | None:
    """The torch thread count for in-process work beside `trainers` training processes on `cores` cores, or None
    when there is nothing to share with (or the limit is turned off)."""
    if os.environ.get(CPU_SHARE_ENV, "1") == "0":
        return None
    cores = cpu_count() if cores is None else cores
    trainers = len(training_processes()) if trainers is None else trainers
    if trainers == 0:
        return None
    return max(1, cores // (trainers + 1))


def share_cpu_with_training() -> str | None:
    """Limit this process's torch threads when training runs on this CPU-only machine; return a line saying so (for
    the TUI and stderr), or None when nothing was limited. Call it once torch is imported, for CPU work only."""
    threads = shared_threads()
    if threads is None:
        return None
    import torch

    cores = cpu_count()
    if torch.get_num_threads() <= threads:
        return None
    torch.set_num_threads(threads)
    return (f"CPU: {threads} of {cores} torch threads, the rest left to the training run on this machine "
            f"({CPU_SHARE_ENV}=0 to use all)")
