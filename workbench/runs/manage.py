"""Keep the runs list tidy: filter it, rename a run, delete a run with its files.

The TUI's runs list and `workbench runs` / `workbench runs rm` / `workbench runs rename` call these.

Deleting is planned first (`plan_delete`: what goes, what stays and why), shown to the user, then done
(`delete_run`, given the plan that was confirmed: it refuses when the plan changed meanwhile). A running run is
never deleted. A run's files are its run folder (``<work_dir>/workbench/<id>``) and its mmengine log folder
(``<work_dir>/<timestamp>/``); when no other registered run used its work dir, the whole work dir goes (the
checkpoints, the converted adapters, the merged models with it), unless the work dir holds something training
does not write (a user's own files), or is a folder that must never go (the home folder, the folder the
command runs in, workbench's own folders): then it stays, and the plan says why.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import BadInput, OperationFailed
from workbench.runs import registry
from workbench.runs.model import Run, RunStatus
from workbench.xtuner.workdir import TS_DIR

#: The status filter of the runs list, in the order a key cycles through them.
STATUS_FILTERS = ("all", "running", "ended")
#: The longest run name `rename_run` takes.
MAX_NAME = 64


# -- filtering ---------------------------------------------------------------------------------------------
def _status_matches(run: Run, wanted: str) -> bool:
    wanted = wanted.lower()
    if wanted in ("", "all"):
        return True
    if wanted == "ended":
        return run.status.ended
    return any(s.value.startswith(wanted) and run.status is s for s in RunStatus)


def run_matches(run: Run, query: str = "", status: str = "all") -> bool:
    """Whether `run` passes a filter: every word of `query` (case-insensitive) is part of its id, name,
    config file name or status, and every ``status:X`` word (``running``, ``ended``, ``finished``,
    ``failed``, ``stopped``, ``lost``, or a prefix of one) holds, as does `status` (one of `STATUS_FILTERS`)."""
    if not _status_matches(run, status):
        return False
    haystack = " ".join((run.id, run.name, Path(run.config_path).name, run.status.value)).lower()
    for word in query.lower().split():
        if word.startswith("status:"):
            if not _status_matches(run, word.removeprefix("status:")):
                return False
        elif word not in haystack:
            return False
    return True


def filter_runs(runs: Iterable[Run], query: str = "", status: str = "all") -> list[Run]:
    """The runs of `runs` that pass the filter (`run_matches`), in their order."""
    return [r for r in runs if run_matches(r, query, status)]


# -- renaming ----------------------------------------------------------------------------------------------
def rename_run(ref: str | Run, name: str) -> Run:
    """Give a run another name (one line, at most `MAX_NAME` characters); returns the renamed run."""
    run = registry.get(ref) if isinstance(ref, str) else ref
    name = name.strip()
    if not name:
        raise BadInput("a run's name cannot be empty")
    if len(name) > MAX_NAME or any(not ch.isprintable() for ch in name):
        raise BadInput(f"a run's name is one line of at most {MAX_NAME} characters")
    registry.update(run.id, name=name)
    return registry.get(run.id)


# -- deleting ----------------------------------------------------------------------------------------------
@dataclass
class DeletePlan:
    """What deleting `run` removes (`paths`, existing ones only) and keeps (`kept`: the work dir, and why)."""

    run: Run
    paths: list[Path] = field(default_factory=list)
    #: Why the work dir stays (None when it goes, or when there is none on disk).
    kept: str | None = None
    #: Runs that resumed from this one: their loss curves will start where they took over.
    children: list[str] = field(default_factory=list)

    @property
    def work_dir_goes(self) -> bool:
        return Path(self.run.work_dir).expanduser().resolve() in self.paths

    def describe(self) -> list[str]:
        """One line each: what goes, what stays, what it changes for other runs."""
        lines = ["removes it from the runs list"]
        for p in self.paths:
            what = "  (its work dir: checkpoints, logs, adapters)" if p == Path(self.run.work_dir).expanduser().resolve() \
                else "  (its log folder)" if TS_DIR.match(p.name) else "  (its run folder)"
            lines.append(f"deletes {p}/{what}")
        if self.kept:
            lines.append(f"keeps {self.run.work_dir}: {self.kept}")
        if self.children:
            lines.append(f"run {', '.join(self.children)} resumed from it: its loss curve will start where it took over")
        return lines


def _forbidden(path: Path) -> str | None:
    """Why `path` must never be deleted whole, or None."""
    from workbench.paths import cache_dir, config_dir, data_dir, package_dir

    if path == Path(path.anchor):
        return "it is the filesystem root"
    home = Path.home().resolve()
    if path == home or path in home.parents:
        return "it is your home folder"
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        return "it is the folder workbench runs in"
    for own in (data_dir(), config_dir(), cache_dir(), package_dir()):
        own = own.resolve()
        if path == own or path in own.parents:
            return "it holds workbench's own files"
    return None


def _written_by_training(entry: Path) -> bool:
    """An entry of a work dir that XTuner, mmengine or workbench writes there."""
    name = entry.name
    return (name in ("workbench", "last_checkpoint", "hf", "merged") or bool(TS_DIR.match(name))
            or name.endswith(".pth") or (name.endswith(".py") and entry.is_file())
            or name.startswith(".workbench-"))


def _own_log_dir(run: Run, work_dir: Path) -> Path | None:
    """The run's mmengine timestamp folder, when it is a folder of its work dir."""
    from workbench.runs.follow import find_log_file

    log = find_log_file(run)
    if log is None:
        return None
    folder = log.parent
    return folder if folder.parent.resolve() == work_dir and TS_DIR.match(folder.name) and folder.is_dir() else None


