"""The runs registry: one SQLite table under the data dir (``<data_dir>/runs.sqlite3``).

WAL mode and a busy timeout let the CLI, the TUI and several terminals read and write at once. A
connection is opened per operation, so any thread may call these functions. Status is not trusted
from the table: `get` and `list_runs` re-derive it (`state.derive_state`) for every run the table still
calls running, and store the result once a run has ended.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

from workbench.errors import BadInput
from workbench.paths import data_dir
from workbench.runs.model import Run, RunStatus

SCHEMA_VERSION = 1
JSON_FIELDS = {"command", "env", "cfg_options", "meta"}
COLUMNS = [f.name for f in fields(Run)]
_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, config_path TEXT NOT NULL, config_text TEXT,
    work_dir TEXT NOT NULL, run_dir TEXT NOT NULL, command TEXT, env TEXT, cfg_options TEXT, deepspeed TEXT,
    pid INTEGER, pgid INTEGER, host TEXT, started_at REAL, ended_at REAL, status TEXT NOT NULL,
    exit_code INTEGER, reason TEXT, parent_id TEXT, resume_from TEXT, max_iters INTEGER, log_path TEXT,
    imported INTEGER NOT NULL DEFAULT 0, meta TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
"""


#: How long a write waits for another process's write to finish (SQLite's busy timeout).
BUSY_TIMEOUT_S = 10.0


def db_path() -> Path:
    return data_dir() / "runs.sqlite3"


@contextlib.contextmanager
def _connect(create: bool = True) -> Iterator[sqlite3.Connection | None]:
    path = db_path() if create else _existing_db()
    if path is None:
        yield None
        return
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            con.executescript(_DDL)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        yield con
    finally:
        con.close()


def _existing_db() -> Path | None:
    # Reading must not create anything (a typo'd run id leaves no trace), so look before connecting.
    import os

    home = os.environ.get("WORKBENCH_HOME")
    if home:
        path = Path(home).expanduser() / "data" / "runs.sqlite3"
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("workbench")) / "runs.sqlite3"
    return path if path.exists() else None


def _to_row(run: Run, config_text: str | None = None) -> dict:
    row = {}
    for name in COLUMNS:
        value = getattr(run, name)
        if name in JSON_FIELDS:
            value = json.dumps(value, ensure_ascii=False)
        elif name == "status":
            value = run.status.value
        elif name == "imported":
            value = int(value)
        row[name] = value
    row["config_text"] = config_text
    return row


def _from_row(row: sqlite3.Row) -> Run:
    kwargs = {}
    for name in COLUMNS:
        value = row[name]
        if name in JSON_FIELDS:
            value = json.loads(value) if value else ({} if name in ("env", "meta") else [])
        elif name == "status":
            value = RunStatus(value)
        elif name == "imported":
            value = bool(value)
        kwargs[name] = value
    return Run(**kwargs)


def new_id() -> str:
    """A short random run id (6 hex digits, never all digits so it cannot be taken for an iteration)."""
    import secrets

    taken = {r.id for r in _select()}
    while True:
        rid = secrets.token_hex(3)
        if rid not in taken and not rid.isdigit():
            return rid


def add(run: Run, config_text: str | None = None) -> Run:
    """Insert a new run (with the text of its config, kept even if the file changes later)."""
    row = _to_row(run, config_text)
    with _connect() as con:
        assert con is not None  # created when missing
        cols = ", ".join(row)
        con.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    return run


def update(run_id: str, **values) -> None:
    """Set some columns of one run (`status` may be a `RunStatus`; dict/list columns are JSON-encoded)."""
    if not values:
        return
    for key in list(values):
        if key not in COLUMNS:
            raise KeyError(key)
        if key in JSON_FIELDS:
            values[key] = json.dumps(values[key], ensure_ascii=False)
        elif isinstance(values[key], RunStatus):
            values[key] = values[key].value
    with _connect() as con:
        assert con is not None  # created when missing
        sets = ", ".join(f"{k} = ?" for k in values)
        con.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*values.values(), run_id])


def remove(run_id: str) -> None:
    """Delete one run's row (its files are `workbench.runs.manage.delete_run`'s business)."""
    with _connect(create=False) as con:
        if con is not None:
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))


def config_text(run_id: str) -> str | None:
    """The config as it was when the run started."""
    with _connect(create=False) as con:
        if con is None:
            return None
        row = con.execute("SELECT config_text FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row[0] if row else None


def _select(where: str = "", args: tuple = ()) -> list[Run]:
    with _connect(create=False) as con:
        if con is None:
            return []
        con.row_factory = sqlite3.Row
        cols = ", ".join(COLUMNS)
        rows = con.execute(f"SELECT {cols} FROM runs {where} ORDER BY started_at", args).fetchall()
    return [_from_row(r) for r in rows]


def refresh(run: Run) -> Run:
    """Re-derive the status of a run the table calls running; store it if the run has ended."""
    if run.status.ended:
        return run
    from workbench.runs.follow import find_log_file
    from workbench.runs.state import derive_state

    state = derive_state(run)
    changes: dict = {}
    if run.log_path is None:
        log = find_log_file(run)
        if log is not None:
            run.log_path = changes["log_path"] = str(log)
    if state.pid and state.pid != run.pid:
        run.pid = changes["pid"] = state.pid
    run.status, run.exit_code, run.reason = state.status, state.exit_code, state.reason
    if state.status.ended:
        run.ended_at = state.ended_at
        changes.update(status=state.status, exit_code=state.exit_code, reason=state.reason, ended_at=state.ended_at)
    if changes:
        try:
            update(run.id, **changes)
        except sqlite3.OperationalError as exc:
            # Another process held the database longer than the busy timeout. The status is derived again
            # on every read and stored by the next one, so a listing must not fail for want of the cache.
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
    return run


def list_runs() -> list[Run]:
    """Every run, oldest first, each with its status derived now."""
    return [refresh(r) for r in _select()]


def runs_in(work_dir: str | Path) -> list[Run]:
    return [refresh(r) for r in _select("WHERE work_dir = ?", (str(Path(work_dir).resolve()),))]


def get(ref: str) -> Run:
    """Find a run by id, unique id prefix, name (the newest of that name) or work dir (its newest run).

    Raises `BadInput` with a one-line message when nothing (or more than one id) matches.
    """
    ref = ref.strip()
    if not ref:
        raise BadInput("RUN: empty run id")
    runs = _select()
    exact = [r for r in runs if r.id == ref]
    if exact:
        return refresh(exact[0])
    by_prefix = [r for r in runs if r.id.startswith(ref)]
    if len(by_prefix) == 1:
        return refresh(by_prefix[0])
    if len(by_prefix) > 1:
        raise BadInput(f"run id {ref!r} is ambiguous: {', '.join(r.id for r in by_prefix[:5])}")
    named = [r for r in runs if r.name == ref]
    if named:
        return refresh(named[-1])
    path = Path(ref).expanduser()
    if path.is_dir():
        in_dir = [r for r in runs if r.work_dir == str(path.resolve())]
        if in_dir:
            return refresh(in_dir[-1])
        raise BadInput(f"{ref}: no run registered in this work dir (register it with `workbench import {ref}`)")
    raise BadInput(f"no run {ref!r} (see `workbench runs`)")
