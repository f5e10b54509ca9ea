"""The `workbench` command.

Fast start matters (people type `workbench --help` over SSH): this module imports only click. Each
subcommand lives in `workbench.commands.<group>` and is imported when it is invoked; heavy modules
(torch, transformers, textual) are imported inside the commands that need them.
"""

from __future__ import annotations

import importlib
import sys

import click

from workbench import __version__
from workbench.errors import ExitCode, WorkbenchError

# name -> ("module:attribute", one-line help shown by `workbench --help` without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("workbench.commands.demo:demo", "The embedded demo: tiny model, a real overfitting run, the sweep."),
    "train": ("workbench.commands.runs:train", "Start an XTuner training run, detached from this terminal."),
    "runs": ("workbench.commands.runs:runs", "List training runs and their status."),
    "import": ("workbench.commands.runs:import_run", "Register a work dir made by plain `xtuner train`."),
    "logs": ("workbench.commands.runs:logs", "Show or follow a run's parsed log."),
    "checkpoints": ("workbench.commands.runs:checkpoints", "List a run's checkpoints."),
    "stop": ("workbench.commands.runs:stop", "Stop a running run (SIGINT, then SIGTERM, then SIGKILL)."),
    "resume": ("workbench.commands.runs:resume", "Resume a run from its last checkpoint."),
    "convert": ("workbench.commands.runs:convert", "Convert checkpoints to PEFT adapter folders."),
    "merge": ("workbench.commands.runs:merge", "Merge an adapter into its base model."),
    "inspect": ("workbench.commands.data:inspect_config", "Read an XTuner config and warn about known traps."),
    "data": ("workbench.commands.data:data", "Build training data (identity datasets with dilution)."),
    "init": ("workbench.commands.data:init", "Scaffold a fine-tuning project folder."),
    "chat": ("workbench.commands.chat:chat", "Chat in the terminal with a base model, adapters and checkpoints."),
    "conversations": ("workbench.commands.chat:conversations", "List saved conversations."),
    "eval": ("workbench.commands.eval:eval_cmd", "Score models and checkpoints on identity and general prompts."),
    "setup": ("workbench.commands.setup:setup", "Set up lmdeploy's own environment (workbench setup lmdeploy)."),
    "tui": ("workbench.commands.tui:tui", "Open the terminal app (the default with no command)."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="workbench")
@click.option("--screen", type=click.Choice(["runs", "chat", "eval"]), default=None,
              help="With no command: the terminal app's first screen (as `workbench tui --screen`).")
@click.option("--run", "run_ref", metavar="RUN", default=None,
              help="With no command: open the Runs screen on this run (as `workbench tui --run`).")
@click.pass_context
def cli(ctx: click.Context, screen: str | None, run_ref: str | None) -> None:
    """Fine-tune small chat models with XTuner and choose the checkpoint to ship, with evidence.

    With no command, opens the terminal app (Runs, Chat, Eval).
    """
    if ctx.invoked_subcommand is None:
        tui = cli.get_command(ctx, "tui")
        assert tui is not None  # a registered command
        ctx.invoke(tui, screen=screen or "runs", run_ref=run_ref)
    elif screen or run_ref:
        raise click.UsageError(f"--screen and --run before a command are the terminal app's; "
                               f"give them to the command itself (workbench {ctx.invoked_subcommand} --help)")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning `WorkbenchError` into a one-line message and its exit code."""
    from workbench.quiet import quiet_libraries

    quiet_libraries()  # before any command imports DeepSpeed (workbench/quiet.py says what and why)
    try:
        cli.main(args=argv, prog_name="workbench", standalone_mode=False)
    except WorkbenchError as exc:
        click.echo(f"workbench: error: {exc.message}", err=True)
        sys.exit(int(exc.exit_code))
    except click.exceptions.Abort:
        click.echo("workbench: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except click.ClickException as exc:
        exc.show()
        sys.exit(int(ExitCode.BAD_INPUT))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("workbench: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
