"""The runs list as a daily tool (issue 16): filter by text and status, delete a run with its files (never a running
one), rename, the resumed-from link, compare several runs' loss curves in one chart. The core calls behind them
(`workbench.runs.manage`, `workbench.runs.curves`) are tested here too, on the same recorded runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from workbench.errors import BadInput
from workbench.runs import registry
from workbench.runs.model import Run, RunStatus
from workbench.settings import Settings
from workbench.tui.app import WorkbenchApp

from .helpers import install_stopped_run, screen_text, wait_for

SIZE = (80, 24)


def _shown(app) -> list[str]:
    return [str(k.value) for k in app.screen.query_one("#runs-table").rows]


def _cells(app, run_id: str) -> list[str]:
    return [str(c) for c in app.screen.query_one("#runs-table").get_row(run_id)]


def _focused(app) -> str | None:
    return app.focused.id if app.focused is not None else None


async def _ready(pilot, ids=("rec001", "rec002")) -> None:
    await wait_for(pilot, lambda: pilot.app.screen.selected == "rec001", 10, "rec001 selected")
    await wait_for(pilot, lambda: _shown(pilot.app) == list(ids), 10, "the runs listed")


@pytest.fixture
def running_rec002(monkeypatch):
    """rec002 reads as running (as the registry derives it) while `state["running"]` holds."""
    state = {"running": True}
    real = registry.refresh

    def refresh(run):
        run = real(run)
        if run.id == "rec002" and state["running"]:
            run.status = RunStatus.RUNNING
        return run

    monkeypatch.setattr(registry, "refresh", refresh)
    return state


# -- filter ------------------------------------------------------------------------------------------------
async def test_the_filter_narrows_the_rows_as_you_type_and_by_status(two_runs, running_rec002):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        await _ready(pilot)
        await pilot.press("slash")
        await wait_for(pilot, lambda: _focused(app) == "runs-filter", 5, "the filter box")
        await pilot.press(*"rec002")
        await wait_for(pilot, lambda: _shown(app) == ["rec002"], 5, "the rows narrowed to rec002")
        assert app.screen.selected == "rec002"  # the selection follows the rows shown
        assert "1 of 2 runs" in screen_text(app)
        await pilot.press("escape")  # clears the filter, back to the list
        await wait_for(pilot, lambda: _shown(app) == ["rec001", "rec002"], 5, "every run again")
        await wait_for(pilot, lambda: _focused(app) == "runs-table", 5, "the list focused")
        assert app.screen.selected == "rec002"  # kept while still shown

        await pilot.press("slash")
        await wait_for(pilot, lambda: _focused(app) == "runs-filter", 5, "the filter box")
        await pilot.press(*"status:fin", "enter")  # a status word in the text
        await wait_for(pilot, lambda: _shown(app) == ["rec001"], 5, "the finished run only")
        await wait_for(pilot, lambda: _focused(app) == "runs-table", 5, "the list focused")
        assert "rec001" in screen_text(app)
        await pilot.press("slash")
        await wait_for(pilot, lambda: _focused(app) == "runs-filter", 5, "the filter box")
        await pilot.press("escape")
        await wait_for(pilot, lambda: _focused(app) == "runs-table", 5, "the list focused")

        await pilot.press("f")  # the status key: all -> running -> ended -> all
        await wait_for(pilot, lambda: _shown(app) == ["rec002"], 5, "the running run only")
        assert "status: running (f)" in screen_text(app)
        await pilot.press("f")
        await wait_for(pilot, lambda: _shown(app) == ["rec001"], 5, "the ended run only")
        await pilot.press("f")
        await wait_for(pilot, lambda: _shown(app) == ["rec001", "rec002"], 5, "all runs")
        await pilot.pause()
        assert "status:" not in screen_text(app)  # no filter on: the bar is gone


def test_filter_runs_matches_every_word_and_status_words():
    from workbench.runs.manage import filter_runs

    def run(rid, name, status):
        return Run(id=rid, name=name, config_path=f"/x/{name}.py", work_dir="/w", run_dir="/w/r", status=status)

    runs = [run("a1", "tiny_cpu_lora", RunStatus.RUNNING), run("b2", "smollm2", RunStatus.FAILED),
            run("c3", "tiny_cpu_overfit", RunStatus.FINISHED)]
    ids = lambda *args: [r.id for r in filter_runs(runs, *args)]  # noqa: E731
    assert ids("tiny") == ["a1", "c3"] and ids("TINY lora") == ["a1"] and ids("lora.py") == ["a1"]
    assert ids("status:ended") == ["b2", "c3"] and ids("status:fail") == ["b2"] and ids("failed") == ["b2"]
    assert ids("", "running") == ["a1"] and ids("tiny", "ended") == ["c3"] and ids("status:nope") == []


# -- delete ------------------------------------------------------------------------------------------------
async def test_delete_refuses_a_running_run_and_deletes_an_ended_one_with_its_files(two_runs, running_rec002):
    work2 = two_runs
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        await _ready(pilot)
        await pilot.press("end", "d")
        await wait_for(pilot, lambda: any("rec002 is running: stop it first" in n.message
                                          for n in app._notifications), 5, "the refusal")
        assert type(app.screen).__name__ == "RunsScreen"  # no question asked
        with pytest.raises(BadInput, match="running"):  # the core refuses too
            from workbench.runs.manage import delete_run

            delete_run("rec002")

        running_rec002["running"] = False  # it stopped
        await wait_for(pilot, lambda: "stopped" in _cells(app, "rec002")[2], 10, "rec002 stopped")
        await pilot.press("d")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmModal", 5, "the question")
        text = screen_text(app)
        assert "Delete run rec002 (demo, stopped)?" in text and str(work2) in text and "work dir" in text
        assert app.focused.id == "no"  # Enter would keep it
        await pilot.press("n")
        await pilot.pause()
        assert work2.exists() and [r.id for r in registry.list_runs()] == ["rec002", "rec001"]

        await pilot.press("d")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmModal", 5, "the question again")
        await pilot.press("y")
        await wait_for(pilot, lambda: _shown(app) == ["rec001"], 10, "the row gone")
        assert not work2.exists()  # its work dir: nobody else used it
        assert [r.id for r in registry.list_runs()] == ["rec001"]
        assert app.screen.selected == "rec001" and not app.errors


def test_a_shared_work_dir_stays_and_only_the_runs_own_folders_go(recorded_home, tmp_path):
    from workbench.runs.manage import delete_run, plan_delete

    work = recorded_home
    (rec001,) = registry.list_runs()
    # A resume in the same work dir: the new run writes there too.
    registry.add(Run(**{**rec001.to_dict(), "id": "res001", "status": RunStatus.FINISHED,
                                 "run_dir": str(work / "workbench" / "res001"), "parent_id": "rec001",
                                 "started_at": rec001.started_at + 7200, "log_path": None}))
    plan = plan_delete("rec001")
    assert plan.paths == [(work / "workbench" / "rec001").resolve(), next(work.glob("2*_*")).resolve()]
    assert "res001 also used it" in plan.kept and plan.children == ["res001"]
    delete_run("rec001", confirmed=plan)
    assert work.is_dir() and (work / "iter_300.pth").exists() and not (work / "workbench" / "rec001").exists()
    assert [r.id for r in registry.list_runs()] == ["res001"]

    # A work dir with the user's own files in it stays; a plan that changed since it was shown is refused.
    other = install_stopped_run(tmp_path / "mine", run_id="rec009")
    from .helpers import import_run

    import_run(other)
    (other / "notes.txt").write_text("mine")
    plan = plan_delete("rec009")
    assert "notes.txt" in plan.kept and not plan.work_dir_goes
    (other / "notes.txt").unlink()
    with pytest.raises(BadInput, match="changed since"):
        delete_run("rec009", confirmed=plan)
    assert delete_run("rec009").work_dir_goes and not other.exists()


# -- rename ------------------------------------------------------------------------------------------------
async def test_rename_shows_in_the_list_and_in_runs_json(two_runs):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        await _ready(pilot)
        await pilot.press("end", "R")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PromptModal", 5, "the name")
        assert app.screen.query_one("#prompt").value == "demo"
        await pilot.press("ctrl+u", *"stopped early", "enter")
        await wait_for(pilot, lambda: "stopped early" in _cells(app, "rec002")[1], 10, "the new name in the list")
        assert "rec002  stopped early" in screen_text(app)
    listed = subprocess.run([sys.executable, "-m", "workbench", "runs", "--json"], capture_output=True, text=True,
                            check=True)
    assert {r["id"]: r["name"] for r in json.loads(listed.stdout)} == {"rec001": "demo", "rec002": "stopped early"}


def test_rename_and_rm_from_the_cli(two_runs):
    def wb(*args):
        return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)

    assert wb("runs", "rename", "rec002", "again").stdout.strip() == "rec002 again"
    refused = wb("runs", "rename", "rec002", " ")
    assert refused.returncode == 2 and "cannot be empty" in refused.stderr
    assert "rec002" in wb("runs", "--filter", "status:stopped").stdout
    assert "rec001" not in wb("runs", "--filter", "status:stopped").stdout
    asked = wb("runs", "rm", "rec002")  # no terminal to ask in: refused, nothing deleted
    assert asked.returncode == 2 and "--yes" in asked.stderr and two_runs.exists()
    done = wb("runs", "rm", "rec002", "--yes")
    assert done.returncode == 0 and f"deletes {two_runs}/" in done.stderr and not two_runs.exists()
    assert [r["id"] for r in json.loads(wb("runs", "--json").stdout)] == ["rec001"]


# -- the resumed-from link, compare ------------------------------------------------------------------------
async def test_a_resumed_run_names_its_parent_in_the_list(two_runs):
    registry.update("rec001", parent_id="rec002")
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        await _ready(pilot)
        await wait_for(pilot, lambda: "demo ←rec002" in screen_text(app), 5, "the link")


async def test_compare_overlays_the_marked_runs_loss_curves(two_runs):
    app = WorkbenchApp(Settings())
    async with app.run_test(size=SIZE) as pilot:
        await _ready(pilot)
        await pilot.press("C")  # nothing marked: choose the runs
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PickManyModal", 5, "the runs to compare")
        await pilot.press("escape")
        await pilot.press("space", "space")  # mark both (space moves down)
        await wait_for(pilot, lambda: "2 marked" in screen_text(app), 5, "the marks counted")
        assert _cells(app, "rec001")[0] == "●rec001" and _cells(app, "rec002")[0] == "●rec002"
        await pilot.press("C")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareRunsScreen", 5, "the compare view")
        chart = app.screen.query_one("#compare-chart")
        await wait_for(pilot, lambda: len(chart.series) == 2, 10, "two curves")
        first, second = chart.series
        assert first.name == "rec001 demo" and second.name == "rec002 demo" and first.color != second.color
        assert list(first.xs) == list(range(1, 301)) and list(second.xs) == list(range(1, 126))
        assert second.values == first.values[:125]  # the same run, stopped at 125
        text = screen_text(app)
        assert "━ rec001 demo 1.56" in text and "━ rec002 demo 1.7" in text and "1.521 @276" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen", 5, "back to the runs")


def test_a_resumed_runs_curve_starts_with_its_parents(two_runs):
    from workbench.runs.curves import loss_curve

    registry.update("rec001", parent_id="rec002", resume_from=str(two_runs / "iter_125.pth"))
    curve = loss_curve(registry.get("rec001"))
    assert curve.iters == list(range(1, 301)) and curve.inherited == 125
