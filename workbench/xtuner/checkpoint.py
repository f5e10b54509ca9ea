"""Read XTuner LoRA checkpoints (``iter_N.pth``) directly, without `xtuner convert pth_to_hf`.

A LoRA run's ``iter_N.pth`` is an mmengine checkpoint whose ``state_dict`` holds only the LoRA weights, named
through XTuner's `SupervisedFinetune` wrapper (``llm.base_model.model.<module>.lora_A.default.weight``). With
DeepSpeed it is a folder (``mp_rank_00_model_states.pt`` with the weights under ``module``). We map the names
to peft's saved form (``base_model.model.<module>.lora_A.weight``); the `LoraConfig` comes from the run's
training config (`workbench.xtuner.config.TrainingConfig.lora`).
"""

from __future__ import annotations

import pickle
import re
import types
from pathlib import Path

from workbench.errors import BadInput
from workbench.xtuner.workdir import model_states

_ADAPTER_SEGMENT = re.compile(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)\.[^.]+")


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
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TOLERANT_PICKLE)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInput(f"{path}: not a checkpoint torch can read ({first})") from None


def load_state_dict(checkpoint: str | Path) -> dict:
    """The model weights of an XTuner checkpoint: a ``.pth`` file, or a DeepSpeed checkpoint folder."""
    p = Path(checkpoint)
    if p.is_file():
        data = _torch_load(p)
        return data.get("state_dict", data) if isinstance(data, dict) else data
    if p.is_dir():
        states = model_states(p)
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
        folder, tag = (p.parent, p.name) if states[0].parent == p else (p, states[0].parent.name)
        return get_fp32_state_dict_from_zero_checkpoint(str(folder), tag=tag)
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
