"""Where workbench keeps things (platformdirs locations; WORKBENCH_HOME overrides all of them).

Nothing is created at import time: callers ask for a directory and it is made then.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "workbench"


def _home() -> Path | None:
    home = os.environ.get("WORKBENCH_HOME")
    return Path(home).expanduser() if home else None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Rebuildable things: the tiny world, eval result caches. `~/.cache/workbench` on Linux."""
    home = _home()
    if home:
        return _ensure(home / "cache")
    import platformdirs

    return _ensure(Path(platformdirs.user_cache_dir(APP)))


def data_dir() -> Path:
    """Things that must survive: the runs registry, conversations. `~/.local/share/workbench` on Linux."""
    home = _home()
    if home:
        return _ensure(home / "data")
    import platformdirs

    return _ensure(Path(platformdirs.user_data_dir(APP)))


def config_dir() -> Path:
    """User settings (`settings.toml`). `~/.config/workbench` on Linux."""
    home = _home()
    if home:
        return _ensure(home / "config")
    import platformdirs

    return _ensure(Path(platformdirs.user_config_dir(APP)))


def project_root() -> Path:
    """The folder above the package: the source checkout when running from one (tests and bench use it);
    nothing the installed program reads lives there."""
    return package_dir().parent


def package_dir() -> Path:
    """The installed `workbench` package, which ships the eval sets and the configs as package data."""
    from importlib.resources import files

    return Path(str(files("workbench")))


def evalsets_dir() -> Path:
    """The shipped eval sets (`identity.jsonl`, `general.jsonl`, `general_en.jsonl`)."""
    return package_dir() / "evalsets"


def configs_dir() -> Path:
    """The shipped XTuner configs, with their data (`data/`) and DeepSpeed files (`deepspeed/`) beside them."""
    return package_dir() / "configs"


def shipped_config(value: str | os.PathLike) -> Path | None:
    """The shipped config a name stands for: `tiny_cpu_lora`, `tiny_cpu_lora.py`, or `configs/tiny_cpu_lora.py`
    (how a source checkout spelled it before the configs moved into the package). None when `value` is an
    existing file (a real path wins) or names no shipped config."""
    p = Path(value).expanduser()
    if p.exists() or p.parent.as_posix() not in (".", "configs"):
        return None
    found = configs_dir() / (p.name if p.suffix == ".py" else f"{p.name}.py")
    return found if found.is_file() else None


def shipped_file(value: str | os.PathLike, folder: str) -> Path | None:
    """A file shipped under `configs/<folder>/` (`deepspeed`, `data`) named by its file name or by its old
    checkout path (`configs/deepspeed/zero2_fp32_cpu.json`). None when `value` exists or is not one of them."""
    p = Path(value).expanduser()
    if p.exists() or p.parent.as_posix() not in (".", folder, f"configs/{folder}"):
        return None
    found = configs_dir() / folder / p.name
    return found if found.is_file() else None
