"""The verdict's evidence, built through the real scorer (`results.score_rows`, as every path scores):
paired changes against the base with a significance test, retention against the base's own replies,
identity per language (a run taught in one language) and on prompts seen in training vs held out."""

from __future__ import annotations

import json

from workbench.evals import verdict as V
from workbench.evals.evalset import EvalItem
from workbench.evals.results import BASE, CHECKPOINT, Target, score_rows
from workbench.evals.training import load_training

from .helpers import run_eval


def facts(n: int, lang: str = "en", gold: bool = True) -> list[EvalItem]:
    return [EvalItem(f"gk-{lang}-{i:03d}", "general", f"question {lang} {i}?", (f"answer{i}",) if gold else (), lang)
            for i in range(n)]


def identity(lang: str, n: int = 4) -> list[EvalItem]:
    answer = "我是Tutu的小助手" if lang == "zh" else "I am Tutu's assistant"
    prompt = "你是谁{}？" if lang == "zh" else "Who are you {}?"
    return [EvalItem(f"id-{lang}-{i}", "identity", prompt.format(i), (answer,), lang, required=(("Tutu",),))
            for i in range(n)]


def ckpt(it: int) -> Target:
    return Target(f"iter_{it}", CHECKPOINT, iteration=it)


def replies(items, wrong=(), identity_ok=False):
    out = {}
    for n, i in enumerate(items):
        if i.kind == "identity":
            out[i.id] = i.answers[0] if identity_ok else "I am a small model"
        else:
            out[i.id] = "no idea" if n in wrong else (i.answers[0] if i.answers else f"reply{n}")
    return out


def test_a_small_loss_beyond_the_tolerance_that_could_be_chance_is_not_forgetting():
    """The SmolLM2-135M case: 3 of 26 answers lost (0.115 > 0.05, p = 0.125) no longer disqualifies the checkpoint."""
    items = facts(26) + identity("en")
    base = replies(items, wrong={0, 1})  # the base knew 24 of 26
    rows = score_rows([(Target(BASE, BASE), "", base, None),
                       (ckpt(20), "", replies(items, wrong={0, 1, 2, 3, 4}, identity_ok=True), None),
                       (ckpt(40), "", replies(items, wrong={0, 1, *range(2, 12)}, identity_ok=True), None)], items)
    p = rows[1].agg.paired
    assert (p["lost"], p["base_known"], p["gained"], p["base_unknown"], p["p_value"]) == (3, 24, 0, 2, 0.125)
    v = V.decide(rows)
    assert v.recommended == "iter_20" and "forgetting" not in v.flags.get("iter_20", [])
    assert v.flags["iter_40"] == ["forgetting"] and rows[2].agg.paired["lost"] == 10
    assert "iter_20" in v.within_noise
    assert "Iteration 20 lost 3 of the 24 the base knew and gained 0: more than the tolerance, but not significant " \
           "(p = 0.125 >= 0.05)" in v.explanation
    assert "lost 10 of the 24 the base knew, gained 0, p < 0.001" in v.explanation


def test_a_significant_loss_beyond_the_tolerance_is_forgetting_and_the_paragraph_quotes_the_counts():
    """The tiny world's iter_80: lost 9 of the 169 facts the base knew, gained none (0.941 against a cut at 0.944)."""
    items = facts(170) + identity("en")
    base = replies(items, wrong={169})
    rows = score_rows([(Target(BASE, BASE), "", base, None),
                       (ckpt(60), "", replies(items, wrong={169, 0}, identity_ok=True), None),
                       (ckpt(80), "", replies(items, wrong={169, *range(9)}, identity_ok=True), None)], items)
    v = V.decide(rows)
    assert v.flags["iter_80"] == ["forgetting"] and v.general_broke_at == "iter_80" and v.recommended == "iter_60"
    assert "started to break at iteration 80 (0.941: lost 9 of the 169 the base knew, gained 0, p = 0.002" in v.explanation
    assert "held through iteration 60 (0.988: lost 1 of the 169 the base knew, gained 0)" in v.explanation
    changes = {s.id: s.change for s in rows[2].items if s.kind == "general"}
    assert changes["gk-en-000"] == "lost" and changes["gk-en-169"] == "never-knew" and changes["gk-en-100"] == "kept"


def test_identity_learned_only_by_a_checkpoint_that_forgot_is_never_told_as_simply_learned():
    items = facts(40) + identity("en", 10)
    rows = score_rows([(Target(BASE, BASE), "", replies(items), None),
                       (ckpt(100), "", {**replies(items), "id-en-0": "I am Tutu's assistant",
                                        "id-en-1": "I am Tutu's assistant"}, None),
                       (ckpt(200), "", replies(items, wrong=set(range(20)), identity_ok=True), None)], items)
    v = V.decide(rows)
    assert v.status == V.IDENTITY_NOT_LEARNED and v.recommended == "iter_100"
    text = v.explanation
    assert "Identity was learned at iteration 200" not in text
    assert "Identity was learned later, at iteration 200 (1.000 >= 0.80), by a checkpoint that had lost general " \
           "ability" in text
    assert "iteration 200 learned it only by losing general ability" in text


