"""`merge_checkpoint`: where a run's merged checkpoint goes, and that a merge already there is reused."""

from __future__ import annotations

from workbench.runs.convert import merge_checkpoint, merged_path
from workbench.runs.model import Run


def _run(tmp_path) -> Run:
    return Run(id="abcdef", name="t", config_path="c.py", work_dir=str(tmp_path / "work"),
               run_dir=str(tmp_path / "run"), started_at=0.0)


def test_a_checkpoint_merges_into_the_work_dirs_merged_folder(tmp_path):
    assert merged_path(_run(tmp_path), 60) == tmp_path / "work" / "merged" / "iter_60"


def test_a_merge_already_written_is_reused_without_converting_or_loading_anything(tmp_path):
    run = _run(tmp_path)
    done = merged_path(run, 60)
    done.mkdir(parents=True)
    (done / "config.json").write_text("{}", encoding="utf-8")
    # No iter_60.pth and no base model exist: only the reuse rule can answer.
    assert merge_checkpoint(run, 60, base="/nonexistent/base", trust_remote_code=False) == done
