"""Training beside chat or eval on a CPU-only machine: the training iteration time alone; beside an eval sweep that
takes every core (before); beside one limited to the cores training leaves while the trainer keeps all of its threads
(the eval side alone); and with both giving way (after: the eval claims its cores while it generates and the trainer
drops to the rest, workbench/cpushare.py).

    python bench/cpu_share.py [--iters 12] [--model DIR]

The training is a real XTuner LoRA run of workbench/configs/smollm2_cpu_identity.py on the real world (SmolLM2-135M,
`workbench demo --build-only --world real`); the neighbour is `workbench eval` on the same base answering the English
general set over and over, in its own process, as the TUI's sweep or chat would be. Prints the mean seconds per
iteration (iterations 3..N, mmengine's own `time`) of each scenario and the ratios against "alone".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def neighbour(model: str, share: bool, home: Path) -> subprocess.Popen:
    env = dict(os.environ, WORKBENCH_HOME=str(home), WORKBENCH_CPU_SHARE="1" if share else "0")
    loop = (f"while true; do {sys.executable} -m workbench eval --base {model} --evalset general_en --template qwen_chat "
            "--no-cache -q --format json > /dev/null 2>&1; done")
    return subprocess.Popen(["bash", "-c", loop], env=env, cwd=ROOT, start_new_session=True)


def train(model: str, iters: int, home: Path, share: bool) -> list[float]:
    work = Path(tempfile.mkdtemp(prefix="cpu-share-"))
    env = dict(os.environ, WORKBENCH_HOME=str(home), WORKBENCH_MODEL=model, WORKBENCH_CPU_SHARE="1" if share else "0")
    subprocess.run([sys.executable, "-m", "workbench.xtuner_compat", "train", str(ROOT / "workbench/configs/smollm2_cpu_identity.py"),
                    "--work-dir", str(work), "--cfg-options", f"train_cfg.max_iters={iters}",
                    f"default_hooks.checkpoint.interval={iters * 10}", f"custom_hooks.1.every_n_iters={iters * 10}"],
                   env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    scalars = next(work.glob("*/vis_data/scalars.json"))
    rows = [json.loads(line) for line in scalars.read_text().splitlines() if line.strip()]
    return [r["time"] for r in rows if "time" in r and r.get("iter", r.get("step", 0)) >= 3]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cpu-share-home-"))
    model = args.model
    if model is None:
        from workbench.demo.real import ensure_real_world

        model = str(ensure_real_world().path)
    from workbench.cpushare import cpu_count, shared_threads

    print(f"{cpu_count()} cores; a neighbour beside one training run gets {shared_threads(trainers=1)} torch thread(s)")
    results = {}
    scenarios = (("alone", None, True), ("beside eval, before (all cores)", False, False),
                 ("beside eval, eval side only", True, False), ("beside eval, after (both give way)", True, True))
    for name, share, trainer_shares in scenarios:
        proc = neighbour(model, share, home) if share is not None else None
        try:
            if proc is not None:
                time.sleep(15)  # the neighbour has loaded its model and is generating (a bench, not a test)
            times = train(model, args.iters, home, trainer_shares)
        finally:
            if proc is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        results[name] = sum(times) / len(times)
        print(f"{name:34s} {results[name]:7.2f} s/iter  ({results[name] / results['alone']:.1f}x alone)", flush=True)
    before, after = results["beside eval, before (all cores)"], results["beside eval, after (both give way)"]
    print(f"after vs before: {before / after:.1f}x faster training beside the eval")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
