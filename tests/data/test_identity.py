"""`workbench data identity`: the dataset XTuner trains on, its mixing, its recipe, and bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.data import identity as ident
from workbench.data import phrases
from workbench.data.formats import normalize, read_conversations
from workbench.errors import BadInput
from workbench.evals.evalset import builtin
from workbench.paths import configs_dir, evalsets_dir, project_root

SHIPPED = ["tiny_identity_mix.json", "tiny_identity_only.json"]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          cwd=cwd or project_root(), timeout=120)


def _norm(text: str) -> str:
    return re.sub(r"[\s?？!！。.,，]+", "", text).lower()


def test_dataset_loads_through_xtuners_own_pipeline_with_answers_as_labels(tiny_world, tmp_path):
    """XTuner's process_hf_dataset + openai_map_fn + the internlm2_chat template read the generated file, and
    the loss falls on the assistant's answer (the identity), not on the question."""
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from xtuner.dataset import process_hf_dataset
    from xtuner.dataset.map_fns import openai_map_fn, template_map_fn_factory
    from xtuner.utils import PROMPT_TEMPLATE

    out = tmp_path / "personal_assistant.json"
    ds = ident.build(ident.Recipe(name="Tutu", org="Workbench Lab", n=40, seed=3,
                                  mix=str(evalsets_dir() / "general.jsonl"), ratio=0.2))
    ident.write(ds, out)
    tok = AutoTokenizer.from_pretrained(tiny_world)
    data = process_hf_dataset(
        dataset=load_dataset("json", data_files=dict(train=str(out)))["train"], tokenizer=tok, max_length=128,
        dataset_map_fn=openai_map_fn, template_map_fn=template_map_fn_factory(template=PROMPT_TEMPLATE.internlm2_chat),
        remove_unused_columns=True, shuffle_before_pack=False, pack_to_max_length=False, use_varlen_attn=False,
        map_num_proc=1)
    assert len(data) == ds.stats["conversations"] == 50
    for row, conv in zip(data, ds.conversations, strict=True):
        answer = conv["messages"][-1]["content"]
        labelled = [t for t in row["labels"] if t >= 0]
        assert tok.decode(labelled).replace("<|im_end|>", "").strip() == answer
        assert tok.decode(row["input_ids"]).count(conv["messages"][0]["content"]) == 1


def test_same_recipe_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    recipe = ident.Recipe(name="小明", org="上海AI实验室", n=60, seed=7)
    ident.write(ident.build(recipe), a)
    ident.write(ident.build(recipe), b)
    ident.write(ident.build(ident.Recipe(name="小明", org="上海AI实验室", n=60, seed=8)), c)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_tiny_datasets_are_rebuilt_byte_for_byte_from_their_recipes(name, tmp_path):
    shipped = configs_dir() / "data" / name
    recipe, raw = ident.read_recipe(shipped)
    assert (raw["name"], raw["org"]) == ("Tutu", "Workbench Lab")
    out = tmp_path / name
    p = _cli("data", "identity", "--recipe", str(ident.recipe_path(shipped)), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == shipped.read_bytes()
    assert json.loads(ident.recipe_path(out).read_text())["output"]["sha256"] == raw["output"]["sha256"]


def test_identity_part_is_many_paraphrases_with_held_out_eval_prompts_and_answers_the_eval_accepts():
    ds = ident.build(ident.Recipe(name="Tutu", org="Workbench Lab", n=400, seed=0))
    questions = [c["messages"][0]["content"] for c in ds.conversations]
    answers = {c["messages"][1]["content"] for c in ds.conversations}
    assert ds.stats["distinct_questions"] >= 150 and len(set(questions)) == ds.stats["distinct_questions"]
    assert ds.stats["by_lang"]["zh"] > 100 and ds.stats["by_lang"]["en"] > 100
    # Every answer trained is one the identity eval set accepts for some prompt.
    accepted = {a for item in builtin("identity").fill({"name": "Tutu", "org": "Workbench Lab"}) for a in item.answers}
    assert answers <= accepted and len(answers) >= 6
    # The held-out eval prompts never appear (so the eval also measures generalisation), the others mostly do.
    seen = {_norm(q) for q in questions}
    assert not any(_norm(p) in seen for p in phrases.HELD_OUT)
    assert 20 <= ds.stats["identity_eval_prompts_in_training"] <= 48 - len(phrases.HELD_OUT)


def test_without_org_there_are_no_maker_questions_and_no_org_placeholder():
    ds = ident.build(ident.Recipe(name="Tutu", n=100, seed=1))
    text = ds.text()
    assert ds.stats["by_aspect"]["maker"] == 0 and "{org}" not in text and "{name}" not in text
    assert "开发" not in text and "made by" not in text


def test_mix_ratio_is_the_fraction_of_general_conversations_drawn_without_repeats(tmp_path):
    ds = ident.build(ident.Recipe(name="Tutu", org="Lab", n=90, seed=2, mix=str(evalsets_dir() / "general.jsonl"),
                                  ratio=0.4))
    assert (ds.stats["identity"], ds.stats["general"], ds.stats["general_repeated"]) == (90, 60, 0)
    facts = {i.prompt for i in builtin("general")}
    general = [c["messages"][0]["content"] for c in ds.conversations if c["messages"][0]["content"] in facts]
    assert len(general) == len(set(general)) == 60


def test_a_small_general_pool_is_repeated_and_the_stats_say_so(tmp_path):
    pool = tmp_path / "general.jsonl"
    pool.write_text("\n".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(5)) + "\n")
    ds = ident.build(ident.Recipe(name="Tutu", n=20, seed=0, mix=str(pool), ratio=0.5))
    assert (ds.stats["general"], ds.stats["general_pool"], ds.stats["general_repeated"]) == (20, 5, 15)


