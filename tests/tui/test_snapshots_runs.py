"""Snapshots of the runs list's own views at 80x24 (tests/tui/__snapshots__/test_snapshots_runs/, made with
--snapshot-update and looked at): several runs with marks and a resumed-from link, and two runs compared.

Deterministic as tests/tui/test_snapshots.py's: recorded runs only (fixed logs, ids, times); no path is on
these screens. rec002's losses are those of a slower run (each iteration logs the loss the recording had at
half of it), so the two curves of the compare view are told apart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workbench.runs import registry

from .helpers import import_run, install_stopped_run, screen_text, wait_for
from .test_snapshots import SIZE, _app, _run_shown, steady


def slow_down(work: Path, factor: float = 0.5) -> None:
    """Rewrite a recorded run's losses (scalars.json and both logs) as a run learning `factor` times as fast."""
    scalars = next(work.glob("2*/vis_data/scalars.json"))
    rows = [json.loads(line) for line in scalars.read_text().splitlines() if line.strip()]
    before = {r["iter"]: r["loss"] for r in rows if "loss" in r}
    after = {i: before[max(1, round(i * factor))] for i in before}
    for r in rows:
        if "loss" in r:
            r["loss"] = after[r["iter"]]
    scalars.write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = re.compile(r"(Iter\(train\) \[\s*(\d+)/\d+\][^\n]*loss: )([\d.]+)")
    for log in [*work.glob("workbench/*/stdout.log"), *work.glob("2*/2*.log")]:
        log.write_text(line.sub(lambda m: f"{m.group(1)}{after[int(m.group(2))]:.4f}", log.read_text()))


@pytest.fixture
def slower_rec002(two_runs) -> Path:
    slow_down(two_runs)
    return two_runs


@pytest.fixture
def three_runs(slower_rec002, tmp_path) -> Path:
    """rec001 (finished), rec003 (resumed rec002 at iter 125, stopped at 200), rec002 (slower, stopped at 125)."""
    work = install_stopped_run(tmp_path / "work3", run_id="rec003", at=200, name="demo-more")
    assert [r.id for r in import_run(work)] == ["rec003"]
    rec001 = registry.get("rec001")
    registry.update("rec003", parent_id="rec002", resume_from=str(slower_rec002 / "iter_125.pth"),
                    started_at=rec001.started_at - 1800)
    return work


def test_runs_list_with_several_runs_two_marked_and_a_resumed_one(three_runs, snap_compare):
    async def before(pilot):
        await _run_shown(pilot)
        await wait_for(pilot, lambda: re.search(r"rec002 .* 125/300", screen_text(pilot.app)), 10, "rec002's row")
        await wait_for(pilot, lambda: "demo-more ←rec002" in screen_text(pilot.app), 10, "rec003's parent")
        await pilot.press("space", "space")  # rec001 and rec003 marked; the cursor moves on to rec002
        await wait_for(pilot, lambda: "2 marked" in screen_text(pilot.app), 5, "the marks counted")
        await wait_for(pilot, lambda: "iter 125/300" in screen_text(pilot.app), 10, "rec002's metrics")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=steady(before))


def test_compare_two_runs_loss_curves(slower_rec002, snap_compare):
    async def before(pilot):
        await _run_shown(pilot)
        await pilot.press("space", "space", "C")
        await wait_for(pilot, lambda: "1.521 @276" in screen_text(pilot.app), 10, "the curves and their legend")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=steady(before))
