"""Small helpers shared by the command modules (output conventions: stdout = data, stderr = diagnostics)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from workbench.errors import BadInput


def emit_json(obj: Any) -> None:
    """Print `obj` as JSON on stdout (the `--json` contract of every listing command)."""
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def info(msg: str) -> None:
    """A diagnostic line on stderr."""
    click.echo(msg, err=True)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Render rows as a plain aligned text table (no Rich: keeps imports light)."""
    if not rows:
        return ""
    cells = [[str(r.get(c, "") if r.get(c) is not None else "") for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def split_config_args(args: tuple[str, ...], cfg_options: tuple[str, ...]) -> tuple[str, list[str]]:
    """(config, cfg-options) from a command's CONFIG arguments, as `workbench train` and `inspect` take them.

    `--cfg-options a=1 b=2` as in xtuner: click takes `a=1` as the option's value and leaves `b=2` as a
    positional argument; positional k=v arguments continue --cfg-options."""
    extra = [a for a in args if "=" in a]
    configs = [a for a in args if "=" not in a]
    if extra and not cfg_options:
        raise BadInput(f"unexpected argument {extra[0]!r} (key=value settings go after --cfg-options)")
    if len(configs) != 1:
        raise BadInput("CONFIG: give exactly one config file" if not configs else
                       f"unexpected argument {configs[1]!r}")
    return configs[0], [*cfg_options, *extra]


def isatty() -> bool:
    return sys.stdout.isatty()
