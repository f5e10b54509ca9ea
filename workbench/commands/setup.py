"""`workbench setup lmdeploy`: make the lmdeploy backend's own environment, check it, record it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click


@click.group()
def setup() -> None:
    """Set up what workbench drives but cannot install into its own environment."""


@setup.command("lmdeploy")
@click.option("--env", "env_dir", type=click.Path(path_type=Path), default=None,
              help="Where to make the venv (default: workbench's data dir, lmdeploy-env).")
@click.option("--python", "python", default=None, metavar="PYTHON",
              help="The Python 3.10-3.12 to make it from (default: the newest of those on PATH).")
@click.option("--wheels", type=click.Path(path_type=Path), default=None,
              help="Install from this folder of wheels only (an offline GPU box), not from the index.")
@click.option("--use", "use", default=None, metavar="PYTHON",
              help="Adopt an existing Python that has lmdeploy (its docker image, a conda env): no venv is made and "
                   "nothing installed; the server check and the record as usual.")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="The model the server check starts on (default: the demo's tiny world).")
@click.option("--no-server-check", is_flag=True,
              help="Install and record without starting the server (a machine without a GPU, to copy from).")
@click.option("--dry-run", is_flag=True, help="Print the plan (every command) and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: the plan as JSON.")
def lmdeploy(env_dir: Path | None, python: str | None, wheels: Path | None, use: str | None, model: Path | None,
             no_server_check: bool, dry_run: bool, as_json: bool) -> None:
    """Make lmdeploy's separate environment (a venv with lmdeploy and its own torch), check that
    `lmdeploy serve api_server` starts and answers on this GPU, and record the interpreter as the
    lmdeploy_python setting, so `--backend lmdeploy` and the Chat screen use it.

    lmdeploy cannot live in workbench's environment: it needs a newer transformers than xtuner pins.
    """
    from workbench import settings as settings_mod
    from workbench.errors import BadInput
    from workbench.models import lmdeploy_env as le

    if use is not None:
        clash = [flag for flag, given in (("--env", env_dir), ("--python", python), ("--wheels", wheels)) if given]
        if clash:
            raise BadInput(f"--use adopts an existing interpreter: {', '.join(clash)} would make a new one")
        plan = le.adopt_plan(use)
    else:
        plan = le.make_plan(env_dir, python, wheels)
    if dry_run:
        if as_json:
            click.echo(json.dumps(plan.as_dict(), indent=2))
            return
        for n, step in enumerate(plan.steps, 1):
            click.echo(f"{n}. {step.what}{f' ({step.skip}: skipped)' if step.skip else ''}")
            click.echo(f"   {shlex.join(step.argv)}")
        check = "skipped (--no-server-check)" if no_server_check else f"on {model or 'the tiny world'}"
        click.echo(f"{len(plan.steps) + 1}. check that lmdeploy serve api_server starts and answers: {check}")
        click.echo(f"{len(plan.steps) + 2}. record lmdeploy_python = {plan.env_python} in "
                   f"{settings_mod.settings_path()}")
        return
    if as_json:
        raise BadInput("--json goes with --dry-run (the setup itself reports on stderr)")
    if not no_server_check and not le.has_gpu():
        raise BadInput("lmdeploy serves on an NVIDIA GPU and none was found (nvidia-smi): nothing was installed; "
                       "--no-server-check makes the environment anyway (to use it on a GPU machine)")
    if plan.use is not None:
        have = le.check_adopted_version(plan)
        le.say_stderr(f"[1/1] check the import: lmdeploy {have}"
                      + (f" (workbench is measured against {le.LMDEPLOY_VERSION})" if have != le.LMDEPLOY_VERSION
                         else ""))
    else:
        le.run_plan(plan, plan.env / "setup.log", le.say_stderr)
    if not no_server_check:
        if model is None:
            from workbench.demo.world import ensure_world

            model = ensure_world().path
        reply = le.check_server(plan.env_python, Path(model), le.say_stderr)
        le.say_stderr(f"the server answered in {reply.tokens} tokens ({reply.stop_reason}): {reply.text.strip()[:80]!r}")
    path = settings_mod.set_value("lmdeploy_python", str(plan.env_python))
    le.say_stderr(f"recorded lmdeploy_python = {plan.env_python} in {path}")
    click.echo(str(plan.env_python))
