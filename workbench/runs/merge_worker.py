"""Child process of `workbench merge`: ``python -m workbench.runs.merge_worker BASE ADAPTER OUT [--dtype D]
[--device cpu|cuda|auto] [--trust-remote-code]``.

peft ``merge_and_unload`` (see `workbench.runs.convert` for why not XTuner's merge tool), saved as
safetensors into a temporary folder that is renamed to OUT when complete.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench import atomic

DONE_MARK = "@@workbench-done"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="merge_worker")
    ap.add_argument("base")
    ap.add_argument("adapter")
    ap.add_argument("out")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--trust-remote-code", action="store_true")
    args = ap.parse_args(argv)

    import peft
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.dtype != "auto":
        dtype = getattr(torch, args.dtype)
    elif device == "cpu":
        dtype = torch.float32  # CPU matmuls in fp16/bf16 are slow, and the merge must not round
    else:
        dtype = "auto"  # the base's own dtype (bf16 for most chat models)
    remote = args.trust_remote_code
    model = AutoModelForCausalLM.from_pretrained(args.base, torch_dtype=dtype, low_cpu_mem_usage=True,
                                                 trust_remote_code=remote).to(device)
    model = peft.PeftModel.from_pretrained(model, args.adapter, is_trainable=False)
    merged = model.merge_and_unload()
    tok_src = args.adapter if (Path(args.adapter) / "tokenizer_config.json").is_file() else args.base
    tokenizer = AutoTokenizer.from_pretrained(tok_src, trust_remote_code=remote)
    with atomic.folder(args.out, replace=True) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "workbench_merge.json").write_text(json.dumps({
            "base": args.base, "adapter": args.adapter, "dtype": str(merged.dtype), "device": device,
            "method": "peft merge_and_unload", "peft": peft.__version__,
        }, indent=2) + "\n", encoding="utf-8")
    print(f"{DONE_MARK} {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
