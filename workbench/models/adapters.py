"""Adapter sources and whether they fit the loaded base, before anything is attached.

Two sources: a PEFT adapter folder (``adapter_config.json`` + weights), and an XTuner checkpoint
(``iter_N.pth``) read with the LoRA settings of its training config. Both become a peft `LoraConfig` plus
a state dict in peft's saved naming, and are checked against the base's module shapes first: peft would
otherwise fail deep inside with "Target modules … not found" or a size mismatch that names neither side.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import BadInput
from workbench.models.base import AdapterInfo
from workbench.xtuner.checkpoint import load_state_dict, to_peft_state_dict
from workbench.xtuner.config import read_training_config
from workbench.xtuner.workdir import WorkDir, checkpoint_iter, is_checkpoint

_MODULE_KEY = re.compile(r"^base_model\.model\.(.+)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)\.weight$")


@dataclass
class AdapterSource:
    """An adapter read from disk, ready to attach: its LoraConfig, weights and description."""

    config: Any  # peft.LoraConfig (peft is imported only when an adapter is read)
    state_dict: dict
    info: AdapterInfo


def read_adapter(name: str, source: str | Path, config: str | Path | None = None) -> AdapterSource:
    """Read a PEFT adapter folder or an XTuner ``.pth`` checkpoint (file or DeepSpeed folder)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise BadInput(f"adapter {name!r}: {path}: no such file or folder")
    if is_checkpoint(path):
        return _read_pth(name, path, config)
    if path.is_dir() and (path / "adapter_config.json").is_file():
        return _read_peft(name, path)
    raise BadInput(
        f"adapter {name!r}: {path} is neither a PEFT adapter folder (adapter_config.json) nor an XTuner "
        "checkpoint (iter_N.pth)"
    )


def _read_peft(name: str, path: Path) -> AdapterSource:
    from peft import LoraConfig, PeftConfig
    from peft.utils import load_peft_weights

    try:
        cfg = PeftConfig.from_pretrained(str(path))
    except Exception as exc:  # a malformed adapter_config.json: say which file
        raise BadInput(f"adapter {name!r}: {path / 'adapter_config.json'}: cannot read ({exc})") from None
    if not isinstance(cfg, LoraConfig):
        raise BadInput(f"adapter {name!r}: {path} is a {cfg.peft_type} adapter; only LoRA adapters are supported")
    state = load_peft_weights(str(path), device="cpu")
    info = AdapterInfo(
        name=name, source=str(path), kind="peft", r=cfg.r, alpha=cfg.lora_alpha,
        target_modules=tuple(sorted(cfg.target_modules or ())) if not isinstance(cfg.target_modules, str)
        else (cfg.target_modules,),
        base_model=cfg.base_model_name_or_path,
    )
    return AdapterSource(cfg, state, info)


def _read_pth(name: str, path: Path, config: str | Path | None) -> AdapterSource:
    from peft import LoraConfig

    cfg_path = Path(config) if config else WorkDir(path.parent).config()
    if cfg_path is None:
        raise BadInput(
            f"adapter {name!r}: {path}: no training config beside the checkpoint; pass its config "
            "(--adapter NAME=PTH --config CONFIG, or config= in code)"
        )
    tc = read_training_config(cfg_path)
    if tc.lora_settings() is None:
        raise BadInput(f"adapter {name!r}: {cfg_path} trains the full model (no lora=): convert and load it "
                       "as a merged model instead")
    kwargs = dict(tc.lora or {})  # not None: lora_settings() found it
    kwargs.setdefault("task_type", "CAUSAL_LM")
    kwargs["inference_mode"] = True
    kwargs["lora_dropout"] = 0.0  # inference: dropout is off anyway; avoids building dropout layers
    lcfg = LoraConfig(**kwargs)
    lcfg.base_model_name_or_path = tc.base_model
    state = to_peft_state_dict(load_state_dict(path))
    if not any(_MODULE_KEY.match(k) for k in state):
        raise BadInput(f"adapter {name!r}: {path} holds no LoRA weights (was it a full fine-tune?)")
    info = AdapterInfo(
        name=name, source=str(path), kind="xtuner-pth", r=lcfg.r, alpha=lcfg.lora_alpha,
        target_modules=tuple(sorted(lcfg.target_modules or ())) if not isinstance(lcfg.target_modules, str)
        else (lcfg.target_modules,),
        base_model=tc.base_model, config=str(cfg_path),
        extra={"iter": checkpoint_iter(path), "trust_remote_code": tc.trust_remote_code},
    )
    return AdapterSource(lcfg, state, info)


