"""`workbench demo`: the embedded default (tiny world, a real overfitting run, the sweep, the TUI)."""

from __future__ import annotations

import click

from workbench.commands._common import emit_json, info


@click.command()
@click.option("--build-only", is_flag=True, help="Build (or reuse) the tiny world, print its path and fact accuracy.")
@click.option("--headless", is_flag=True, help="Run the whole demo without the TUI and print the verdict.")
@click.option("--random-model", "random_shape", metavar="SHAPE",
              help="Instead: write a random-weight model of SHAPE (tiny, internlm2-1_8b) to --out, for speed tests.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder for --random-model.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with --build-only).")
def demo(build_only: bool, headless: bool, random_shape: str | None, out: str | None, as_json: bool) -> None:
    """The embedded demo: no GPU, no download.

    Builds a tiny chat model that knows the shipped facts, fine-tunes it with a real XTuner LoRA run on
    the CPU until it overfits into an identity, sweeps every checkpoint and shows where general
    knowledge breaks.
    """
    from workbench.demo.world import ensure_world

    if random_shape:
        from workbench.demo.random_model import make_random_model
        from workbench.errors import BadInput

        if not out:
            raise BadInput("--random-model needs --out DIR")
        path = make_random_model(random_shape, out)
        click.echo(str(path))
        return
    world = ensure_world()
    how = "reused" if world.reused else f"built in {world.build_seconds:.0f} s, {world.steps} steps"
    if build_only:
        if as_json:
            emit_json({"path": str(world.path), "accuracy": world.accuracy, "steps": world.steps,
                       "build_seconds": world.build_seconds, "reused": world.reused})
            return
        info(f"tiny world {how}")
        click.echo(f"fact accuracy: {world.accuracy:.2f}")
        click.echo(f"model: {world.path}")
        return
    info(f"tiny world {how}: fact accuracy {world.accuracy:.2f}, {world.path}")
    from workbench.demo.run import run_demo

    run_demo(world, headless=headless)
