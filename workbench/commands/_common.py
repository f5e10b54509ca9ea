"""Small helpers shared by the command modules (output conventions: stdout = data, stderr = diagnostics)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


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


def isatty() -> bool:
    return sys.stdout.isatty()
