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
    """The source checkout (where `evalsets/` and `configs/` live)."""
    return Path(__file__).resolve().parent.parent


def evalsets_dir() -> Path:
    """The shipped eval sets (`identity.jsonl`, `general.jsonl`)."""
    return project_root() / "evalsets"


def configs_dir() -> Path:
    """The shipped XTuner config templates."""
    return project_root() / "configs"
