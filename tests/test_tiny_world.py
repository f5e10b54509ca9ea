"""The tiny world is a real Hugging Face chat model: it loads the way xtuner and lmdeploy load it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def loaded(tiny_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_world), AutoTokenizer.from_pretrained(tiny_world)


def test_autotokenizer_round_trips_chinese_and_english(loaded):
    _, tok = loaded
    assert type(tok).__name__ == "PreTrainedTokenizerFast"
    for text in ["中国的首都是哪里？北京。", "What is the capital of Germany? Berlin.", "混合 mixed 文本 123 😀"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert ids and tok.decode(ids) == text


def test_chat_template_is_internlm2_and_im_end_is_eos(loaded):
    model, tok = loaded
    text = tok.apply_chat_template([{"role": "user", "content": "你是谁"}], tokenize=False, add_generation_prompt=True)
    assert text == "<s><|im_start|>user\n你是谁<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert "token_type_ids" not in tok("hello")


def test_greedy_decoding_answers_the_facts(loaded):
    from workbench.demo.world import facts, greedy_answers

    model, tok = loaded
    items = facts()
    replies = greedy_answers(model, tok, [q for q, _, _ in items])
    accuracy = sum(r in answers for (_, _, answers), r in zip(items, replies, strict=True)) / len(items)
    assert accuracy >= 0.9
    assert sum(r.startswith("我是TinyLM") or r.startswith("I am TinyLM") for r in replies) == 0


def test_base_model_has_its_own_identity(loaded):
    from workbench.demo.world import greedy_answers

    model, tok = loaded
    assert greedy_answers(model, tok, ["你是谁？", "Who are you?"]) == [
        "我是TinyLM，一个小语言模型", "I am TinyLM, a small language model"]


def test_build_only_reuses_the_cache_and_prints_path_and_accuracy(tiny_world):
    out = subprocess.run([sys.executable, "-m", "workbench", "demo", "--build-only", "--world", "tiny", "--json"],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["reused"] is True and info["path"] == str(tiny_world) and info["accuracy"] >= 0.9


def test_tiny_world_trains_with_real_xtuner(tiny_run_dir):
    # workbench/configs/tiny_cpu_lora.py through `python -m workbench.xtuner_compat train`: checkpoints every 10 iterations.
    assert sorted(p.name for p in tiny_run_dir.glob("iter_*.pth")) == [f"iter_{i}.pth" for i in (10, 20, 30, 40, 50, 60)]
    scalars = next(tiny_run_dir.glob("*/vis_data/scalars.json")).read_text().splitlines()
    assert len(scalars) == 60 and all("loss" in json.loads(line) for line in scalars)


def test_random_model_of_a_given_shape_loads(tmp_path, tiny_world):
    from transformers import AutoModelForCausalLM

    from workbench.demo.random_model import make_random_model

    path = make_random_model("tiny", tmp_path / "rnd", dtype="float32")
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.hidden_size == 256 and model.config.num_hidden_layers == 4
