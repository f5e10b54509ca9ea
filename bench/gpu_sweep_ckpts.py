"""An XTuner-style QLoRA work dir of random LoRA checkpoints, for the eval sweep figure without training first.

    python bench/gpu_sweep_ckpts.py --work-dir /tmp/wd/fake --model /tmp/m18 \
        --make-model internlm2-1_8b --tokenizer .whl/train/tokenizer --checkpoints 8 --every 25 --json OUT/ckpts.json

What a real `xtuner train` of workbench/configs/internlm2_chat_1_8b_qlora_self_cognition.py leaves in its work dir, as far as
`workbench eval --checkpoints DIR` (and `--run`, `workbench runs convert`, the chat backends) read it:

- ``iter_N.pth`` for N = every, 2 x every, ... : mmengine's checkpoint layout (``meta`` with the config text,
  ``state_dict``, ``message_hub``, ``optimizer``, ``param_schedulers``), the ``state_dict`` holding only the LoRA
  weights under XTuner's names (``llm.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight``),
  fp32, r=64 and alpha 16 (read from the config copy) on every linear layer of the Llama (q k v o gate up down:
  what XTuner targets when the config names no target_modules), and AdamW's state (exp_avg, exp_avg_sq) beside
  them, so a file is as large as a trained one and reading it costs what it really costs (--no-optimizer-state:
  the weights only). Plain containers stand where mmengine pickles its own classes (the message hub's buffers):
  what workbench's tolerant reader makes of them anyway.
- ``<config>.py``: the config copy, the QLoRA config with its values resolved (the model path, the data path, the
  dtype, max_iters and save_steps as literals), as workbench reads a dumped copy.
- ``last_checkpoint``: the path of the last ``iter_N.pth``.

The LoRA weights are random (A ~ N(0, 1/in), B ~ N(0, 0.01^2): small deltas, like a trained adapter, not noise), drawn
on the GPU when there is one. --make-model SHAPE first writes the random base itself
(`workbench.demo.random_model.make_random_model`, initialised on the same device) with the tokenizer files of
--tokenizer (the tiny world's, carried to the device).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "workbench" / "configs" / "internlm2_chat_1_8b_qlora_self_cognition.py"
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def module_dims(cfg: dict) -> dict[str, tuple[int, int]]:
    """(in, out) of each linear layer of one decoder layer of a Llama config."""
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    hd = cfg.get("head_dim") or h // heads
    return {"q_proj": (h, heads * hd), "k_proj": (h, kv * hd), "v_proj": (h, kv * hd), "o_proj": (heads * hd, h),
            "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}


def config_copy(model: str, max_iters: int, save_steps: int) -> str:
    """The QLoRA config with the values a dumped copy holds as literals (no environment lookups left)."""
    text = CONFIG.read_text(encoding="utf-8")
    subs = [
        (r"^pretrained_model_name_or_path = .*$", f"pretrained_model_name_or_path = {model!r}  # workbench:model"),
        (r"^data_path = .*$", f"data_path = {str(ROOT / 'workbench' / 'configs' / 'data' / 'tiny_identity_only.json')!r}"
                              "  # workbench:data"),
        (r"^dtype = .*$", "dtype = 'bfloat16'"),
        (r"^max_iters = \d+", f"max_iters = {max_iters}"),
        (r"^save_steps = \d+", f"save_steps = {save_steps}"),
        (r"^_os = .*\n", ""), (r"^_torch = .*\n", ""), (r"^_bf16 = .*\n", ""), (r"^del _os.*\n", ""),
    ]
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl, text, count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"{CONFIG}: no line matches {pattern!r} (the config changed: update this script)")
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True, help="the base model folder (made first with --make-model)")
    ap.add_argument("--make-model", metavar="SHAPE", help="write a random model of this shape to --model first "
                                                          "(internlm2-1_8b, tiny; kept when --model has one)")
    ap.add_argument("--tokenizer", type=Path, default=ROOT / ".whl" / "train" / "tokenizer",
                    help="tokenizer files for --make-model (default .whl/train/tokenizer)")
    ap.add_argument("--checkpoints", type=int, default=8)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--no-optimizer-state", action="store_true", help="LoRA weights only (smaller, faster files)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    t_start = time.perf_counter()
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    result: dict = {"device": device, "work_dir": str(args.work_dir), "model": str(args.model)}

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    if args.make_model and not (args.model / "config.json").is_file():
        from workbench.demo.random_model import make_random_model

        t = time.perf_counter()
        made_on = device
        try:
            make_random_model(args.make_model, args.model, device=device, tokenizer=args.tokenizer, seed=args.seed)
        except Exception as exc:  # noqa: BLE001 - the sweep still needs a model: the slow way, said so
            if device == "cpu":
                raise
            made_on = "cpu"
            result["make_model_error"] = f"on {device}: {type(exc).__name__}: {exc}"
            print(f"model: could not initialise on {device} ({result['make_model_error']}); on the CPU instead",
                  flush=True)
            make_random_model(args.make_model, args.model, device="cpu", tokenizer=args.tokenizer, seed=args.seed)
        result["make_model_s"] = round(time.perf_counter() - t, 2)
        result["made_on"] = made_on
        print(f"model: random {args.make_model} initialised on {made_on}, written to {args.model} in "
              f"{result['make_model_s']} s", flush=True)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    cfg = json.loads((args.model / "config.json").read_text(encoding="utf-8"))
    dims = module_dims(cfg)
    layers = cfg["num_hidden_layers"]

    wd = args.work_dir
    wd.mkdir(parents=True, exist_ok=True)
    for old in wd.glob("iter_*.pth"):
        old.unlink()
    iters = [args.every * (i + 1) for i in range(args.checkpoints)]
    cfg_text = config_copy(str(args.model.resolve()), iters[-1], args.every)
    cfg_path = wd / CONFIG.name
    cfg_path.write_text(cfg_text, encoding="utf-8")
    from workbench.xtuner.config import read_training_config

    lora = read_training_config(cfg_path).lora  # r and alpha as workbench reads them from the copy (r=64, alpha 16)
    r, alpha = lora["r"], lora["lora_alpha"]
    stamp = time.strftime("%Y%m%d_%H%M%S")
    gen = torch.Generator(device=device).manual_seed(args.seed)
    t = time.perf_counter()
    nbytes = 0
    for n in iters:
        sd: OrderedDict = OrderedDict()
        for layer in range(layers):
            for part, names in (("self_attn", ATTN), ("mlp", MLP)):
                for name in names:
                    fan_in, fan_out = dims[name]
                    key = f"llm.base_model.model.model.layers.{layer}.{part}.{name}"
                    a = torch.randn(r, fan_in, generator=gen, device=device).mul_(fan_in ** -0.5)
                    b = torch.randn(fan_out, r, generator=gen, device=device).mul_(0.01)
                    sd[f"{key}.lora_A.default.weight"] = a.cpu()
                    sd[f"{key}.lora_B.default.weight"] = b.cpu()
        optimizer = {"state": {}, "param_groups": [{
            "lr": 2e-4, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0, "amsgrad": False, "foreach": None,
            "maximize": False, "capturable": False, "differentiable": False, "fused": None, "initial_lr": 2e-4,
            "params": list(range(len(sd)))}]}
        if not args.no_optimizer_state:
            for i, w in enumerate(sd.values()):
                optimizer["state"][i] = {"step": torch.tensor(float(n)), "exp_avg": torch.zeros_like(w),
                                         "exp_avg_sq": torch.zeros_like(w)}
        path = wd / f"iter_{n}.pth"
        runtime = OrderedDict(cfg=cfg_text, seed=args.seed, experiment_name=f"{CONFIG.stem}_{stamp}",
                              mmengine_version="0.10.6", loop_stage="train", epoch=0, iter=n, max_epochs=1,
                              max_iters=iters[-1], last_ckpt=str(path))
        ckpt = {
            "meta": {"epoch": 0, "iter": n, "cfg": cfg_text, "seed": args.seed,
                     "experiment_name": f"{CONFIG.stem}_{stamp}", "time": stamp, "mmengine_version": "0.10.6"},
            "state_dict": sd,
            "message_hub": {"log_scalars": OrderedDict(), "runtime_info": runtime,
                            "resumed_keys": OrderedDict((k, True) for k in runtime)},
            "optimizer": optimizer,
            "param_schedulers": [{"start_factor": 1e-05, "end_factor": 1.0, "total_iters": 14, "param_name": "lr",
                                  "begin": 0, "end": 15, "by_epoch": False, "base_values": [2e-4],
                                  "last_step": n, "_global_step": n, "verbose": False}],
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(ckpt, tmp)
        tmp.rename(path)
        nbytes += path.stat().st_size
    sync()
    (wd / "last_checkpoint").write_text(str((wd / f"iter_{iters[-1]}.pth").resolve()), encoding="utf-8")
    lora_params = sum(v.numel() for v in sd.values())
    result.update(checkpoints=iters, r=r, alpha=alpha, lora_params=lora_params,
                  optimizer_state=not args.no_optimizer_state, config=str(cfg_path),
                  checkpoint_mb=round(nbytes / len(iters) / 2**20, 1), write_s=round(time.perf_counter() - t, 2),
                  total_s=round(time.perf_counter() - t_start, 2))
    print(f"work dir {wd}: {len(iters)} checkpoints iter_{iters[0]}..iter_{iters[-1]}, LoRA r={r} "
          f"alpha={alpha} on {len(dims)} linear layers x {layers} layers ({lora_params / 1e6:.1f}M params, "
          f"{result['checkpoint_mb']} MB a file{' with AdamW state' if result['optimizer_state'] else ''}), "
          f"written in {result['write_s']} s; config copy {cfg_path.name}", flush=True)
    if args.json:
        from workbench import atomic

        atomic.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
