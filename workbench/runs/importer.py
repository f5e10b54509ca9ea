"""Register work dirs made outside workbench (plain `xtuner train`), or runs whose registry was lost.

Each ``<work_dir>/<ts>/<ts>.log`` is one invocation of the tool (a resume writes a second one), so each
becomes one run. Runs workbench itself started there (``workbench/<id>/run.json``) are re-added as they
were. Importing twice changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.errors import BadInput
from workbench.runs import registry
from workbench.runs.model import Run, RunStatus
from workbench.runs.state import read_json
from workbench.xtuner.config import dumped_facts
from workbench.xtuner.workdir import WorkDir


def import_work_dir(work_dir: str | os.PathLike, *, name: str | None = None) -> list[Run]:
    """Register every run found in `work_dir`; return them (already registered ones included), oldest first."""
    wd = Path(work_dir).expanduser()
    if not wd.is_dir():
        raise BadInput(f"{work_dir}: no such work dir")
    wd = wd.resolve()
    stamped = WorkDir(wd).log_dirs()
    own = sorted((wd / "workbench").glob("*/run.json"))
    if not stamped and not own and not WorkDir(wd).checkpoints():
        raise BadInput(f"{work_dir}: not an XTuner work dir (no <timestamp>/<timestamp>.log, no iter_*.pth)")

    known = {r.id: r for r in registry.runs_in(wd)}
    for path in own:
        record = read_json(path)
        if record and record.get("id") not in known:
            record["status"] = RunStatus(record.get("status", "running"))
            run = Run(**{k: v for k, v in record.items() if k in Run.__dataclass_fields__})
            registry.add(run)
            known[run.id] = run
    claimed = {r.log_path for r in registry.runs_in(wd) if r.log_path}
    config = WorkDir(wd).config()
    facts = dumped_facts(config) if config else {}
    for i, (when, folder) in enumerate(stamped):
        log = str(folder / f"{folder.name}.log")
        if log in claimed:
            continue
        newest = i == len(stamped) - 1
        run = Run(
            id=registry.new_id(), name=name or (config.stem if config else wd.name), config_path=str(config or ""),
            work_dir=str(wd), run_dir=str(wd / "workbench" / "imported"), started_at=when,
            status=RunStatus.RUNNING, max_iters=facts.get("max_iters"), log_path=log, imported=True,
            meta={**facts, "newest": newest},
        )
        if not newest:
            run.ended_at = (folder / f"{folder.name}.log").stat().st_mtime
        registry.add(run, config.read_text(encoding="utf-8", errors="replace") if config else None)
    return registry.runs_in(wd)
