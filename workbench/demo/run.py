"""`workbench demo`: real XTuner LoRA runs that fine-tune a model into an identity, then the sweep that says which
checkpoint to ship before general knowledge breaks.

Two worlds. The real one is SmolLM2-135M-Instruct (`workbench.demo.real`): two runs of the same schedule, one on
identity-only data (it learns the identity and loses what it knew: no checkpoint is safe, and the verdict names the
remedy) and one with the base's own replies mixed in (replay: a checkpoint keeps both, and the verdict names it).
The tiny one (`workbench.demo.world`, a model made on the spot) is the fallback without PyPI, and the suite's fast
fixture: one identity-only run long enough to overfit.

Everything goes through the cores, as a user's own runs would: started detached by the runs core (`start_run`),
followed with its `follow_run`, and swept by the eval core (`sweep_report`). Headless, progress goes to stderr and
the verdicts with their curve tables to stdout; otherwise `workbench demo` opens the TUI on the runs, which carries
on by itself (`workbench.tui.demo`: Eval when the last run ends, then Chat with base / good / overfit).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import BadInput, OperationFailed
from workbench.paths import configs_dir, data_dir
from workbench.progress import Bar

if TYPE_CHECKING:
    from workbench.demo.world import World

EVALSETS = ("identity", "general")


@dataclass(frozen=True)
class DemoRunSpec:
    label: str  # what the run shows: "identity-only", "mixed"
    config: str  # a shipped config (file name under workbench/configs/)


@dataclass
class DemoWorld:
    """The world the demo runs on: its model, its runs, and what the sweep scores."""

    kind: str  # "real" | "tiny"
    model: World
    runs: tuple[DemoRunSpec, ...]
    evalsets: tuple[str, ...]  # {name}/{org} of the identity answers come from the recipe beside each run's data


REAL_RUNS = (DemoRunSpec("identity-only", "smollm2_cpu_identity.py"), DemoRunSpec("mixed", "smollm2_cpu_mixed.py"))
TINY_RUNS = (DemoRunSpec("identity-only", "tiny_cpu_overfit.py"),)


def pick_world(choice: str = "auto", log=lambda msg: None) -> DemoWorld:
    """The demo's world: "real" (SmolLM2, fetched once), "tiny" (made on the spot), or "auto" (real when it can be
    had, else tiny, saying why)."""
    if choice in ("auto", "real"):
        from workbench.demo.real import MODEL_NAME, ensure_real_world

        try:
            model = ensure_real_world(log=log)
        except (BadInput, OperationFailed) as exc:
            if choice == "real":
                raise
            log(f"the real world cannot be had here ({exc}); the demo uses the tiny world instead")
        else:
            how = "reused" if model.reused else f"fetched and converted in {model.build_seconds:.0f} s"
            log(f"real world ({MODEL_NAME}) {how}: {model.path}")
            return DemoWorld("real", model, REAL_RUNS, ("identity", "general_en"))
    from workbench.demo.world import ensure_world

    model = ensure_world()
    how = "reused" if model.reused else f"built in {model.build_seconds:.0f} s, {model.steps} steps"
    log(f"tiny world {how}: fact accuracy {model.accuracy:.2f}, {model.path}")
    return DemoWorld("tiny", model, TINY_RUNS, EVALSETS)


def start_demo_run(world: DemoWorld, spec: DemoRunSpec, *, stamp: str | None = None, threads: int | None = None):
    """Start one of the demo's training runs (detached) under ``data_dir()/demo`` and return its `Run`."""
    from workbench.runs.launch import start_run

    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    work_dir = data_dir() / "demo" / f"{stamp}-{spec.label}"
    env = {"WORKBENCH_MODEL": str(world.model.path)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return start_run(configs_dir() / spec.config, work_dir=work_dir, name=f"demo-{spec.label}", env=env,
                     cwd=data_dir())


def follow_to_end(run, out=sys.stderr):
    """Follow `run` until its process is gone, with a progress bar on `out`; return the ended `Run`."""
    from workbench.runs import registry
    from workbench.runs.follow import follow_run

    bar = Bar("training", total=run.max_iters or 0, stream=out)

    def show(events, _follower) -> None:
        for ev in events:
            if ev.kind == "metrics" and ev.mode == "train":
                loss = f" loss {ev.loss:.3f}" if ev.loss is not None else ""
                bar.update(ev.iter, ev.max_iters or bar.total, f"training{loss}")
            elif ev.kind == "error":
                out.write(f"\nerror ({ev.error}): {ev.message}\n")

    try:
        follow_run(run, show)
    finally:
        bar.close()
    return registry.get(run.id)


def sweep(run, evalsets=EVALSETS, out=sys.stderr):
    """Score the base and every checkpoint of `run` (the eval core's sweep; {name}/{org} from the recipe beside the
    run's data, as for any run); returns the `EvalReport`."""
    from workbench.evals.evaluate import Request, sweep_report

    with Bar("sweep", stream=out) as bar:
        return sweep_report(Request(run=run.id, evalsets=tuple(evalsets)), progress=bar,
                            log=lambda msg: out.write(msg + "\n"))


def _threads_each(world: DemoWorld) -> int | None:
    """Runs started together on a CPU-only machine share its cores instead of fighting over them."""
    from workbench.cpushare import cpu_count

    if len(world.runs) < 2 or _has_cuda():
        return None
    return max(1, cpu_count() // len(world.runs))


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def start_demo_runs(world: DemoWorld) -> list:
    """Start every run of the demo at once (detached, sharing the CPU's cores), the way the TUI shows them;
    returns their `Run`s, the one to follow last (the mixed one on the real world: the one with a checkpoint
    to ship)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    threads = _threads_each(world)
    return [start_demo_run(world, spec, stamp=stamp, threads=threads) for spec in world.runs]


def run_demo(world: DemoWorld) -> list:
    """The demo without a terminal UI: each run in turn is trained and swept, and its verdict and curve table
    printed; returns the `EvalReport`s. (With a terminal, `workbench demo` starts the runs with `start_demo_runs`
    and opens the TUI on them.)"""
    from workbench.evals.report import to_table
    from workbench.runs.model import RunStatus

    stamp = time.strftime("%Y%m%d-%H%M%S")
    reports = []
    for spec in world.runs:
        run = start_demo_run(world, spec, stamp=stamp)
        sys.stderr.write(f"demo run {run.id} ({spec.label} data): {Path(run.config_path).name} in {run.work_dir}\n")
        try:
            ended = follow_to_end(run)
        except KeyboardInterrupt:
            from workbench.runs.control import stop_run

            sys.stderr.write(f"\ninterrupted: stopping demo run {run.id}\n")
            stop_run(run.id)
            raise
        if ended.status is not RunStatus.FINISHED:
            raise OperationFailed(f"demo run {run.id} {ended.status}" + (f": {ended.reason}" if ended.reason else "")
                                  + f" (log: {ended.stdout_path})")
        report = sweep(ended, world.evalsets)
        sys.stdout.write(f"== {spec.label} data: {spec.config} (run {run.id}) ==\n")
        sys.stdout.write(to_table(report))
        sys.stdout.write("\n")
        sys.stdout.flush()
        reports.append(report)
    return reports