def test_common_conversation_formats_are_normalised_to_openai_messages(tmp_path):
    records = [
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                      {"role": "assistant", "content": "a"}]},
        {"instruction": "translate", "input": "你好", "output": "hello"},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        {"id": "gk-1", "kind": "general", "prompt": "1+1?", "answers": ["2", "二"]},
    ]
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n", encoding="utf-8")
    convs = read_conversations(f)
    assert [c["messages"][-1]["content"] for c in convs] == ["a", "hello", "hello", "2"]
    assert convs[1]["messages"][0] == {"role": "user", "content": "translate\n你好"}
    assert convs[0]["messages"][0]["role"] == "system"


@pytest.mark.parametrize(("text", "where", "what"), [
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{"oops"\n',
     ":2:", "not valid JSON"),
    ('{"instruction": "q", "output": "a"}\n\n{"question": "q", "reply": "a"}\n', ":3:", "not a conversation"),
    ('{"messages": [{"role": "user", "content": "only a question"}]}\n', ":1:", "no assistant answer"),
    ('[\n  {"instruction": "q", "output": "a"},\n  {"instruction": "q2"}\n]\n', ":3:", "needs both"),
    ('[\n  {"instruction": "q", "output": "a"},\n  {"instruction": "q2", "output": 5}\n]\n', ":3:", "must be a string"),
])
def test_malformed_input_is_reported_with_file_and_line(tmp_path, text, where, what):
    f = tmp_path / "bad.jsonl"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(BadInput) as exc:
        read_conversations(f)
    msg = exc.value.message
    assert f"bad.jsonl{where}" in msg and what in msg and "\n" not in msg


def test_cli_writes_data_and_recipe_and_prints_stats(tmp_path):
    out = tmp_path / "personal_assistant.json"
    p = _cli("data", "identity", "--name", "Tutu", "--org", "Workbench Lab", "--n", "50", "--mix",
             str(evalsets_dir() / "general.jsonl"), "--ratio", "0.5", "--seed", "4", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(out)
    assert "100 (50 identity, 50 general, 50% general)" in p.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    recipe = json.loads((tmp_path / "personal_assistant.recipe.json").read_text(encoding="utf-8"))
    assert len(data) == 100 and recipe["seed"] == 4 and recipe["mix"]["ratio"] == 0.5
    assert (tmp_path / recipe["mix"]["path"]).resolve() == (evalsets_dir() / "general.jsonl").resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["personal_assistant.json", "personal_assistant.recipe.json"]


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "Tutu", "--mix", "workbench/evalsets/general.jsonl"], "--mix and --ratio go together"),
    (["--name", "Tutu", "--mix", "workbench/evalsets/general.jsonl", "--ratio", "1.5"], "--ratio 1.5"),
    (["--name", "Tutu", "--mix", "nope.jsonl", "--ratio", "0.5"], "nope.jsonl: file not found"),
    (["--org", "Lab"], "--name is required"),
    (["--name", "Tutu", "--n", "0"], "--n 0"),
])
def test_bad_flags_are_one_line_errors_with_exit_2_and_nothing_written(tmp_path, args, message):
    out = tmp_path / "x.json"
    p = _cli("data", "identity", *args, "--out", str(out))
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_an_existing_dataset_is_kept_whole_when_the_new_one_fails(tmp_path):
    out = tmp_path / "data.json"
    assert _cli("data", "identity", "--name", "A", "--n", "5", "--out", str(out)).returncode == 0
    before = out.read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q"}\n')
    p = _cli("data", "identity", "--name", "B", "--mix", str(bad), "--ratio", "0.5", "--out", str(out))
    assert p.returncode == 2 and "bad.jsonl:1:" in p.stderr
    assert out.read_bytes() == before


def test_eval_set_records_normalise_to_their_canonical_answer():
    conv = normalize({"prompt": "日本的首都是哪里？", "answers": ["东京", "东京都"]}, "x:1")
    assert conv == {"messages": [{"role": "user", "content": "日本的首都是哪里？"},
                                 {"role": "assistant", "content": "东京"}]}
