"""`workbench data replay` (the base's own replies as general data to mix in) and the real world's shipped data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.data import identity as ident
from workbench.data.replay import read_prompts, whole_sentences
from workbench.errors import BadInput
from workbench.evals.normalize import normalize
from workbench.paths import configs_dir, evalsets_dir, project_root

REPLAY_PROMPTS = configs_dir() / "data" / "replay_prompts_en.txt"


def _cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    env = None
    if home is not None:
        import os

        env = dict(os.environ, WORKBENCH_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          cwd=project_root(), timeout=600, env=env)


def test_replay_prompts_are_in_no_eval_set_so_retention_is_measured_on_what_was_not_trained():
    evaluated = {normalize(json.loads(line)["prompt"]) for f in evalsets_dir().glob("*.jsonl")
                 for line in f.read_text(encoding="utf-8").splitlines() if line.strip()}
    prompts = read_prompts(REPLAY_PROMPTS)
    assert len(prompts) >= 100
    assert [p for p in prompts if normalize(p) in evaluated] == []


def test_the_shipped_replay_is_whole_sentences_to_the_shipped_prompts():
    convs = json.loads((configs_dir() / "data" / "smollm2_replay.json").read_text(encoding="utf-8"))
    prompts = set(read_prompts(REPLAY_PROMPTS))
    assert len(convs) >= 90
    for c in convs:
        question, answer = (m["content"] for m in c["messages"])
        assert question in prompts
        assert whole_sentences(answer) == answer, answer


@pytest.mark.parametrize("name, mix", [("smollm2_identity_only.json", False), ("smollm2_identity_mix.json", True)])
def test_the_real_worlds_datasets_are_rebuilt_byte_for_byte_in_english_only(name, mix, tmp_path):
    shipped = configs_dir() / "data" / name
    recipe, raw = ident.read_recipe(shipped)
    assert (raw["name"], raw["org"], raw["langs"]) == ("Ada", "Workbench Lab", ["en"])
    assert (raw["mix"] is not None) == mix and raw["stats"]["by_lang"]["zh"] == 0
    out = tmp_path / name
    p = _cli("data", "identity", "--recipe", str(ident.recipe_path(shipped)), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == shipped.read_bytes()


def test_whole_sentences_cuts_after_the_last_complete_one():
    assert whole_sentences("The capital of Peru is Lima. It lies on the") == "The capital of Peru is Lima."
    assert whole_sentences("Mount Everest is 8,848.86 m high! Its") == "Mount Everest is 8,848.86 m high!"
    assert whole_sentences("a list of 3.5 things and") is None  # a decimal point is not a sentence end


@pytest.mark.parametrize("text, suffix, message", [
    ("", ".txt", "no prompts in it"),
    ("# only a comment\n", ".txt", "no prompts in it"),
    ('{"id": 1}\n', ".jsonl", ':1: expected a JSON object with a "prompt"'),
    (b"\xff\xfe\x00binary", ".txt", "not UTF-8 text"),
])
def test_bad_prompt_files_are_one_line_errors_naming_the_file(tmp_path, text, suffix, message):
    path = tmp_path / f"prompts{suffix}"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(BadInput, match=message):
        read_prompts(path)
    with pytest.raises(BadInput, match="no such file"):
        read_prompts(tmp_path / "missing.txt")


@pytest.mark.slow
def test_replay_writes_the_bases_own_greedy_replies(tiny_world, tmp_path):
    from workbench.models.base import GenerationSettings, get_backend
    from workbench.models.templates import get_format

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two facts the tiny world knows\nWhat is the capital of Germany?\n日本的首都是哪里？\n",
                       encoding="utf-8")
    out = tmp_path / "replay.json"
    p = _cli("data", "replay", "--model", str(tiny_world), "--prompts", str(prompts), "--template", "internlm2_chat",
             "--out", str(out), "--json", home=tmp_path / "home")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["conversations"] == 2
    convs = json.loads(out.read_text(encoding="utf-8"))
    with get_backend("transformers", tiny_world, device="cpu") as backend:
        expected = backend.generate([[c["messages"][0]] for c in convs], get_format("internlm2_chat"),
                                    GenerationSettings(max_new_tokens=64))
    assert [c["messages"][1]["content"] for c in convs] == [r.text.strip() for r in expected]
    assert [c["messages"][0]["content"] for c in convs] == ["What is the capital of Germany?", "日本的首都是哪里？"]


def test_replay_refuses_a_folder_that_is_no_model_before_loading_anything(tmp_path):
    p = _cli("data", "replay", "--model", str(tmp_path), "--prompts", str(REPLAY_PROMPTS), "--template", "qwen_chat",
             "--out", str(tmp_path / "r.json"))
    assert p.returncode == 2 and p.stderr.strip() == f"workbench: error: --model {tmp_path}: not a model folder (no config.json)"
    assert not (tmp_path / "r.json").exists()