def plan_delete(ref: str | Run) -> DeletePlan:
    """What deleting run `ref` would remove and keep. A running run is refused (`BadInput`)."""
    run = registry.get(ref) if isinstance(ref, str) else registry.refresh(ref)
    if run.status is RunStatus.RUNNING:
        raise BadInput(f"run {run.id} is running: stop it first (`workbench stop {run.id}`)")
    runs = registry.list_runs()
    others = [r for r in runs if r.id != run.id]
    plan = DeletePlan(run, children=[r.id for r in others if r.parent_id == run.id])
    work_dir = Path(run.work_dir).expanduser()
    if not work_dir.is_dir():
        return plan  # nothing on disk any more: only the registry row goes
    work_dir = work_dir.resolve()
    sharing = [r.id for r in others if Path(r.work_dir).expanduser().resolve() == work_dir]
    strangers = sorted(p.name for p in work_dir.iterdir() if not _written_by_training(p))
    forbidden = _forbidden(work_dir)
    if sharing:
        plan.kept = f"run {', '.join(sharing[:3])} also used it (their checkpoints and logs stay)"
    elif forbidden:
        plan.kept = forbidden
    elif strangers:
        shown = ", ".join(strangers[:3]) + (", ..." if len(strangers) > 3 else "")
        plan.kept = f"it also holds files training did not write ({shown})"
    else:
        plan.paths = [work_dir]
        return plan
    run_dir = Path(run.run_dir).expanduser()
    # Imported runs share one folder (workbench/imported); a run folder is the run's own only when no other has it.
    if run_dir.is_dir() and not any(Path(r.run_dir).expanduser() == run_dir for r in others):
        plan.paths.append(run_dir.resolve())
    log_dir = _own_log_dir(run, work_dir)
    if log_dir is not None:
        plan.paths.append(log_dir)
    return plan


def delete_run(ref: str | Run, confirmed: DeletePlan | None = None) -> DeletePlan:
    """Delete run `ref`: its files (`plan_delete`) and its registry row; returns what was done.

    With `confirmed` (the plan the user was shown), nothing is deleted unless the plan is still the same (a
    run started in the work dir since, say): a `BadInput` asks to look again. A running run is refused.
    """
    plan = plan_delete(ref)
    if confirmed is not None and (plan.run.id != confirmed.run.id or plan.paths != confirmed.paths):
        raise BadInput(f"run {plan.run.id}: what deleting it removes changed since it was shown; ask again")
    for path in plan.paths:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise OperationFailed(f"run {plan.run.id}: could not delete {path}: {exc.strerror or exc}; "
                                  "it is still listed") from exc
    registry.remove(plan.run.id)
    return plan

