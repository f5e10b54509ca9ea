"""CPU numerics that come out the same on every x86-64 machine (CPU threads that share it: workbench/cpushare.py).

Why: the tiny world and the demo's LoRA runs are trained on the spot. With torch's defaults the kernels are
picked by what the CPU offers (AVX-512 here, AVX2 there) and MKL blocks its sums by ISA and thread count, so
the same seed gave weights that differed in their last bits from one CPU to the next; over a few hundred
training steps that moved the forgetting curve by a checkpoint or two and flipped the demo's verdict
(issue 15). Pinning the kernels to AVX2 (every x86-64 CPU of the last decade has it) and MKL to its
conditional-numerical-reproducibility mode with STRICT (results independent of the thread count) makes the
bits the same everywhere. Measured on this project's CPU: the tiny world's weights after 40 steps are
identical with 1 and 2 threads under the pin, and differ between AVX-512 and AVX2 without it
(docs/data.md, "The same figures on every machine"; tests/test_numerics.py checks the thread count).
The price is speed: AVX2 instead of AVX-512 kernels.

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
