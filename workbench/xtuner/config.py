"""XTuner training configs: load one the way `xtuner train` will (mmengine, to reject a bad one before anything
starts), the ``--cfg-options`` and ``--deepspeed`` arguments, and `TrainingConfig`, the one reader of a config's
text (a config file or the copy mmengine dumps into a work dir) that never executes it: executing would import
xtuner, the model code and the dataset code, which need not be installed where chat and eval run.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from workbench.errors import BadInput, where
from workbench.xtuner import templates
from workbench.xtuner.workdir import WorkDir

# -- loading with mmengine ----------------------------------------------------------------------------------

#: What `xtuner train` builds from a config; a file without them is not an XTuner training config.
REQUIRED_KEYS = ("model", "train_dataloader", "train_cfg", "optim_wrapper")
DEEPSPEED_PRESETS = ("deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero2_offload", "deepspeed_zero3",
                     "deepspeed_zero3_offload")


def xtuner_dir() -> Path | None:
    """Where the xtuner package is installed (its shipped configs live there), without importing it."""
    spec = importlib.util.find_spec("xtuner")
    return Path(spec.origin).parent if spec and spec.origin else None


def resolve_config(config: str | os.PathLike) -> Path:
    """A config path, the name of one of workbench's shipped configs (`tiny_cpu_lora.py`), or the name of one
    of XTuner's (as `xtuner train` accepts)."""
    path = Path(config).expanduser()
    if path.is_file():
        return path.resolve()
    from workbench.paths import shipped_config

    if shipped := shipped_config(config):  # one of workbench's own configs, by name
        return shipped
    if path.is_dir():
        raise BadInput(f"{config}: a folder, not a config file")
    name = str(config)
    if "/" not in name and not name.endswith(".py") and (root := xtuner_dir()):
        for found in (root / "configs").rglob(f"{name}.py"):
            return found
    raise BadInput(f"{config}: no such config file")


def not_a_config(path: Path, cfg) -> str | None:
    """Why a loaded file is not an XTuner training config (one line naming it), or None.

    mmengine loads any .py (an empty one is an empty config) and also JSON/YAML; XTuner's configs are Python
    files that define the model, the data loader, the loop and the optimizer.
    """
    if path.suffix != ".py":
        what = path.suffix or "a file without suffix"
        return f"{path}: not an XTuner config (a Python .py file is expected, not {what})"
    missing = [k for k in REQUIRED_KEYS if not cfg.get(k)]
    if missing:
        return f"{path}: not an XTuner config (it defines no {', '.join(missing)})"
    return None


def check_config_file(path: Path) -> None:
    """One-line `BadInput` for a path that cannot be a config before anything loads it: missing, a folder,
    not a .py file, not text."""
    if path.is_dir():
        raise BadInput(f"{path}: a folder, not a config file")
    if not path.is_file():
        raise BadInput(f"{path}: config not found")
    if path.suffix != ".py":
        raise BadInput(not_a_config(path, {}) or f"{path}: not an XTuner config")
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut_at_end = len(head) == 8192 and exc.start >= len(head) - 3  # a character split by the 8 KiB read
        if not cut_at_end:
            raise BadInput(f"{path}: not an XTuner config (a binary file, not UTF-8 text)") from None
    if b"\0" in head:
        raise BadInput(f"{path}: not an XTuner config (a binary file, not UTF-8 text)")


def load_config(path: str | os.PathLike, cfg_options: dict[str, Any] | None = None):
    """Load a config with mmengine exactly as `xtuner train` does (lazy-import mode: the imported classes stay
    unbuilt placeholders); a file that is not a config, or fails to load, is a one-line `BadInput`."""
    path = Path(path)
    check_config_file(path)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from mmengine.config import Config

    try:
        cfg = Config.fromfile(str(path.resolve()))  # absolute, so the config's own __file__ paths are too
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
    """``["a.b=1", "c=[x,y]"]`` -> ``{"a.b": 1, "c": ["x", "y"]}``, parsed as ``xtuner train --cfg-options``."""
    from mmengine.config import DictAction

    out: dict[str, Any] = {}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep or not key:
            raise BadInput(f"--cfg-options: {opt!r} is not key=value")
        out[key] = DictAction._parse_iterable(value)
    return out


