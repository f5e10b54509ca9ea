"""Helpers of the TUI tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from workbench.paths import project_root

FIXTURES = Path(__file__).parent / "fixtures"


def install_recorded_run(dest: Path, model: str = "/nonexistent/tiny-world") -> Path:
    """Copy the recorded run to `dest` (its work dir), fill its path templates, add placeholder checkpoints."""
    shutil.copytree(FIXTURES / "recorded_run", dest)
    fill = {"{WORK}": str(dest), "{MODEL}": model, "{REPO}": str(project_root())}
    for path in dest.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".py", "") and path.name != "stdout.log":
            text = path.read_text(encoding="utf-8")
            for key, value in fill.items():
                text = text.replace(key, value)
            path.write_text(text, encoding="utf-8")
    listed = dest / "checkpoints.json"
    for it in json.loads(listed.read_text()):
        (dest / f"iter_{it}.pth").write_bytes(b"")
    listed.unlink()  # the recording's, not training's: the work dir holds only what training writes
    return dest


def install_stopped_run(dest: Path, run_id: str = "rec002", at: int = 125, name: str = "demo") -> Path:
    """A second run made from the recorded one, as `workbench stop` leaves it at iteration `at`: its logs
    and scalars cut there, its later checkpoints gone, started an hour before rec001 (so it is listed
    below it and not selected first)."""
    work = install_recorded_run(dest)
    run_dir = work / "workbench" / run_id
    (work / "workbench" / "rec001").rename(run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    started = record["started_at"] - 3600
    record.update(id=run_id, name=name, run_dir=str(run_dir), started_at=started)
    (run_dir / "run.json").write_text(json.dumps(record))
    (run_dir / "exit.json").unlink()
    (run_dir / "stop.json").write_text(json.dumps({"signal": "SIGINT", "ended_at": started + 3600 + 930}))
    saved = f"Saving checkpoint at {at} iterations"
    for log in [run_dir / "stdout.log", *work.glob("2*/2*.log")]:
        lines = log.read_text().splitlines(keepends=True)
        cut = next(i for i, line in enumerate(lines) if saved in line)
        log.write_text("".join(lines[: cut + 1]))
    for scalars in work.glob("2*/vis_data/scalars.json"):
        rows = [r for r in scalars.read_text().splitlines() if json.loads(r).get("iter", 0) <= at]
        scalars.write_text("\n".join(rows) + "\n")
    for ck in work.glob("iter_*.pth"):
        if int(ck.stem.split("_")[1]) > at:
            ck.unlink()
    (work / "last_checkpoint").write_text(str(work / f"iter_{at}.pth"))
    return work


def import_run(work: Path) -> list:
    from workbench.runs.importer import import_work_dir

    return import_work_dir(work)


async def wait_for(pilot, condition, timeout: float = 60.0, what: str = "") -> None:
    """Let the app run until `condition()` holds; fail after `timeout` seconds (or on a reported error)."""
    deadline = time.monotonic() + timeout
    app = pilot.app
    while not condition():
        # AssertionError, not pytest.fail: inside a snapshot's run_before, Textual must see an Exception.
        if getattr(app, "errors", None):
            raise AssertionError(f"while waiting for {what or condition}: the app reported {app.errors}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition}")
        await pilot.pause(0.05)


def screen_text(app) -> str:
    """The plain text on the (virtual) screen now, one line per row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
