"""`workbench setup lmdeploy`: the lmdeploy backend's own Python environment, made, checked and recorded.

lmdeploy cannot share workbench's environment (lmdeploy 0.18 needs transformers >= 4.56, xtuner 0.2.0 pins 4.48), so
the backend starts `lmdeploy serve api_server` from a second interpreter (docs/models.md, "lmdeploy environment").
This module makes that environment: a venv beside workbench's own state (``data_dir()/lmdeploy-env``), lmdeploy at
the version pinned here with its own torch, a check that the server starts and answers on this machine's GPU, and
the interpreter recorded as the ``lmdeploy_python`` setting. Every step is a plain command, shown by ``--dry-run``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import BadInput, OperationFailed

if TYPE_CHECKING:
    from workbench.models.base import Reply

#: The lmdeploy release the backend is written and measured against (docs/benchmarks.md).
LMDEPLOY_VERSION = "0.18.0"
#: What goes into the environment besides lmdeploy (peft: lmdeploy's PyTorch engine loads LoRA adapters with it).
EXTRA_PACKAGES = ("peft",)
#: Pythons lmdeploy publishes wheels for, best first.
PYTHONS = ("python3.12", "python3.11", "python3.10")


@dataclass
class Step:
    what: str
    argv: list[str]
    skip: str = ""  # why it is not needed (already done), or ""


@dataclass
class Plan:
    env: Path
    python: str  # the interpreter the venv is made from (or, with `use`, the one adopted)
    wheels: Path | None
    steps: list[Step] = field(default_factory=list)
    use: Path | None = None  # an existing lmdeploy interpreter adopted as it is: no venv made, nothing installed

    @property
    def env_python(self) -> Path:
        return self.use if self.use is not None else self.env / "bin" / "python"

    def as_dict(self) -> dict:
        return {"env": None if self.use else str(self.env), "python": self.python, "lmdeploy": LMDEPLOY_VERSION,
                "wheels": str(self.wheels) if self.wheels else None, "interpreter": str(self.env_python),
                "adopted": self.use is not None,
                "steps": [{"what": s.what, "argv": s.argv, "skip": s.skip or None} for s in self.steps]}


def default_env() -> Path:
    from workbench.paths import data_dir

    return data_dir() / "lmdeploy-env"


def pick_python(wanted: str | None = None) -> str:
    """The interpreter to make the venv from: `wanted`, else the first of `PYTHONS` on PATH."""
    if wanted:
        found = shutil.which(wanted) or (wanted if Path(wanted).is_file() else None)
        if not found:
            raise BadInput(f"--python {wanted}: no such interpreter")
        return found
    for name in PYTHONS:
        found = shutil.which(name)
        if found:
            return found
    raise BadInput(f"lmdeploy {LMDEPLOY_VERSION} has wheels for Python 3.10-3.12 and none is on PATH: "
                   "install one, or pass --python PATH")


def installed_version(env_python: Path) -> str | None:
    """lmdeploy's version in the environment of `env_python`, or None (no such interpreter, or no lmdeploy)."""
    if not env_python.is_file():
        return None
    p = subprocess.run([str(env_python), "-c", "import lmdeploy; print(lmdeploy.__version__)"],
                       capture_output=True, text=True, timeout=120)
    return p.stdout.strip() if p.returncode == 0 else None


def adopt_plan(use: str) -> Plan:
    """The plan for an lmdeploy interpreter that exists already (lmdeploy's docker image, a conda env, a site
    laid out by hand): check that it imports lmdeploy, then (in the command) the server check and the record."""
    path = Path(use).expanduser()
    found = shutil.which(use) if not path.is_file() else str(path.absolute())
    if not found or not os.access(found, os.X_OK):
        raise BadInput(f"--use {use}: not an executable Python interpreter")
    plan = Plan(Path(found).parent, found, None, use=Path(found))
    plan.steps.append(Step("check the import", [found, "-c", "import lmdeploy; print(lmdeploy.__version__)"]))
    return plan


def check_adopted_version(plan: Plan) -> str:
    """The adopted interpreter's lmdeploy version; raises when it has none. Another version than the pinned one is
    allowed (the caller warns): the backend drives the server's command line and OpenAI API, stable across 0.x."""
    have = installed_version(plan.env_python)
    if have is None:
        raise BadInput(f"--use {plan.env_python}: this Python cannot import lmdeploy")
    return have


def make_plan(env: Path | None = None, python: str | None = None, wheels: Path | None = None) -> Plan:
    env = (env or default_env()).expanduser().resolve()
    if wheels is not None:
        wheels = wheels.expanduser().resolve()
        if not wheels.is_dir():
            raise BadInput(f"--wheels {wheels}: no such folder")
    plan = Plan(env, pick_python(python), wheels)
    py = str(plan.env_python)
    have = installed_version(plan.env_python)
    plan.steps.append(Step("create the venv", [plan.python, "-m", "venv", str(env)],
                           skip="exists" if plan.env_python.is_file() else ""))
    source = ["--no-index", "--find-links", str(wheels)] if wheels else []
    plan.steps.append(Step(f"install lmdeploy {LMDEPLOY_VERSION} and its torch",
                           [py, "-m", "pip", "install", "--disable-pip-version-check", *source,
                            f"lmdeploy=={LMDEPLOY_VERSION}", *EXTRA_PACKAGES],
                           skip=f"lmdeploy {have} installed" if have == LMDEPLOY_VERSION else ""))
    plan.steps.append(Step("check the import", [py, "-c", "import lmdeploy; print(lmdeploy.__version__)"]))
    return plan


def has_gpu() -> bool:
    """An NVIDIA GPU is visible (what lmdeploy's engine needs); asked of nvidia-smi, no torch import."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    p = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
    return p.returncode == 0 and "GPU" in p.stdout


def run_plan(plan: Plan, log: Path, say: Callable[[str], None]) -> None:
    """Run the plan's steps, their output appended to `log`; a failed step raises with its last lines."""
    log.parent.mkdir(parents=True, exist_ok=True)
    for n, step in enumerate(plan.steps, 1):
        if step.skip:
            say(f"[{n}/{len(plan.steps)}] {step.what}: {step.skip}")
            continue
        say(f"[{n}/{len(plan.steps)}] {step.what}…")
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"$ {' '.join(step.argv)}\n")
            fh.flush()
            p = subprocess.run(step.argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-3:]
            raise OperationFailed(f"{step.what} failed (exit code {p.returncode}; full output in {log}): "
                                  + " | ".join(line.strip() for line in tail))


def check_server(env_python: Path, model: Path, say: Callable[[str], None]) -> Reply:
    """Start `lmdeploy serve api_server` from the environment on `model`, get one reply, stop it; return the reply."""
    from workbench.models.base import GenerationSettings
    from workbench.models.lmdeploy import LmdeployBackend
    from workbench.models.templates import resolve_format

    say(f"starting lmdeploy serve api_server on {model} (the first start compiles kernels: minutes)…")
    backend = LmdeployBackend(model, python=str(env_python))
    try:
        fmt = resolve_format(model_path=model).format
        reply = backend.generate([[{"role": "user", "content": "Who are you?"}]], fmt,
                                 GenerationSettings(max_new_tokens=16))[0]
    finally:
        backend.close()
    return reply


def say_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