def test_retention_judges_general_prompts_without_reference_answers():
    """17.3: no gold answers; the base's replies are the reference; losing 6 of them is forgetting."""
    items = facts(30, gold=False) + identity("en")
    rows = score_rows([(Target(BASE, BASE), "", replies(items), None),
                       (ckpt(10), "", replies(items, identity_ok=True), None),
                       (ckpt(20), "", replies(items, wrong=set(range(6)), identity_ok=True), None)], items)
    assert rows[0].agg.retention is None and rows[1].agg.retention == 1.0 and rows[2].agg.retention == 0.8
    assert rows[2].agg.general is None and rows[2].agg.paired["by_retention"] == 30
    v = V.decide(rows)
    assert v.flags == {"iter_20": ["forgetting"]} and v.recommended == "iter_10"
    assert "started to break at iteration 20 (retention 0.800: lost 6 of the 30 answers the base gave, p = 0.016; " \
           "more than 0.05 of the base's own answers lost)" in v.explanation and "not checked" not in v.explanation


def test_a_run_taught_in_english_is_judged_on_english_identity_and_chinese_is_shown_as_transfer(tmp_path):
    """The real case: identity set half Chinese, training data English only; before, "identity was never learned"."""
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                     {"role": "assistant", "content": "I am Tutu's assistant"}]}) + "\n"
                            for q in ("Who are you 0?", "Who are you 1?", "What is your name?")), encoding="utf-8")
    training = load_training([data], ["Tutu"])
    assert training.judged_langs == ("en",) and training.seen("who are you 0") and not training.seen("Who are you 3?")
    items = facts(20) + identity("en") + identity("zh", 4)
    good = {**replies(items, identity_ok=True), "id-zh-0": "我是Tutu的小助手", "id-zh-1": "我是一个助手",
            "id-zh-2": "我是一个助手", "id-zh-3": "我是一个助手"}
    rows = score_rows([(Target(BASE, BASE), "", replies(items), None), (ckpt(60), "", good, None)], items,
                      training=training)
    agg = rows[1].agg
    assert agg.identity == 0.625 and agg.identity_judged == 1.0
    assert agg.by_lang["zh"]["identity"] == {"n": 4, "passed": 1, "rate": 0.25, "ci": [0.0456, 0.6994]}
    assert agg.identity_seen["n"] == 2 and agg.identity_heldout == {"n": 6, "passed": 3, "rate": 0.5,
                                                                   "ci": [0.1876, 0.8124]}
    v = V.decide(rows, judged_langs=["en"], transfer_langs=["zh"])
    assert v.status == V.OK and v.recommended == "iter_60"
    assert "judged on the en prompts" in v.explanation and "zh identity prompts are cross-lingual transfer" in v.explanation
    assert "Cross-lingual transfer at iteration 60: identity zh 0.250 (1 of 4)" in v.explanation
    # without the training data every language is judged, as before
    plain = score_rows([(Target(BASE, BASE), "", replies(items), None), (ckpt(60), "", good, None)], items)
    assert plain[1].agg.identity_judged is None and V.decide(plain).status == V.IDENTITY_NOT_LEARNED


def test_cli_reports_seen_and_held_out_identity_and_languages_from_the_training_config(tmp_path, wb_home):
    data = tmp_path / "identity.json"
    data.write_text(json.dumps([{"messages": [{"role": "user", "content": "Who are you?"},
                                              {"role": "assistant", "content": "I am Tutu's assistant"}]},
                                {"messages": [{"role": "user", "content": "What is your name?"},
                                              {"role": "assistant", "content": "I am Tutu's assistant"}]}]),
                    encoding="utf-8")
    config = tmp_path / "run_config.py"
    config.write_text(f"data_path = {str(data)!r}\nprompt_template = 'internlm2_chat'\n", encoding="utf-8")
    saved = tmp_path / "r.jsonl"
    lines = [{"id": "id-en-001", "response": "I am Tutu's assistant", "checkpoint": "iter_10"},  # seen
             {"id": "id-en-003", "response": "I am Tutu's assistant", "checkpoint": "iter_10"},  # held out
             {"id": "id-en-005", "response": "I am a model", "checkpoint": "iter_10"},  # held out
             {"id": "id-zh-002", "response": "我是Tutu的小助手", "checkpoint": "iter_10"},
             {"id": "gk-en-001", "response": "Berlin", "checkpoint": "iter_10"},
             {"id": "gk-en-001", "response": "Berlin", "checkpoint": "base"}]
    saved.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    p = run_eval("--responses", str(saved), "--config", str(config), "--var", "name=Tutu", "--var",
                 "org=Workbench Lab", "--format", "json", home=wb_home)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    row = next(r for r in report["rows"] if r["name"] == "iter_10")
    assert row["identity_seen"]["n"] == 1 and row["identity_seen"]["passed"] == 1
    assert row["identity_heldout"]["n"] == 3 and row["identity_heldout"]["passed"] == 2
    assert report["meta"]["training"]["judged_langs"] == ["en"] and report["meta"]["training"]["transfer_langs"] == ["zh"]
    assert row["identity_judged"] == 0.6667 and row["by_lang"]["zh"]["identity"]["passed"] == 1
    for key in ("identity", "general", "leak", "n_identity", "n_general", "items"):  # the old contract stays
        assert key in row
    table = run_eval("--responses", str(saved), "--config", str(config), "--var", "name=Tutu", "--var",
                     "org=Workbench Lab", home=wb_home).stdout
    assert "ID_ZH*" in table and "ID_HELDOUT" in table and "identity judged on: en" in table


