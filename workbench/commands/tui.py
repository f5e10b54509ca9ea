"""`workbench tui` (and `workbench` with no command): open the terminal app."""

from __future__ import annotations

import click


@click.command()
@click.option("--run", "run_ref", metavar="RUN", help="Open the Runs screen on this run (id, name or work dir).")
@click.option("--screen", type=click.Choice(["runs", "chat", "eval"]), default="runs", show_default=True,
              help="The screen to open first.")
def tui(run_ref: str | None, screen: str) -> None:
    """Open the terminal app: Runs, Chat and Eval screens, and a command palette (ctrl+p).

    F1/F2/F3 switch screens, F10 or ? shows every key of the current screen, ctrl+q quits.
    Key bindings can be remapped in settings.toml (docs/tui.md lists their ids).
    """
    from workbench import settings as settings_mod
    from workbench.errors import BadInput

    settings = settings_mod.load()
    import sys

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise BadInput("the TUI needs a terminal; for scripts use `workbench runs`, `workbench eval`, "
                       "or `workbench demo --headless`")
    from workbench.tui.app import run_app

    run_app(settings, select_run=run_ref, start_mode=screen)
