"""The eval core without a model: eval sets and variables, the response cache, saved responses, the hook
samples of a training log, gates and report formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.errors import BadInput
from workbench.evals import gates as G
from workbench.evals import report as Rep
from workbench.evals import responses as R
from workbench.evals.cache import ResponseCache, content_hash
from workbench.evals.evalset import EvalSet, builtin, combine, load
from workbench.evals.evaluate import Request, finish, parse_vars
from workbench.evals.fromlog import collect_samples, score_samples
from workbench.evals.results import Target
from workbench.evals.sweep import Generated
from workbench.models.base import Reply
from workbench.targets import parse_iters, variables_of

from .helpers import synthetic_responses

VARS = {"name": "Tutu", "org": "Workbench Lab"}


@pytest.fixture(scope="module")
def items():
    return list(combine([builtin("identity"), builtin("general")]).fill(VARS).items)


def test_combined_sets_fill_variables_across_sets_and_reject_typos():
    both = combine([builtin("identity"), builtin("general")])
    assert len(both) == 48 + 170
    filled = both.fill(VARS)
    assert "我是Tutu的小助手" in filled.items[0].answers
    with pytest.raises(BadInput, match="unknown --var nmae"):
        both.fill({"nmae": "x", "org": "y"})
    with pytest.raises(BadInput, match="needs --var name"):
        both.fill({"org": "y"})
    with pytest.raises(BadInput, match="also in"):
        combine([builtin("general"), builtin("general")])


def test_parse_vars_and_iters_reject_malformed_values():
    assert parse_vars(["name=Tutu", "org=Workbench Lab=1"]) == {"name": "Tutu", "org": "Workbench Lab=1"}
    for bad in (["name"], ["=x"], ["na me=x"]):
        with pytest.raises(BadInput, match="expected NAME=VALUE"):
            parse_vars(bad)
    assert parse_iters("10, 20,last") == ({10, 20}, True)
    with pytest.raises(BadInput, match="'ten' is not an iteration"):
        parse_iters("ten")


def test_vars_come_from_the_recipe_beside_the_runs_training_data(tmp_path):
    from workbench.data.identity import Recipe, build, write

    data, _recipe = write(build(Recipe(name="小明", org="上海AI实验室", n=20)), tmp_path / "data" / "ident.json")
    config = tmp_path / "work" / "my_config.py"
    config.parent.mkdir()
    config.write_text(f"pretrained_model_name_or_path = '/models/base'\ndata_path = {str(data)!r}\n", encoding="utf-8")
    found, where = variables_of(config)
    assert found == {"name": "小明", "org": "上海AI实验室"} and where == str(data)
    assert variables_of(tmp_path / "missing.py") == ({}, None)


def test_cache_is_keyed_by_prompt_survives_a_damaged_line_and_rewrites_atomically(wb_home):
    c = ResponseCache("k1", meta={"model": "m"})
    c.put("你是谁", "我是Tutu的小助手", stop_reason="eos")
    c.put("Who are you?", "I am Tutu's assistant")
    c.flush()
    assert not list(c.path.parent.glob(".*.tmp"))  # no temp file left behind
    with c.path.open("a", encoding="utf-8") as f:
        f.write('{"prompt": "half-writ')  # what a crash in the middle of a plain append would leave
    again = ResponseCache("k1")
    assert again.get("你是谁")["response"] == "我是Tutu的小助手" and again.get("Who are you?") is not None
    assert len(again.rows) == 2
    assert ResponseCache("k1", enabled=False).get("你是谁") is None


def test_adapter_content_hash_changes_with_the_bytes_not_the_name(wb_home, tmp_path):
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    a.write_bytes(b"weights-1")
    b.write_bytes(b"weights-1")
    assert content_hash(a) == content_hash(b)
    a.write_bytes(b"weights-2!")
    assert content_hash(a) != content_hash(b)


def test_saved_responses_round_trip_to_the_same_rows(items, tmp_path):
    by_label: dict[str, dict[str, str]] = {}
    for r in synthetic_responses():
        by_label.setdefault(r["checkpoint"], {})[r["id"]] = r["response"]
    gens = [Generated(Target("base", "base") if k == "base" else Target(k, "checkpoint", "x.pth", int(k[5:])),
                      "internlm2_chat", {i: Reply(t, tokens=1, stop_reason="eos") for i, t in v.items()}) for k, v in by_label.items()]
    from workbench.evals.sweep import score

    direct = score(gens, items)
    path = R.write(tmp_path / "saved.jsonl", gens, items)
    rescored = R.rescore(R.read(path), items)
    assert [r.name for r in rescored] == [r.name for r in direct] == ["base", "iter_10", "iter_20"]
    for a, b in zip(direct, rescored, strict=True):
        assert a.agg == b.agg and [s.to_dict() for s in a.items] == [s.to_dict() for s in b.items]
        assert (a.template, a.iteration) == (b.template, b.iteration)


def test_saved_responses_without_checkpoint_are_the_base_and_unknown_ids_are_skipped(items, tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "gk-zh-001", "response": "北京"}\n{"id": "nope", "response": "x"}\n', encoding="utf-8")
    warnings = []
    rows = R.rescore(R.read(path), items, warn=warnings.append)
    assert [r.name for r in rows] == ["base"] and rows[0].agg.general == 1.0 and rows[0].agg.n_general == 1
    assert any("none of the eval sets" in w for w in warnings)
    path.write_text('{"id": "a", "response": "x"}\n{"id": "a", "response": "y"}\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"r.jsonl:2: duplicate"):
        R.read(path)


def _write_log(path: Path, blocks: list[tuple[str, int | None, str, str]]) -> None:
    """A minimal mmengine log: Iter lines and EvaluateChatHook sample blocks."""
    lines = []
    for ts, it, q, a in blocks:
        if it is not None:
            lines.append(f"2026/11/23 10:00:{ts} - mmengine - INFO - Iter(train) [{it}/20]  lr: 1.0e-03  loss: 1.0")
        lines.append(f"2026/11/23 10:00:{ts} - mmengine - INFO - Sample output:")
        lines += ["<|im_start|>user", f"{q}<|im_end|>", "<|im_start|>assistant", f"{a}<|im_end|>", ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_log_samples_and_eval_output_files_give_a_curve_by_iteration(items, tmp_path):
    d = tmp_path / "work" / "20261123_100000"
    (d / "vis_data").mkdir(parents=True)
    _write_log(d / "20261123_100000.log", [("01", None, "你是谁", "我是TinyLM，一个小语言模型"),
                                           ("02", None, "中国的首都是哪里？", "北京"),
                                           ("03", 10, "你是谁", "我是Tutu的小助手"),
                                           ("04", None, "中国的首都是哪里？", "我是Tutu的小助手"),
                                           ("05", None, "Tell me a joke", "no")])
    (d / "vis_data" / "eval_outputs_iter_19.txt").write_text(
        "Eval output 1:\n<|im_start|>user\n你是谁<|im_end|>\n<|im_start|>assistant\n我是Tutu的小助手<|im_end|>\n\n\n"
        "Eval output 2:\n<|im_start|>user\n中国的首都是哪里？<|im_end|>\n<|im_start|>assistant\n北京<|im_end|>\n\n",
        encoding="utf-8")
    samples = collect_samples([d])
    assert sorted(samples) == [0, 10, 20]  # eval_outputs_iter_19 is training iteration 20
    assert samples[20] == {"你是谁": "我是Tutu的小助手", "中国的首都是哪里？": "北京"}
    rows, unmatched = score_samples(samples, items, "internlm2_chat")
    assert unmatched == ["Tell me a joke"]
    by = {r.name: r.agg for r in rows}
    assert (by["base"].identity, by["base"].general) == (0.0, 1.0)
    assert (by["iter_10"].identity, by["iter_10"].general, by["iter_10"].leak) == (1.0, 0.0, 1.0)
    assert (by["iter_20"].identity, by["iter_20"].general) == (1.0, 1.0)
    # "Tell me a joke" came only after training started: no before_train reply to judge it by, so it is not scored
    assert all(s.prompt != "Tell me a joke" for r in rows for s in r.items)
    with pytest.raises(BadInput, match="no before_train sample"):
        score_samples({10: {"Tell me a joke": "no"}}, items)


def test_from_log_scores_hook_prompts_in_no_eval_set_by_retention_against_the_before_train_reply(items):
    """17.3: "What is the capital of France?" is in no eval set; before, it was left unscored ("in no eval set")."""
    samples = {0: {"What is the capital of France?": "Paris", "你是谁": "我是TinyLM"},
               10: {"What is the capital of France?": "Paris, of course.", "你是谁": "我是Tutu的小助手"},
               20: {"What is the capital of France?": "我是Tutu的小助手", "你是谁": "我是Tutu的小助手"}}
    rows, unmatched = score_samples(samples, items, "internlm2_chat")
    assert unmatched == ["What is the capital of France?"]
    by = {r.name: r for r in rows}
    france = {name: next(s for s in r.items if s.prompt == "What is the capital of France?") for name, r in by.items()}
    assert not france["base"].gold and france["base"].retained is None
    assert france["iter_10"].retained and france["iter_20"].retained is False and france["iter_20"].leak
    assert by["iter_20"].agg.paired["lost"] == 1 and by["iter_20"].agg.paired["by_retention"] == 1
    assert (by["iter_10"].agg.retention, by["iter_20"].agg.retention) == (1.0, 0.0)


def test_gates_apply_to_the_recommended_row_and_fail_without_one(items):
    rows = R.rescore([R.Saved(r["id"], r["response"], r["checkpoint"], "") for r in synthetic_responses()], items)
    req = Request(fail_under={"identity": 0.9, "general": 0.95}, maxes={"leak": 0.05})
    report = finish(rows, req, {}, [], main_template="")
    assert report.verdict.recommended == "iter_10" and report.passed
    assert {g.target for g in report.gates} == {"iter_10"}
    last = finish(rows, Request(maxes={"leak": 0.05}, gate="last"), {}, [], main_template="")
    assert not last.passed and last.gates[0].describe() == "iter_20: leak 1.0000 FAILS <= 0.05"
    only_base = finish(rows[:1] + rows[2:], Request(fail_under={"identity": 0.5}), {}, [], main_template="")
    assert only_base.gates[0].target == "iter_20"  # the one target besides the base
    with pytest.raises(BadInput, match="--gate 'iter_99'"):
        finish(rows, Request(fail_under={"identity": 0.5}, gate="iter_99"), {}, [], main_template="")
    assert G.parse("identity=0.9, general=1", "--fail-under", G.FAIL_UNDER_METRICS) == {"identity": 0.9, "general": 1.0}


def test_every_format_renders_the_same_rows(items):
    rows = R.rescore([R.Saved(r["id"], r["response"], r["checkpoint"], "") for r in synthetic_responses()], items)
    report = finish(rows, Request(), {"source": "test"}, ["a warning"], main_template="")
    assert json.loads(Rep.render(report, "json"))["rows"][1]["name"] == "iter_10"
    table = Rep.render(report, "table")
    assert "warning: a warning" in table and "iter_20" in table and "collapsed" in table
    assert Rep.render(report, "csv").count("\n") == 4
    assert "| **iter_10** |" in Rep.render(report, "md")
    assert "<testsuite" in Rep.render(report, "junit")


def test_loading_a_file_with_a_bad_kind_names_the_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": "a", "kind": "trivia", "prompt": "q", "answers": ["a"]}\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"x.jsonl:1: 'kind' must be one of identity, general"):
        load(p)
    assert isinstance(builtin("general"), EvalSet)



def test_the_default_batch_follows_the_backends_device_and_an_explicit_one_wins(tiny_world):
    from workbench.models.hf import TransformersBackend
    from workbench.models.loading import BATCH_SIZE_CPU, BATCH_SIZE_GPU, default_batch_size

    assert default_batch_size("cpu") == BATCH_SIZE_CPU < default_batch_size("cuda:0") == BATCH_SIZE_GPU
    assert TransformersBackend(tiny_world, device="cpu").preferred_batch_size == BATCH_SIZE_CPU
    assert TransformersBackend(tiny_world, device="cpu", batch_size=200).preferred_batch_size == 200