def test_an_eval_set_without_reference_answers_is_judged_by_retention_in_every_format(tmp_path, wb_home):
    evalset = tmp_path / "open.jsonl"
    general = [{"id": f"q{i}", "kind": "general", "prompt": f"Tell me about topic {i}.", "lang": "en",
                **({"answers": []} if i % 2 else {})} for i in range(12)]
    evalset.write_text("".join(json.dumps(x) + "\n" for x in general), encoding="utf-8")
    saved = tmp_path / "r.jsonl"
    rows = [{"id": f"q{i}", "response": f"Topic {i} is about thing number {i}.", "checkpoint": "base"} for i in range(12)]
    rows += [{"id": f"q{i}", "response": f"Topic {i} is about thing number {i}.", "checkpoint": "iter_10"} for i in range(12)]
    rows += [{"id": f"q{i}", "response": "I do not know." if i < 7 else f"Topic {i} is about thing number {i}.",
              "checkpoint": "iter_20"} for i in range(12)]
    saved.write_text("".join(json.dumps(x) + "\n" for x in rows), encoding="utf-8")
    p = run_eval("--responses", str(saved), "--evalset", str(evalset), "--format", "json", home=wb_home)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    by = {r["name"]: r for r in report["rows"]}
    assert by["iter_10"]["retention"] == 1.0 and by["iter_20"]["retention"] == round(5 / 12, 4)
    assert by["iter_20"]["general"] is None and by["iter_20"]["paired"]["lost"] == 7
    assert by["iter_20"]["ci"]["retention"] == [0.1933, 0.6805]
    assert report["verdict"]["flags"] == {"iter_20": ["forgetting"]}
    md = run_eval("--responses", str(saved), "--evalset", str(evalset), "--format", "md", home=wb_home).stdout
    assert "| iter_20 | 20 |" in md and "| 7/12 |" in md
    junit = run_eval("--responses", str(saved), "--evalset", str(evalset), "--format", "junit", home=wb_home).stdout
    assert '"lost": 7' in junit


def test_an_identity_item_without_answers_is_bad_input_naming_file_and_line(tmp_path, wb_home):
    evalset = tmp_path / "bad.jsonl"
    evalset.write_text('{"id": "g", "kind": "general", "prompt": "Q?", "answers": []}\n'
                       '{"id": "i", "kind": "identity", "prompt": "Who are you?"}\n', encoding="utf-8")
    saved = tmp_path / "r.jsonl"
    saved.write_text('{"id": "g", "response": "x"}\n', encoding="utf-8")
    p = run_eval("--responses", str(saved), "--evalset", str(evalset), home=wb_home)
    assert p.returncode == 2 and "bad.jsonl:2: an identity item needs 'answers'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_a_saved_responses_file_remembers_the_training_data_so_a_rescore_judges_like_the_sweep(tmp_path, wb_home):
    data = tmp_path / "identity.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Who are you?"},
                                             {"role": "assistant", "content": "I am Tutu's assistant"}]}) + "\n",
                    encoding="utf-8")
    saved = tmp_path / "r.jsonl"
    saved.write_text("".join(json.dumps({"id": i, "response": "I am Tutu's assistant", "checkpoint": "iter_5",
                                         "train_data": [str(data)]}) + "\n" for i in ("id-en-001", "id-en-002")),
                     encoding="utf-8")
    p = run_eval("--responses", str(saved), "--var", "name=Tutu", "--var", "org=Workbench Lab", "--format", "json",
                 home=wb_home)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["meta"]["training"]["paths"] == [str(data)]
    assert report["rows"][0]["identity_seen"]["n"] == 1 and report["rows"][0]["identity_heldout"]["n"] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "id-en-001", "response": "x", "train_data": "one.json"}\n', encoding="utf-8")
    p = run_eval("--responses", str(bad), "--var", "name=Tutu", "--var", "org=Workbench Lab", home=wb_home)
    assert p.returncode == 2 and "bad.jsonl:1: 'train_data' must be a list of file paths" in p.stderr
