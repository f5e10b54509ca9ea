"""`workbench demo`: a real overfitting LoRA run on the tiny world, then the sweep that finds the checkpoint
to ship before general knowledge breaks.

Everything goes through the cores, as a user's own run would: the run is started detached by the runs
core (`start_run`), followed with its `RunFollower`, and swept by the eval core (`sweep_report`).
Headless, progress goes to stderr and the verdict with the curve table to stdout; otherwise the TUI
opens on the run and carries on by itself (Eval when the run ends, then Chat with base / good / overfit).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from workbench.errors import OperationFailed
from workbench.paths import configs_dir, data_dir
from workbench.progress import Bar

#: The identity the demo data teaches (the answers' {name} and {org}), used when the data has no recipe.
DEMO_VARS = {"name": "Tutu", "org": "Workbench Lab"}
EVALSETS = ("identity", "general")


def demo_config() -> Path:
    """The overfitting config when it ships, else the tiny LoRA config."""
    overfit = configs_dir() / "tiny_cpu_overfit.py"
    return overfit if overfit.is_file() else configs_dir() / "tiny_cpu_lora.py"


def start_demo_run(world):
    """Start the demo's training run (detached) under ``data_dir()/demo`` and return its `Run`."""
    from workbench.runs.launch import start_run

    work_dir = data_dir() / "demo" / time.strftime("%Y%m%d-%H%M%S")
    return start_run(demo_config(), work_dir=work_dir, name="demo", env={"WORKBENCH_MODEL": str(world.path)},
                     cwd=configs_dir().parent)


def demo_variables(run) -> dict[str, str]:
    """{name}, {org} of the run's data recipe, else `DEMO_VARS`."""
    from workbench.evals.evaluate import vars_from_config

    found, _ = vars_from_config(str(run.config_copy) if Path(run.config_copy).is_file() else run.config_path)
    return found or dict(DEMO_VARS)


def follow_to_end(run, out=sys.stderr):
    """Follow `run` until its process is gone, with a progress bar on `out`; return the ended `Run`."""
    from workbench.runs import registry
    from workbench.runs.follow import RunFollower

    follower = RunFollower(run)
    bar = Bar("training", total=run.max_iters or 0, stream=out)
    try:
        while not follower.done:
            events = follower.poll()
            for ev in events:
                if ev.kind == "metrics" and ev.mode == "train":
                    loss = f" loss {ev.loss:.3f}" if ev.loss is not None else ""
                    bar.update(ev.iter, ev.max_iters or bar.total, f"training{loss}")
                elif ev.kind == "error":
                    out.write(f"\nerror ({ev.error}): {ev.message}\n")
            if not events:
                time.sleep(0.5)
    finally:
        bar.close()
        follower.close()
    return registry.get(run.id)


def sweep(run, variables: dict[str, str], out=sys.stderr):
    """Score the base and every checkpoint of `run` (the eval core's sweep); returns the `EvalReport`."""
    from workbench.evals.evaluate import Request, sweep_report

    with Bar("sweep", stream=out) as bar:
        return sweep_report(Request(run=run.id, evalsets=EVALSETS, variables=variables), progress=bar,
                            log=lambda msg: out.write(msg + "\n"))


def run_demo(world, headless: bool) -> object | None:
    """The demo. Headless: train, sweep, print the verdict and curve table; returns the `EvalReport`.
    With a terminal: start the run and open the TUI on it (returns None when the user quits)."""
    if not headless and not (sys.stdin.isatty() and sys.stdout.isatty()):
        sys.stderr.write("workbench demo: no terminal, running headless (--headless)\n")
        headless = True
    run = start_demo_run(world)
    sys.stderr.write(f"demo run {run.id}: {Path(run.config_path).name} in {run.work_dir}\n")
    if not headless:
        from workbench import settings
        from workbench.tui.app import run_app

        run_app(settings.load(), select_run=run.id, demo={"run": run.id, "variables": demo_variables(run)})
        return None
    try:
        ended = follow_to_end(run)
    except KeyboardInterrupt:
        from workbench.runs.control import stop_run

        sys.stderr.write(f"\ninterrupted: stopping demo run {run.id}\n")
        stop_run(run.id)
        raise
    if str(ended.status) != "finished":
        raise OperationFailed(f"demo run {run.id} {ended.status}" + (f": {ended.reason}" if ended.reason else "")
                              + f" (log: {ended.stdout_path})")
    from workbench.evals.report import to_table

    report = sweep(ended, demo_variables(ended))
    sys.stdout.write(to_table(report))
    sys.stdout.flush()
    return report
