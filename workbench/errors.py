"""Errors users see, and the exit codes scripts can rely on.

Every error a user can cause (a missing path, a malformed line, a config that will not load) is a
`WorkbenchError`: the CLI prints its message as one line on stderr and exits with its code. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes of every `workbench` command (the table in docs/eval.md, "Gates and exit codes")."""

    OK = 0
    #: `workbench eval`: a --fail-under / --max threshold was not met.
    THRESHOLD_FAILED = 1
    #: Bad input: a path, a flag value, a file's content, an unknown run id.
    BAD_INPUT = 2
    #: The operation itself failed (a training process died, a server did not come up).
    FAILED = 3
    INTERRUPTED = 130


class WorkbenchError(Exception):
    """An error with a one-line message meant for the user."""

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, exit_code: ExitCode | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class BadInput(WorkbenchError):
    """The user gave a path, value or file that cannot be used."""

    exit_code = ExitCode.BAD_INPUT


class OperationFailed(WorkbenchError):
    """Something workbench ran (a training process, a server, a conversion) failed."""

    exit_code = ExitCode.FAILED


def where(path: object, line: int | None = None) -> str:
    """Format a file location for messages: ``path`` or ``path:line``."""
    return f"{path}:{line}" if line is not None else f"{path}"
