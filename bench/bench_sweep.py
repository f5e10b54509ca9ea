"""The checkpoint sweep against the loop users run today, on the same checkpoints and prompts.

    python bench/bench_sweep.py [--work-dir W] [--prompts N] [--checkpoints K] [--json FILE]

Naive loop (the seeds' workflow, one checkpoint at a time): `xtuner convert pth_to_hf` (through
workbench.xtuner_compat, a child process as users run it), load the base and the adapter with
transformers + peft, then generate one prompt at a time.
Sweep (`workbench eval`'s core): the base loaded once, each iter_N.pth read straight into it and
hot-swapped, prompts generated in batches; an empty cache, so every reply is really generated.

Both decode greedily with the same template, stop words and token budget; the script checks that they
give the same replies and prints the time of each and the ratio. Without --work-dir it trains
workbench/configs/tiny_cpu_lora.py on the tiny world first (about 30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def train(work: Path, model: Path) -> None:
    env = dict(os.environ, WORKBENCH_MODEL=str(model))
    cmd = [sys.executable, "-m", "workbench.xtuner_compat", "train", str(ROOT / "workbench/configs/tiny_cpu_lora.py"),
           "--work-dir", str(work)]
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def naive(base: Path, ckpts: list, config: Path, prompts: list[str], fmt, max_new: int, tmp: Path) -> dict:
    """Convert, load base + adapter, generate prompt by prompt; per checkpoint."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t = {"convert": 0.0, "load": 0.0, "generate": 0.0}
    replies: dict[str, list[str]] = {}
    for c in ckpts:
        out = tmp / f"hf_{c.iteration}"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "workbench.xtuner_compat", "pth_to_hf", str(config), str(c.path), str(out),
                        "--safe-serialization", "--fp32"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        t1 = time.perf_counter()
        tok = AutoTokenizer.from_pretrained(str(base))
        model = AutoModelForCausalLM.from_pretrained(str(base), torch_dtype=torch.float32)
        model = PeftModel.from_pretrained(model, str(out)).eval()
        t2 = time.perf_counter()
        stop = [tok.convert_tokens_to_ids(w) for w in fmt.stop_words] + [tok.eos_token_id]
        outs = []
        for p in prompts:
            ids = [tok.bos_token_id, *tok.encode(fmt.render([{"role": "user", "content": p}]), add_special_tokens=False)]
            with torch.inference_mode():
                gen = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     max_new_tokens=max_new, do_sample=False, eos_token_id=stop,
                                     pad_token_id=tok.pad_token_id)
            new = gen[0, len(ids):].tolist()
            cut = next((i for i, x in enumerate(new) if x in stop), len(new))
            outs.append(tok.decode(new[:cut], skip_special_tokens=True))
        t3 = time.perf_counter()
        replies[f"iter_{c.iteration}"] = outs
        t["convert"] += t1 - t0
        t["load"] += t2 - t1
        t["generate"] += t3 - t2
        del model
    t["total"] = sum(t.values())
    return {"seconds": t, "replies": replies}


def sweep(base: Path, ckpts: list, config: Path, items: list, fmt, max_new: int) -> dict:
    """workbench's sweep with an empty cache (every reply generated)."""
    from workbench.evals.results import CHECKPOINT, Target
    from workbench.evals.sweep import Plan, generate
    from workbench.models.base import GenerationSettings

    targets = [Target(f"iter_{c.iteration}", CHECKPOINT, str(c.path), c.iteration, str(config)) for c in ckpts]
    plan = Plan(str(base), targets, [fmt], items, GenerationSettings(max_new_tokens=max_new), "transformers",
                {"device": "cpu", "dtype": "float32", "batch_size": 32}, 32, use_cache=True)
    t0 = time.perf_counter()
    gen = generate(plan)
    total = time.perf_counter() - t0
    assert all(g.cached == 0 for g in gen), "the sweep's cache was not empty"
    return {"seconds": {"total": total, "generate": sum(g.seconds for g in gen),
                        "switch": sum(g.switch_seconds for g in gen)},
            "replies": {g.target.name: [g.replies[i.id].text for i in items] for g in gen}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", help="an XTuner work dir with iter_N.pth (default: train the tiny LoRA config)")
    ap.add_argument("--prompts", type=int, default=40, help="prompts per checkpoint (half identity, half general)")
    ap.add_argument("--checkpoints", type=int, default=0, help="use only the last K checkpoints (0 = all)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_sweep."))
    os.environ["WORKBENCH_HOME"] = str(tmp / "home")  # an empty eval cache: the sweep generates everything
    from workbench.demo.world import ensure_world
    from workbench.evals.evalset import builtin, combine
    from workbench.models.templates import get_format
    from workbench.runs.checkpoints import list_checkpoints
    from workbench.xtuner.workdir import WorkDir

    os.environ["WORKBENCH_HOME"] = os.environ.get("BENCH_WORLD_HOME", str(Path.home() / ".cache/workbench-tests"))
    base = ensure_world().path
    os.environ["WORKBENCH_HOME"] = str(tmp / "home")
    work = Path(args.work_dir) if args.work_dir else tmp / "work"
    if not args.work_dir:
        print("training workbench/configs/tiny_cpu_lora.py on the tiny world ...", file=sys.stderr)
        train(work, base)
    ckpts = list_checkpoints(work)[-args.checkpoints:] if args.checkpoints else list_checkpoints(work)
    config = WorkDir(work).config()
    es = combine([builtin("identity"), builtin("general")]).fill({"name": "Tutu", "org": "Workbench Lab"})
    half = args.prompts // 2
    items = es.by_kind("identity")[:half] + es.by_kind("general")[: args.prompts - half]
    fmt = get_format("internlm2_chat")
    prompts = [i.prompt for i in items]
    print(f"{len(ckpts)} checkpoints x {len(prompts)} prompts, greedy, {args.max_new_tokens} new tokens",
          file=sys.stderr)

    s = sweep(base, ckpts, config, items, fmt, args.max_new_tokens)
    n = naive(base, ckpts, config, prompts, fmt, args.max_new_tokens, tmp)
    same = sum(a == b for k in s["replies"] for a, b in zip(s["replies"][k], n["replies"][k], strict=True))
    total = len(ckpts) * len(prompts)
    ratio = n["seconds"]["total"] / s["seconds"]["total"]
    result = {"checkpoints": len(ckpts), "prompts": len(prompts), "naive": n["seconds"], "sweep": s["seconds"],
              "speedup": round(ratio, 2), "same_replies": same, "replies": total}
    print(f"naive loop: {n['seconds']['total']:7.1f} s  (convert {n['seconds']['convert']:.1f}, "
          f"load {n['seconds']['load']:.1f}, generate {n['seconds']['generate']:.1f})")
    print(f"sweep:      {s['seconds']['total']:7.1f} s  (generate {s['seconds']['generate']:.1f}, "
          f"adapter switches {s['seconds']['switch']:.2f})")
    print(f"speedup: {ratio:.1f}x   identical replies: {same}/{total}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