def resolve_deepspeed(value: str) -> str:
    """A DeepSpeed preset name of XTuner's, or a JSON file; returned as an absolute path."""
    path = Path(value).expanduser()
    if path.is_file():
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadInput(f"--deepspeed {value}: not a JSON file ({exc})") from None
        return str(path.resolve())
    from workbench.paths import shipped_file

    if shipped := shipped_file(value, "deepspeed"):  # workbench's own (`zero2_fp32_cpu.json`)
        return resolve_deepspeed(str(shipped))
    root = xtuner_dir()
    if value in DEEPSPEED_PRESETS and root and (root / "configs" / "deepspeed" / f"{value}.json").is_file():
        return str(root / "configs" / "deepspeed" / f"{value}.json")
    raise BadInput(f"--deepspeed {value}: neither a file nor one of {', '.join(DEEPSPEED_PRESETS)}")


def deepspeed_json(value: str) -> dict:
    """The DeepSpeed JSON a ``--deepspeed`` argument names (`resolve_deepspeed`), parsed."""
    return json.loads(Path(resolve_deepspeed(value)).read_text(encoding="utf-8"))


def config_facts(cfg) -> dict[str, Any]:
    """What workbench keeps about a config (loaded, or a `TrainingConfig`'s values): length of training,
    checkpoint cadence and limit, the model, DeepSpeed in the config."""
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


# -- reading the text ---------------------------------------------------------------------------------------

_LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "bias", "target_modules", "modules_to_save", "use_rslora",
              "use_dora", "fan_in_fan_out", "init_lora_weights", "layers_to_transform", "rank_pattern",
              "alpha_pattern")
# `prompt_template = PROMPT_TEMPLATE.x` (a config), `= PROMPT_TEMPLATE["x"]`, or the dumped lazy form of a work
# dir's copy: `prompt_template = 'xtuner.utils.PROMPT_TEMPLATE.x'`.
_TEMPLATE_RE = re.compile(
    r"^prompt_template\s*=\s*['\"]?[\w.]*PROMPT_TEMPLATE\s*(?:\.\s*(\w+)|\[\s*['\"](\w+)['\"]\s*\])", re.M
)
_UNKNOWN = object()


@dataclass(frozen=True)
class TrainingConfig:
    """What chat, eval, convert and the run listings need from an XTuner config, read from its text."""

    path: Path
    #: The top-level names bound to plain literals (``dict(...)`` calls included; anything else is None).
    values: dict = field(repr=False)
    base_model: str | None
    lora: dict | None  # LoraConfig keyword arguments (None: a full fine-tune)
    trust_remote_code: bool | None  # None: the config does not say
    template: str | None  # the PROMPT_TEMPLATE entry's name
    system: str  # SYSTEM ("" when none)
    #: Why `lora` could not be read (a value that is not a literal), one line naming the file and line.
    lora_problem: str | None = None

    @property
    def facts(self) -> dict[str, Any]:
        return config_facts(self.values)

    @property
    def data_paths(self) -> list[str]:
        """The ``.json``/``.jsonl`` paths the config names (not recipes), in the order named, as written."""
        out: list[str] = []
        for s in _strings(self.values):
            if s.endswith((".json", ".jsonl")) and not s.endswith(".recipe.json") and s not in out:
                out.append(s)
        return out

    def data_files(self) -> list[Path]:
        """The `data_paths` that exist, in the order named. A relative path was relative to where training ran:
        the current folder, the config's folder and the project are tried, in that order."""
        from workbench.paths import project_root

        found: list[Path] = []
        for s in self.data_paths:
            for base in (Path.cwd(), self.path.parent, project_root()):
                data = base / s
                if data.is_file():
                    if data not in found:
                        found.append(data)
                    break
        return found

    @property
    def evaluation_inputs(self) -> list[str]:
        """The prompts EvaluateChatHook samples during training (the top-level name, else the hook's)."""
        found = self.values.get("evaluation_inputs")
        if found is None:
            hook = next((h for h in self.values.get("custom_hooks") or [] if isinstance(h, dict)
                         and "EvaluateChatHook" in str(h.get("type") or "")), None)
            found = hook.get("evaluation_inputs") if hook else None
        if isinstance(found, str):
            return [found]
        return [s for s in found or [] if isinstance(s, str)]

    def lora_settings(self) -> dict | None:
        """`lora`, or a `BadInput` when one of its values could not be read."""
        if self.lora_problem:
            raise BadInput(self.lora_problem)
        return self.lora


