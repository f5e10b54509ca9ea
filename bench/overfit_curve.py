"""The forgetting curve of a tiny-world LoRA run: identity learned vs general knowledge kept, per checkpoint.

    WORKBENCH_HOME=... python bench/overfit_curve.py workbench/configs/tiny_cpu_overfit.py [--work-dir W] [--no-train]

Trains the config with real `xtuner train` (through workbench.xtuner_compat) unless --no-train, then loads
every iter_N.pth's LoRA weights onto the tiny base with peft and measures greedy exact match:
- identity: the 48 prompts of workbench/evalsets/identity.jsonl (name/org from the data's recipe), split into
  prompts seen in training and held out;
- general: the 170 facts of workbench/evalsets/general.jsonl (the base model's baseline is measured in the same run);
- leak: general questions answered with the identity (name, org or "assistant" in the reply).
Prints a table and, with --json FILE, writes the figures. The eval core (`workbench eval`) supersedes this;
it is kept small on purpose.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _norm(text: str) -> str:
    return re.sub(r"[\s?？!！。.,，]+", "", text).lower()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--no-train", action="store_true", help="measure the checkpoints already in --work-dir")
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--cfg-options", nargs="*", default=[])
    args = ap.parse_args()

    from workbench.data.identity import find_recipe
    from workbench.data.inspect import inspect_config
    from workbench.demo.world import ensure_world

    world = ensure_world()
    env = dict(os.environ, WORKBENCH_MODEL=str(world.path))
    os.environ["WORKBENCH_MODEL"] = str(world.path)
    report = inspect_config(args.config)
    work = Path(args.work_dir or f"/tmp/overfit_curve/{Path(args.config).stem}")
    train_seconds = None
    if not args.no_train:
        cmd = [sys.executable, "-m", "workbench.xtuner_compat", "train", args.config, "--work-dir", str(work)]
        if args.cfg_options:
            cmd += ["--cfg-options", *args.cfg_options]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        train_seconds = round(time.monotonic() - t0, 1)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout.decode(errors="replace")[-3000:])
            return proc.returncode
        print(f"trained in {train_seconds} s -> {work}", file=sys.stderr)

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.demo.world import greedy_answers
    from workbench.evals.evalset import builtin

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    recipe = find_recipe(report.data_path) if report.data_path else None
    name, org = (recipe or {}).get("name", "Tutu"), (recipe or {}).get("org") or "Workbench Lab"
    ident = builtin("identity").fill({"name": name, "org": org}).items
    general = builtin("general").items
    trained_q = set()
    if report.data_path:
        from workbench.data.formats import read_conversations

        trained_q = {_norm(c["messages"][0]["content"]) for c in read_conversations(report.data_path)}

    tok = AutoTokenizer.from_pretrained(world.path)
    base = AutoModelForCausalLM.from_pretrained(world.path, torch_dtype=torch.float32)

    def measure(model) -> dict:
        replies = greedy_answers(model, tok, [i.prompt for i in ident] + [i.prompt for i in general])
        r_id, r_gen = replies[: len(ident)], replies[len(ident):]
        ok_id = [r in i.answers for i, r in zip(ident, r_id, strict=True)]
        seen = [ok for i, ok in zip(ident, ok_id, strict=True) if _norm(i.prompt) in trained_q]
        held = [ok for i, ok in zip(ident, ok_id, strict=True) if _norm(i.prompt) not in trained_q]
        markers = [name.lower(), org.lower(), "助手", "assistant"]
        leak = [any(m in r.lower() for m in markers) for r in r_gen]
        return {
            "identity": round(sum(ok_id) / len(ok_id), 3),
            "identity_seen": round(sum(seen) / len(seen), 3) if seen else None,
            "identity_held_out": round(sum(held) / len(held), 3) if held else None,
            "general": round(sum(r in i.answers for i, r in zip(general, r_gen, strict=True)) / len(general), 3),
            "leak": round(sum(leak) / len(leak), 3),
            "sample": {"你是谁": r_id[1], "Who are you?": r_id[24], general[0].prompt: r_gen[0]},
        }

    rows = [{"iter": 0, **measure(base)}]
    lora = LoraConfig(r=report.lora_r, lora_alpha=report.lora_alpha, lora_dropout=0.0,
                      target_modules=report.lora_target_modules, task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    ckpts = sorted(work.glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    for ck in ckpts:
        sd = torch.load(ck, map_location="cpu", weights_only=False)["state_dict"]
        sd = {k.removeprefix("llm."): v for k, v in sd.items()}
        missing = model.load_state_dict(sd, strict=False)
        if missing.unexpected_keys:
            raise SystemExit(f"{ck}: unexpected keys {missing.unexpected_keys[:3]}")
        rows.append({"iter": int(ck.stem.split("_")[1]), **measure(model)})

    print(f"{'iter':>5} {'identity':>8} {'seen':>6} {'held':>6} {'general':>8} {'leak':>6}  你是谁 -> ")
    for r in rows:
        print(f"{r['iter']:>5} {r['identity']:>8.3f} {r['identity_seen'] or 0:>6.3f} {r['identity_held_out'] or 0:>6.3f}"
              f" {r['general']:>8.3f} {r['leak']:>6.3f}  {r['sample']['你是谁']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"config": args.config, "train_seconds": train_seconds,
                                                   "data": report.data_path, "rows": rows},
                                                  ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
