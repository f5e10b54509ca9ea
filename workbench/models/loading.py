"""What every loader of a model folder decides before loading it: whether it ships its own code (and whether
that is trusted), and which device and dtype it runs on. No torch import until a device is picked."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.errors import BadInput


def needs_remote_code(model_path: str | Path) -> bool:
    """Whether a model folder ships its own modeling/tokenizer code (``auto_map`` in its config files)."""
    folder = Path(model_path)
    for name in ("config.json", "tokenizer_config.json"):
        try:
            if "auto_map" in json.loads((folder / name).read_text(encoding="utf-8")):
                return True
        except (OSError, ValueError):
            continue
    return False


def require_trust(model_path: str | Path, trusted: bool) -> None:
    """Refuse a folder that ships its own model code unless the user trusts it (a flag, a setting or the training
    config): never run it silently. Every loader of a base (chat backends, merge) calls this."""
    if needs_remote_code(model_path) and not trusted:
        raise BadInput(f"{model_path} ships its own model code (auto_map in its config): run it only if you trust "
                       "it, with --trust-remote-code (or trust_remote_code = true in settings.toml)")


def pick_device_dtype(device: str = "auto", dtype: str = "auto") -> tuple[str, object]:
    """`auto` device: CUDA when available, else CPU. `auto` dtype: bf16 on a GPU that has it (fp16 on
    older ones), fp32 on the CPU (CPU half precision is slow and loses accuracy on small models)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput("--device cuda: CUDA is not available on this machine")
    if dtype == "auto":
        if device.startswith("cuda"):
            return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return device, torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise BadInput(f"--dtype {dtype!r}: expected auto, float32, bfloat16 or float16")
    return device, table[dtype]


#: Rows per `generate` batch. On a GPU, HF `generate` costs about the same host time per step whatever the batch
#: (measured on the H100: ~30 ms a step), so a sweep's time is nearly proportional to its number of batches: 200
#: prompts in one batch took 2.6-4.3 s a checkpoint of a 1.8B model. 128 keeps the KV cache of a 7B model at 32 new
#: tokens well under 1 GB. On the CPU, 32 is a few MB of activations.
BATCH_SIZE_CPU, BATCH_SIZE_GPU = 32, 128


def default_batch_size(device: str) -> int:
    return BATCH_SIZE_GPU if device.startswith("cuda") else BATCH_SIZE_CPU