def read_training_config(config: str | os.PathLike) -> TrainingConfig:
    """Read an XTuner config (a file, or a work dir: its config copy), parsing each file once while unchanged.

    A missing or unreadable file, or one that is not Python, is a one-line `BadInput`."""
    path = Path(config).expanduser()
    if path.is_dir():
        found = WorkDir(path).config()
        if found is None:
            raise BadInput(f"{path}: no XTuner config (*.py) in this work dir")
        path = found
    try:
        st = path.stat()
    except OSError as exc:
        raise BadInput(f"{where(path)}: cannot read the training config ({exc.strerror})") from None
    return _read(str(path), st.st_mtime_ns, st.st_size)


def read_dumped_config(path: str | os.PathLike) -> dict[str, Any]:
    """The top-level values of a config (``<work_dir>/<name>.py``), without executing it; {} when unreadable."""
    try:
        return dict(read_training_config(path).values)
    except BadInput:
        return {}


def dumped_facts(path: str | os.PathLike) -> dict[str, Any]:
    """`config_facts` for a config copy (or any config), read as text."""
    return config_facts(read_dumped_config(path))


@lru_cache(maxsize=64)
def _read(path_str: str, _mtime_ns: int, _size: int) -> TrainingConfig:
    path = Path(path_str)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise BadInput(f"{where(path)}: cannot read the training config ({getattr(exc, 'strerror', None) or exc})"
                       ) from None
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise BadInput(f"{where(path, exc.lineno)}: not a Python config ({exc.msg})") from None
    top: dict[str, ast.AST] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            top[stmt.targets[0].id] = stmt.value
    values = {name: _plain(node) for name, node in top.items()}

    base = _literal(top.get("pretrained_model_name_or_path"))
    lora, trust, lora_problem = None, None, None
    model = top.get("model")
    if isinstance(model, ast.Call):
        llm = _kwarg(model, "llm")
        if isinstance(llm, ast.Call):
            if not isinstance(base, str):
                base = _literal(_kwarg(llm, "pretrained_model_name_or_path"))
            t = _literal(_kwarg(llm, "trust_remote_code"))
            trust = t if isinstance(t, bool) else None
        lora_node = _kwarg(model, "lora")
        if isinstance(lora_node, ast.Call):
            lora = {}
            for kw in lora_node.keywords:
                if kw.arg in _LORA_KEYS:
                    value = _literal(kw.value)
                    if value is _UNKNOWN and isinstance(kw.value, ast.Name) and kw.value.id in top:
                        value = _literal(top[kw.value.id])  # lora_r = 64 ... r=lora_r
                    if value is _UNKNOWN:
                        lora_problem = lora_problem or (f"{where(path, kw.value.lineno)}: cannot read lora "
                                                        f"{kw.arg}= (not a literal)")
                        continue
                    lora[kw.arg] = value

    name = None
    m = _TEMPLATE_RE.search(text)
    if m:
        name = m.group(1) or m.group(2)
    if name is None and "prompt_template" in top:
        value = _literal(top["prompt_template"])
        name = templates.match_entry(value) if isinstance(value, dict) else None
    system = _system_value(top["SYSTEM"]) if "SYSTEM" in top else ""
    return TrainingConfig(path=path, values=values, base_model=base if isinstance(base, str) else None, lora=lora,
                          trust_remote_code=trust, template=name, system=system, lora_problem=lora_problem)


def _literal(node: ast.AST | None) -> Any:
    """A literal's value (`ast.literal_eval`), else `_UNKNOWN`."""
    if node is None:
        return _UNKNOWN
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return _UNKNOWN


def _plain(node: ast.AST) -> Any:
    """Like `_literal`, but also reads ``dict(...)`` calls (as mmengine dumps them); what is unknown becomes None."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_plain(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_plain(k): _plain(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {kw.arg: _plain(kw.value) for kw in node.keywords if kw.arg}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _plain(node.operand)
        return -value if isinstance(value, (int, float)) else None
    return None


def _kwarg(call: ast.Call, name: str) -> ast.AST | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _system_value(node: ast.AST) -> str:
    value = _literal(node)
    if value is not _UNKNOWN:
        return value if isinstance(value, str) else ""
    # SYSTEM = SYSTEM_TEMPLATE.alpaca
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "SYSTEM_TEMPLATE":
        try:
            from xtuner.utils.templates import SYSTEM_TEMPLATE
        except Exception:
            return ""
        return str(SYSTEM_TEMPLATE.get(node.attr, ""))
    return ""


def _strings(v: Any):
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from _strings(x)
    elif isinstance(v, (list, tuple)):
        for x in v:
            yield from _strings(x)