def linear_names(model) -> list[str]:
    """Short names of the base's linear layers, except the output head (what XTuner targets when a
    config leaves ``target_modules`` empty)."""
    import torch.nn as nn

    names = {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    return sorted(names - {"lm_head", "output_layer", "output"})


def module_shapes(model) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of every linear and embedding layer of the plain base model."""
    import torch.nn as nn

    shapes = {}
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            shapes[n] = (m.in_features, m.out_features)
        elif isinstance(m, nn.Embedding):
            shapes[n] = (m.num_embeddings, m.embedding_dim)
        elif hasattr(m, "in_features") and hasattr(m, "out_features") and not list(m.children()):
            shapes[n] = (int(m.in_features), int(m.out_features))  # bitsandbytes Linear4bit
    return shapes


def check_fit(src: AdapterSource, base_label: str, base_config: dict, shapes: dict[str, tuple[int, int]]) -> None:
    """Refuse an adapter that does not fit the base: another architecture, target modules the base lacks,
    or weights of other shapes. The message names the adapter and the base."""
    info = src.info
    who = f"adapter {info.name!r} ({info.source}) does not fit base {base_label}"
    arch = _adapter_base_arch(info.base_model)
    mine = base_config.get("model_type")
    if arch and mine and arch != mine:
        raise BadInput(f"{who}: it was trained on a {arch!r} model ({info.base_model}), the base is {mine!r}")
    targets = src.config.target_modules
    short = {n.split(".")[-1] for n in shapes}
    if isinstance(targets, (list, set, tuple)) and targets:
        missing = sorted(t for t in targets if t not in short and not any(n.endswith(t) for n in shapes))
        if len(missing) == len(set(targets)):
            raise BadInput(f"{who}: none of its target modules {sorted(targets)} exist in the base "
                           f"(the base has {', '.join(sorted(short)[:12])})")
        if missing:
            raise BadInput(f"{who}: target modules {missing} do not exist in the base")
    for key, tensor in src.state_dict.items():
        m = _MODULE_KEY.match(key)
        if not m:
            continue
        module, part = m.group(1), m.group(2)
        if module not in shapes:
            raise BadInput(f"{who}: it has weights for {module}, which the base does not have")
        fin, fout = shapes[module]
        shape = tuple(tensor.shape)
        if part == "lora_A" and (len(shape) != 2 or shape[1] != fin):
            raise BadInput(f"{who}: {module}.lora_A is {shape}, the base layer takes {fin} inputs")
        if part == "lora_B" and (len(shape) != 2 or shape[0] != fout):
            raise BadInput(f"{who}: {module}.lora_B is {shape}, the base layer has {fout} outputs")


def _adapter_base_arch(base_model: str | None) -> str | None:
    """The model_type of the model an adapter names as its base, when that folder is here to read."""
    if not base_model:
        return None
    cfg = Path(base_model).expanduser() / "config.json"
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None


def export_peft(src: AdapterSource, out: str | Path) -> Path:
    """Write an adapter read from an XTuner checkpoint as a PEFT folder (for servers that load folders).

    fp32 safetensors, written through a temporary folder and renamed into place."""
    from safetensors.torch import save_file

    from workbench import atomic

    out = Path(out)
    if (out / "adapter_config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.folder(out) as tmp:
        src.config.save_pretrained(str(tmp))
        tensors = {k: v.detach().float().contiguous() for k, v in src.state_dict.items()}
        save_file(tensors, str(Path(tmp) / "adapter_model.safetensors"))
    return out
