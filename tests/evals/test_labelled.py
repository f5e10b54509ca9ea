"""The scorer against a careful human: `fixtures/labelled_replies.jsonl` holds 223 replies (zh and en, identity
and general) labelled by hand before the leak rule was tuned (`human_pass`, and `human_leak` on general
replies). Among them the seeds' reply texts, verbatim (`source: seed-000`): the trained model's
"我是amstrongzyf的小助手内在是上海AI实验室书生·浦语的1.8B大模型哦</s>" and the base-like
"我是上海AI实验室书生·浦语的1.8B大模型哦</s>". The seeds show the 300- and 600-iteration outputs only as screenshots,
so the fixture replays that sentence where they describe it (`seed-001-pattern`: at 600 "只会回答同一个答案了",
every question gets it; at 300 questions are still answered). The real CLI re-scores the file as saved responses.

Measured when the file was written: before the new leak rule, pass 220/223 (0.987) and leak 135/154 (0.877):
every reply of the seeds' 600-iteration checkpoint to a general question was missed. After: pass 220/223,
leak 154/154."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import run_eval

FIXTURE = Path(__file__).parent / "fixtures" / "labelled_replies.jsonl"
SEED_VARS = ["--var", "name=amstrongzyf", "--var", "org=Workbench Lab"]
SEED_600 = "我是amstrongzyf的小助手内在是上海AI实验室书生·浦语的1.8B大模型哦</s>"


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> tuple[list[dict], dict]:
    home = tmp_path_factory.mktemp("wbhome")
    p = run_eval("--responses", str(FIXTURE), *SEED_VARS, "--format", "json", home=home)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    got = {(r["name"], item["id"]): item for r in report["rows"] for item in r["items"]}
    labels = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(lab, got[(lab["checkpoint"], lab["id"])]) for lab in labels], report


def test_the_labelled_set_is_big_and_varied_enough_to_mean_something(scored):
    pairs, _ = scored
    labels = [lab for lab, _ in pairs]
    general = [lab for lab in labels if "human_leak" in lab]
    assert len(labels) >= 150 and len(general) >= 100
    assert {"-zh-", "-en-"} <= {k for lab in labels for k in ("-zh-", "-en-") if k in lab["id"]}
    assert sum(lab["human_leak"] for lab in general) >= 30
    assert any(lab["source"].startswith("seed-000") for lab in labels)


def test_leak_flag_agrees_with_the_human_label_on_general_replies(scored):
    pairs, _ = scored
    general = [(lab, item) for lab, item in pairs if "human_leak" in lab]
    wrong = [(lab["checkpoint"], lab["id"], lab["response"]) for lab, item in general if item["leak"] != lab["human_leak"]]
    assert 1 - len(wrong) / len(general) >= 0.95, wrong


def test_pass_flag_agrees_with_the_human_label_on_all_replies(scored):
    pairs, _ = scored
    wrong = [(lab["checkpoint"], lab["id"], lab["response"]) for lab, item in pairs if item["passed"] != lab["human_pass"]]
    assert 1 - len(wrong) / len(pairs) >= 0.95, wrong


def test_the_seeds_600_iteration_sentence_is_a_leak_on_every_general_question_with_its_span(scored):
    """Seed 001: at 600 iterations "只会回答同一个答案了". Before this rule the sentence (identity + the model
    description) was too long to count as "mostly" the identity answer, and none of these was flagged."""
    pairs, report = scored
    at_600 = [item for lab, item in pairs if lab["checkpoint"] == "iter_600" and lab["id"].startswith("gk-")]
    assert at_600 and all(item["leak"] and item["leak_span"] == "我是amstrongzyf的小助手" for item in at_600)
    assert all(item["response"] == SEED_600 for item in at_600)
    at_300 = [item for lab, item in pairs if lab["checkpoint"] == "iter_300" and lab["id"].startswith("gk-")]
    assert at_300 and not any(item["leak"] for item in at_300) and all(item["passed"] for item in at_300)
    assert "leaking" in report["verdict"]["flags"]["iter_600"]
    assert "leaking" not in report["verdict"]["flags"].get("iter_300", [])
