"""Read XTuner LoRA checkpoints (``iter_N.pth``) directly, without `xtuner convert pth_to_hf`.

A LoRA run's ``iter_N.pth`` is an mmengine checkpoint whose ``state_dict`` holds only the LoRA weights, named
through XTuner's `SupervisedFinetune` wrapper (``llm.base_model.model.<module>.lora_A.default.weight``). With
DeepSpeed it is a folder (``mp_rank_00_model_states.pt`` with the weights under ``module``). We map the names
to peft's saved form (``base_model.model.<module>.lora_A.weight``) and build the `LoraConfig` from the run's
config, which we read as text: executing it would import xtuner and the dataset code.
"""

from __future__ import annotations

import ast
import pickle
import re
import types
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import BadInput, where

_LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "bias", "target_modules", "modules_to_save", "use_rslora",
              "use_dora", "fan_in_fan_out", "init_lora_weights", "layers_to_transform", "rank_pattern",
              "alpha_pattern")
_ADAPTER_SEGMENT = re.compile(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)\.[^.]+")
_CKPT_NAME = re.compile(r"^iter_(\d+)\.pth$")


@dataclass
class TrainingConfig:
    """What chat needs from an XTuner config: the base model, the LoRA settings and trust_remote_code."""

    path: Path
    base_model: str | None
    lora: dict | None  # LoraConfig keyword arguments (None: a full fine-tune)
    trust_remote_code: bool | None  # None: the config does not say
    extra: dict = field(default_factory=dict)


def is_checkpoint(path: str | Path) -> bool:
    """Whether `path` looks like an XTuner checkpoint (``*.pth`` file or DeepSpeed folder)."""
    p = Path(path)
    return p.suffix == ".pth" and (p.is_file() or (p.is_dir() and any(p.glob("*model_states.pt"))))


def checkpoint_iter(path: str | Path) -> int | None:
    m = _CKPT_NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(work_dir: str | Path) -> list[Path]:
    """The ``iter_N.pth`` checkpoints of a work dir, by iteration."""
    found = [p for p in Path(work_dir).glob("iter_*.pth") if checkpoint_iter(p) is not None]
    return sorted(found, key=lambda p: checkpoint_iter(p) or 0)


def work_dir_config(work_dir: str | Path) -> Path | None:
    """The config copy mmengine writes into a work dir (the newest ``*.py`` there)."""
    cands = [p for p in Path(work_dir).glob("*.py") if p.is_file()]
    return max(cands, key=lambda p: p.stat().st_mtime) if cands else None


def find_config(checkpoint: str | Path) -> Path | None:
    """The config copy XTuner writes into the work dir beside its checkpoints."""
    return work_dir_config(Path(checkpoint).parent)


def read_config(config: str | Path) -> TrainingConfig:
    """Parse an XTuner config (source or a work dir's dumped copy) for the model, LoRA and trust_remote_code."""
    path = Path(config)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"{where(path)}: cannot read the training config ({exc.strerror})") from None
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise BadInput(f"{where(path, exc.lineno)}: not a Python config ({exc.msg})") from None
    top = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            top[node.targets[0].id] = node.value
    base = _literal(top.get("pretrained_model_name_or_path"))
    lora = None
    trust = None
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
                    if value is _UNKNOWN:
                        value = _name_value(kw.value, top)
                    if value is _UNKNOWN:
                        raise BadInput(f"{where(path, kw.value.lineno)}: cannot read lora {kw.arg}= (not a literal)")
                    lora[kw.arg] = value
    return TrainingConfig(path=path, base_model=base if isinstance(base, str) else None, lora=lora,
                          trust_remote_code=trust)


_UNKNOWN = object()


def _literal(node):
    if node is None:
        return _UNKNOWN
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return _UNKNOWN


def _name_value(node, top):
    if isinstance(node, ast.Name) and node.id in top:  # lora_r = 64 ... r=lora_r
        return _literal(top[node.id])
    return _UNKNOWN


def _kwarg(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


class _TolerantUnpickler(pickle.Unpickler):
    """Unpickles an mmengine checkpoint where mmengine (or xtuner) is not installed (an eval or lmdeploy-only
    box): the message hub, config and log objects beside the weights become inert stand-ins; tensors and plain
    containers are untouched."""

    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return _standin(module, name)


class _StandinMeta(type):
    def __getattr__(cls, attr):  # `getattr(HistoryBuffer, "min")` pickled by reference: another stand-in
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _standin(cls.__module__, f"{cls.__name__}.{attr}")


def _standin(module: str, name: str) -> type:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    return _StandinMeta(name, (), {"__module__": module, "__init__": __init__, "__setstate__": __setstate__})


_TOLERANT_PICKLE = types.SimpleNamespace(Unpickler=_TolerantUnpickler, load=pickle.load, loads=pickle.loads,
                                         __name__="workbench.tolerant_pickle")


def _torch_load(path: Path):
    import torch

    # mmengine checkpoints hold message hubs and configs as well as tensors: weights_only cannot read them.
    # These are the user's own training outputs, the same files `xtuner convert` would load.
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TOLERANT_PICKLE)


def load_state_dict(checkpoint: str | Path) -> dict:
    """The model weights of an XTuner checkpoint: a ``.pth`` file, or a DeepSpeed checkpoint folder."""
    p = Path(checkpoint)
    if p.is_file():
        data = _torch_load(p)
        return data.get("state_dict", data) if isinstance(data, dict) else data
    if p.is_dir():
        states = sorted(p.glob("*mp_rank_00_model_states.pt")) or sorted(p.glob("*model_states.pt"))
        if not states:
            raise BadInput(f"{p}: not a DeepSpeed checkpoint folder (no *model_states.pt inside)")
        data = _torch_load(states[0])
        module = data.get("module") or {}
        if module:
            return module
        # ZeRO-3 keeps parameters partitioned in the optimizer state: let deepspeed reassemble them.
        try:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
        except ImportError:
            raise BadInput(f"{p}: a ZeRO-3 checkpoint needs deepspeed installed to be read") from None
        return get_fp32_state_dict_from_zero_checkpoint(str(p.parent), tag=p.name)
    raise BadInput(f"{p}: no such checkpoint")


def to_peft_state_dict(state_dict: dict) -> dict:
    """Rename XTuner's LoRA keys to peft's saved names (what `set_peft_model_state_dict` expects)."""
    out = {}
    for key, value in state_dict.items():
        k = key[len("llm."):] if key.startswith("llm.") else key
        if not k.startswith("base_model.model."):
            k = "base_model.model." + k
        out[_ADAPTER_SEGMENT.sub(r".\1", k)] = value
    return out


def checkpoint_meta_config(checkpoint: str | Path) -> str | None:
    """The config text mmengine stores inside a ``.pth`` (used when the work dir has no config copy)."""
    p = Path(checkpoint)
    if not p.is_file():
        return None
    data = _torch_load(p)
    cfg = (data.get("meta") or {}).get("cfg") if isinstance(data, dict) else None
    return cfg if isinstance(cfg, str) else None
