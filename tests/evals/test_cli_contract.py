"""`workbench eval` as a contract for scripts and CI, driven through saved responses (no model is loaded):
output formats on stdout or --out, exit codes 0 / 1 / 2, one-line errors on stderr."""

from __future__ import annotations

import csv
import io
import json
from xml.etree import ElementTree as ET

import pytest

from .helpers import VARS, run_eval


def test_json_report_recommends_the_checkpoint_that_learned_identity_and_flags_the_collapse(responses_file, wb_home):
    p = run_eval("--responses", str(responses_file), *VARS, "--format", "json", home=wb_home)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["schema"] == "workbench.eval/1"
    rows = {r["name"]: r for r in report["rows"]}
    assert [r["name"] for r in report["rows"]] == ["base", "iter_10", "iter_20"]
    assert rows["base"]["identity"] == 0.0 and rows["base"]["general"] == 1.0
    assert rows["iter_10"]["identity"] == 1.0 and rows["iter_10"]["general"] == 1.0
    assert rows["iter_20"]["general"] == 0.0 and rows["iter_20"]["leak"] == 1.0
    assert rows["iter_20"]["distinct"] < 0.05
    assert len(rows["iter_10"]["items"]) == 218
    v = report["verdict"]
    assert v["recommended"] == "iter_10" and "collapsed" in v["flags"]["iter_20"]
    assert report["gates"] == {"passed": True, "message": None, "checked": []}
    assert "verdict:" in p.stderr  # diagnostics go to stderr, data to stdout


def test_thresholds_pass_with_exit_0_and_fail_with_exit_1(responses_file, wb_home):
    ok = run_eval("--responses", str(responses_file), *VARS, "--fail-under", "identity=0.9,general=0.95",
                  "--max", "leak=0.05", home=wb_home)
    assert ok.returncode == 0, ok.stderr
    assert "Gates: PASSED" in ok.stdout
    bad = run_eval("--responses", str(responses_file), *VARS, "--fail-under", "identity=0.9", "--max", "leak=0.05",
                   "--gate", "last", home=wb_home)
    assert bad.returncode == 1, bad.stderr
    assert "iter_20: leak 1.0000 FAILS <= 0.05" in bad.stdout


def test_every_format_parses_and_out_writes_the_file_not_stdout(responses_file, wb_home, tmp_path):
    csv_p = run_eval("--responses", str(responses_file), *VARS, "--format", "csv", home=wb_home)
    lines = list(csv.DictReader(io.StringIO(csv_p.stdout)))
    assert [r["name"] for r in lines] == ["base", "iter_10", "iter_20"]
    assert lines[1]["recommended"] == "True" and "collapsed" in lines[2]["flags"]

    md = run_eval("--responses", str(responses_file), *VARS, "--format", "md", home=wb_home).stdout
    assert md.startswith("## workbench eval") and "| **iter_10** |" in md and "**Verdict** (ok)" in md

    out = tmp_path / "report.xml"
    j = run_eval("--responses", str(responses_file), *VARS, "--format", "junit", "--out", str(out),
                 "--max", "leak=0.05", "--gate", "all", home=wb_home)
    assert j.returncode == 1 and j.stdout == ""
    suite = ET.parse(out).getroot().find("testsuite")
    assert int(suite.get("tests")) == 2 + 3  # a gate for iter_10 and iter_20, a score case per row
    failed = [c.get("classname") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["gates.iter_20"]
    table = run_eval("--responses", str(responses_file), *VARS, home=wb_home).stdout
    assert "RECOMMENDED" in table and "Verdict:" in table


def test_plot_is_written_as_a_png(responses_file, wb_home, tmp_path):
    png = tmp_path / "curve.png"
    p = run_eval("--responses", str(responses_file), *VARS, "--plot", str(png), "-q", home=wb_home)
    assert p.returncode == 0, p.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _one_line_error(p, *needles: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("workbench: error:")]
    assert len(errors) == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    for n in needles:
        assert n in errors[0], errors[0]


def test_malformed_evalset_line_is_reported_with_file_and_line(responses_file, wb_home, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "kind": "general", "prompt": "q?", "answers": ["x"], "lang": "en"}\n'
                   '{"id": "b", "kind": "general", "prompt": "q?", "answers": "x"}\n', encoding="utf-8")
    _one_line_error(run_eval("--responses", str(responses_file), "--evalset", str(bad), home=wb_home),
                    f"{bad}:2", "'answers'")
    bad.write_text('{"id": "a", "kind": "general", "prompt": "q?", "answers": ["x"]\n', encoding="utf-8")
    _one_line_error(run_eval("--responses", str(responses_file), "--evalset", str(bad), home=wb_home),
                    f"{bad}:1", "not valid JSON")


def test_unknown_or_missing_var_is_bad_input(responses_file, wb_home):
    _one_line_error(run_eval("--responses", str(responses_file), "--var", "nmae=Tutu", "--var", "org=X",
                             home=wb_home), "unknown --var nmae")
    _one_line_error(run_eval("--responses", str(responses_file), home=wb_home), "--var name=...")
    _one_line_error(run_eval("--responses", str(responses_file), "--var", "name", home=wb_home),
                    "--var 'name': expected NAME=VALUE")


def test_a_run_with_no_checkpoints_is_bad_input(wb_home, tmp_path):
    empty = tmp_path / "work"
    empty.mkdir()
    _one_line_error(run_eval("--checkpoints", str(empty), *VARS, home=wb_home), "no checkpoints")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--fail-under", "identity=abc"], "'abc' is not a number"),
        (["--fail-under", "identity"], "expected metric=value"),
        (["--fail-under", "idnetity=0.9"], "unknown metric 'idnetity'"),
        (["--max", "leak=-1"], "must be a finite number >= 0"),
        (["--max", "general=0.5"], "unknown metric 'general'"),
    ],
)
def test_thresholds_that_do_not_parse_are_bad_input(responses_file, wb_home, flags, needle):
    _one_line_error(run_eval("--responses", str(responses_file), *VARS, *flags, home=wb_home), needle)


def test_malformed_responses_line_names_file_and_line(wb_home, tmp_path):
    bad = tmp_path / "r.jsonl"
    bad.write_text('{"id": "gk-zh-001", "response": "北京"}\n{"id": "gk-zh-002"}\n', encoding="utf-8")
    _one_line_error(run_eval("--responses", str(bad), *VARS, home=wb_home), f"{bad}:2", "'response'")
