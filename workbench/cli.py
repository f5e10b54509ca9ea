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
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # not built yet
            raise
        return getattr(module, attr, None)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="workbench")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Fine-tune small chat models with XTuner and choose the checkpoint to ship, with evidence.

    With no command, opens the terminal app (Runs, Chat, Eval).
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(cli.get_command(ctx, "tui"))


def library_logs_to_stderr() -> None:
    """Send DeepSpeed's log lines to stderr: stdout is data (JSON, CSV, run ids), and DeepSpeed's logger prints
    "Setting ds_accelerator to cpu" to stdout when anything imports it (transformers' save_pretrained does, for
    one). Its logger is created at its import with a stdout handler; the one `logging.getLogger("DeepSpeed")`
    instance is prepared here so that handler is pointed at stderr as it is added. Costs no import."""
    import logging

    lg = logging.getLogger("DeepSpeed")
    if getattr(lg, "_workbench_stderr", False):
        return
    add = lg.addHandler

    def add_handler(handler: logging.Handler) -> None:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
        add(handler)

    lg.addHandler = add_handler  # type: ignore[method-assign]
    lg._workbench_stderr = True  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning `WorkbenchError` into a one-line message and its exit code."""
    library_logs_to_stderr()
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
