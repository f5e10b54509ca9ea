"""Read XTuner configs: load one the way `xtuner train` will (to reject a bad one before anything starts),
and read the plain config copy mmengine dumps into a work dir without importing anything.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
from typing import Any

from workbench.errors import BadInput


def xtuner_dir() -> Path | None:
    spec = importlib.util.find_spec("xtuner")
    return Path(spec.origin).parent if spec and spec.origin else None


def resolve_config(config: str | os.PathLike) -> Path:
    """A config path, or the name of one of XTuner's shipped configs (as `xtuner train` accepts)."""
    path = Path(config).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        raise BadInput(f"{config}: a folder, not a config file")
    name = str(config)
    if "/" not in name and not name.endswith(".py") and (root := xtuner_dir()):
        for found in (root / "configs").rglob(f"{name}.py"):
            return found
    raise BadInput(f"{config}: no such config file")


def load_config(path: Path, cfg_options: dict[str, Any] | None = None):
    """Load a config with mmengine exactly as `xtuner train` does; a failure is a one-line `BadInput`."""
    from mmengine.config import Config

    from workbench.data.inspect import check_config_file, not_a_config

    check_config_file(path)
    try:
        cfg = Config.fromfile(str(path))
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
    except Exception as exc:  # mmengine raises whatever the config's code raised
        first = (str(exc).strip().splitlines() or [""])[0]
        raise BadInput(f"{path}: does not load: {type(exc).__name__}: {first}") from None
    why = not_a_config(path, cfg)
    if why:
        raise BadInput(why)
    return cfg


def parse_cfg_options(options: list[str]) -> dict[str, Any]:
    """``key=value`` strings -> dict, with mmengine's own value parsing (what xtuner's --cfg-options does)."""
    from mmengine.config import DictAction

    out: dict[str, Any] = {}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep or not key:
            raise BadInput(f"--cfg-options: {opt!r} is not key=value")
        out[key] = DictAction._parse_iterable(value)
    return out


def config_facts(cfg) -> dict[str, Any]:
    """What workbench keeps about a loaded config: length of training, checkpoint cadence and limit."""
    def get(obj, *keys, default=None):
        for key in keys:
            if obj is None or not hasattr(obj, "get"):
                return default
            obj = obj.get(key)
        return default if obj is None else obj

    facts = {
        "max_iters": get(cfg, "train_cfg", "max_iters"),
        "max_epochs": get(cfg, "train_cfg", "max_epochs"),
        "save_interval": get(cfg, "default_hooks", "checkpoint", "interval"),
        "max_keep_ckpts": get(cfg, "default_hooks", "checkpoint", "max_keep_ckpts", default=-1),
        "save_total_limit": get(cfg, "save_total_limit"),
        "model": get(cfg, "pretrained_model_name_or_path"),
        # a config with DeepSpeed built in (``strategy = dict(type=DeepSpeedStrategy, ...)``, as XTuner writes it
        # for --deepspeed) needs the same single-process setup as the flag
        "deepspeed_in_config": "DeepSpeed" in str(get(cfg, "strategy", "type", default="")) or None,
    }
    return {k: v for k, v in facts.items() if isinstance(v, (int, float, str))}


# -- the dumped copy in a work dir (plain literals, no imports) ----------------------------------------
def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        return -value if isinstance(value, (int, float)) else None
    return None


def read_dumped_config(path: str | os.PathLike) -> dict[str, Any]:
    """The top-level values of a config mmengine dumped (``<work_dir>/<name>.py``), without executing it."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    out: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            out[stmt.targets[0].id] = _literal(stmt.value)
    return out


def dumped_config_path(work_dir: str | os.PathLike, config_name: str | None = None) -> Path | None:
    """The config copy mmengine wrote into a work dir (``<work_dir>/<config stem>.py``), newest first."""
    work_dir = Path(work_dir)
    if config_name:
        candidate = work_dir / f"{Path(config_name).stem}.py"
        if candidate.is_file():
            return candidate
    found = sorted(work_dir.glob("*.py"), key=lambda p: p.stat().st_mtime, reverse=True)
    return found[0] if found else None


def dumped_facts(path: str | os.PathLike) -> dict[str, Any]:
    """`config_facts` for a dumped config copy."""
    return config_facts(read_dumped_config(path))
