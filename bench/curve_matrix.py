"""The tiny world's overfit curve over CPU threads x training seeds: does what the tests assert hold in every cell?

    python bench/curve_matrix.py [--threads 1,2] [--seeds 0,1] [--unpinned] [--json out.json]

Each cell trains workbench/configs/tiny_cpu_overfit.py with real `xtuner train` (OMP_NUM_THREADS=threads, randomness.seed=seed)
and sweeps base + every checkpoint with `workbench eval`, all under the portable CPU numerics (workbench.numerics)
unless --unpinned, then checks the shape of tests/data/curve_shape.py. It prints one line per cell (the curve, and
whether the curve is bit for bit the one of the first cell with the same seed) and exits 1 if any cell fails.
--unpinned adds a cell per seed with torch's default kernels for this CPU, to show what the pin removes.
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


def cell(world: Path, threads: int, seed: int, pinned: bool, home: Path) -> dict:
    from workbench.numerics import PORTABLE_CPU_ENV

    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_CPU_ENV}
    if pinned:
        env.update(PORTABLE_CPU_ENV)
    env.update(OMP_NUM_THREADS=str(threads), WORKBENCH_MODEL=str(world), WORKBENCH_HOME=str(home))
    work = Path(tempfile.mkdtemp(prefix=f"curve-t{threads}-s{seed}-"))
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "workbench.xtuner_compat", "train", str(ROOT / "workbench/configs/tiny_cpu_overfit.py"),
                    "--work-dir", str(work), "--cfg-options", f"randomness.seed={seed}"],
                   env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    train_s = time.monotonic() - t0
    p = subprocess.run([sys.executable, "-m", "workbench", "eval", "--checkpoints", str(work), "--format", "json", "-q",
                        "--no-cache"], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return {"threads": threads, "seed": seed, "pinned": pinned, "train_seconds": round(train_s, 1),
            "report": json.loads(p.stdout)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--unpinned", action="store_true")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    import importlib.util

    # by path: a `tests` package from site-packages can shadow the checkout's tests/ folder
    spec = importlib.util.spec_from_file_location("curve_shape", ROOT / "tests" / "data" / "curve_shape.py")
    shape = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shape)
    curve_text, overfit_curve_problems = shape.curve_text, shape.overfit_curve_problems

    home = Path(os.environ.get("WORKBENCH_HOME") or tempfile.mkdtemp(prefix="curve-home-"))
    os.environ["WORKBENCH_HOME"] = str(home)
    from workbench.demo.world import ensure_world

    world = ensure_world().path  # built under the portable numerics, whatever this process's torch does
    cells = [(t, s, True) for s in map(int, args.seeds.split(",")) for t in map(int, args.threads.split(","))]
    if args.unpinned:
        cells += [(2, s, False) for s in map(int, args.seeds.split(","))]
    results, first_curve, failed = [], {}, 0
    for threads, seed, pinned in cells:
        r = cell(world, threads, seed, pinned, home)
        curve = [(x["name"], x["identity"], x["general"], x["leak"]) for x in r["report"]["rows"]]
        same = first_curve.setdefault(seed, curve) == curve
        problems = overfit_curve_problems(r["report"])
        failed += bool(problems)
        print(f"threads {threads} seed {seed} {'pinned  ' if pinned else 'unpinned'} train {r['train_seconds']:6.1f} s  "
              f"recommended {r['report']['verdict']['recommended']}  same curve as the seed's first cell: {same}  "
              f"{'OK' if not problems else 'FAIL ' + '; '.join(problems)}\n    {curve_text(r['report'])}", flush=True)
        results.append({**{k: v for k, v in r.items() if k != "report"}, "curve": curve, "same_as_first": same,
                        "problems": problems, "verdict": r["report"]["verdict"]["explanation"]})
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
