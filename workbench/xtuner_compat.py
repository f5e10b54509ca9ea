"""Run XTuner 0.2.0's tools with the fixes they need, and return their real exit code.

Usage (what workbench's launcher runs as the training child):
    python -m workbench.xtuner_compat train CONFIG [xtuner train args...]
    python -m workbench.xtuner_compat pth_to_hf CONFIG PTH OUT [args...]
    python -m workbench.xtuner_compat merge BASE ADAPTER OUT [args...]

The fixes, each for a real bug seen with xtuner 0.2.0:
1. The `xtuner` console command exits 0 even when the tool failed (it runs the tool in a subprocess and
   drops its status). We run the tool module in-process with runpy and exit with its own status.
2. On a machine without CUDA, `xtuner train` and `convert pth_to_hf` crash in `xtuner/model/sft.py`
   calling `torch.cpu.is_bf16_supported()`, which torch's CPU namespace does not have
   (`xtuner.utils.device.get_torch_device()` returns `torch.cpu` there). We add it, returning False.
3. With torch >= 2.6, `--resume` fails because `torch.load` defaults to weights_only=True and mmengine's
   checkpoints hold more than tensors. We set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for the child. These
   are checkpoints the user's own run wrote; workbench never resumes from a file it did not create.
4. XTuner's `encode_fn` prepends `tokenizer.bos_token_id` to every example and crashes (`+= None`) when the
   tokenizer has none: a GPT-2-style BPE such as SmolLM2's, whose chat format starts with `<|im_start|>` and
   no BOS. We make a missing bos mean "no bos" (as XTuner already does for Qwen's tokenizers), so training,
   chat and eval feed the model the same ids (tests/test_real_world.py compares them).

And one addition that is not a fix: on a machine without CUDA, `train` gives way to chat and eval that run beside
it, dropping to the cores they leave before each iteration (workbench/cpushare.py).
"""

from __future__ import annotations

import os
import runpy
import sys

TOOLS = {
    "train": "xtuner.tools.train",
    "pth_to_hf": "xtuner.tools.model_converters.pth_to_hf",
    "merge": "xtuner.tools.model_converters.merge",
    "chat": "xtuner.tools.chat",
}


def apply() -> None:
    """Apply fixes 2 and 3 to this process (idempotent)."""
    import torch

    if not hasattr(torch.cpu, "is_bf16_supported"):
        torch.cpu.is_bf16_supported = lambda: False  # type: ignore[attr-defined]
    major_minor = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    if major_minor >= (2, 6):
        os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    allow_no_bos()


def allow_no_bos() -> None:
    """Fix 4: a tokenizer without a bos token gets none prepended, instead of a crash (idempotent)."""
    try:
        from xtuner.dataset import utils
    except ImportError:  # xtuner not installed (chat-only installs): nothing to fix
        return
    original = utils.get_bos_eos_token_ids
    if getattr(original, "workbench_fix", False):
        return

    def get_bos_eos_token_ids(tokenizer):
        bos, eos = original(tokenizer)
        return ([] if bos is None else bos), eos

    get_bos_eos_token_ids.workbench_fix = True  # type: ignore[attr-defined]
    utils.get_bos_eos_token_ids = get_bos_eos_token_ids


def run_tool(tool: str, args: list[str]) -> int:
    """Run one XTuner tool module as `__main__` with `args`; return its exit status."""
    if tool not in TOOLS:
        print(f"workbench.xtuner_compat: unknown tool {tool!r} (one of {', '.join(TOOLS)})", file=sys.stderr)
        return 2
    from workbench.quiet import quiet_libraries

    quiet_libraries()  # DeepSpeed's accelerator notes would be warnings in the run's log (workbench/quiet.py)
    apply()
    if tool == "train":
        from workbench.cpushare import install_trainer_share

        install_trainer_share()
    sys.argv = [TOOLS[tool], *args]
    try:
        runpy.run_module(TOOLS[tool], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def main() -> None:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    status = run_tool(sys.argv[1], sys.argv[2:])
    sys.stdout.flush()
    sys.stderr.flush()
    raise SystemExit(status)


if __name__ == "__main__":
    main()
