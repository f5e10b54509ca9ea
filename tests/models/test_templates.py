"""Chat formats: XTuner's rendering, the resolution order, and the warning when chat differs from training."""

from __future__ import annotations

import json

import pytest

from workbench.errors import BadInput
from workbench.models.templates import (
    BUILTIN_TEMPLATES,
    get_format,
    resolve_format,
    template_names,
    tokenizer_format,
    training_format,
)
from workbench.paths import configs_dir

TINY_CONFIG = configs_dir() / "tiny_cpu_lora.py"


def test_render_matches_what_xtuner_trains_on():
    """The prompt text equals XTuner's template_map_fn output for the same conversation (system, two turns)."""
    from xtuner.dataset.map_fns import template_map_fn
    from xtuner.utils import PROMPT_TEMPLATE

    for name in ("internlm2_chat", "default", "qwen_chat", "llama3_chat"):
        example = {"conversation": [{"system": "Be brief.", "input": "hi", "output": "hello"},
                                    {"input": "who are you?", "output": "me"}]}
        turns = template_map_fn(example, PROMPT_TEMPLATE[name])["conversation"]
        tmpl = PROMPT_TEMPLATE[name]
        trained = turns[0]["input"] + turns[0]["output"] + turns[0]["sep"] + turns[1]["input"]
        fmt = get_format(name, system="Be brief.")
        rendered = fmt.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                               {"role": "user", "content": "who are you?"}])
        # xtuner adds the eos token (not text) after an answer when SUFFIX_AS_EOS is off; the text is the same
        assert rendered == trained, name
        assert fmt.suffix == (tmpl.get("SUFFIX") or "")


def test_builtin_copy_matches_xtuner_so_chat_works_without_xtuner():
    from xtuner.utils import PROMPT_TEMPLATE

    for name, entry in BUILTIN_TEMPLATES.items():
        assert dict(PROMPT_TEMPLATE[name]) == entry, name


def test_internlm2_stops_on_im_end():
    assert get_format("internlm2_chat").stop_words == ("<|im_end|>",)
    assert "<|im_end|>" in get_format("qwen_chat").stop_words


def test_unknown_template_names_the_flag():
    with pytest.raises(BadInput, match="--template 'nope'.*internlm2_chat"):
        get_format("nope")
    assert "internlm2_chat" in template_names()


def test_training_format_read_from_config_source_and_dumped_copies(tmp_path):
    assert training_format(TINY_CONFIG) == ("internlm2_chat", "")
    dumped = tmp_path / "work"
    dumped.mkdir()
    (dumped / "cfg.py").write_text(
        "SYSTEM = 'You are Tutu.'\nprompt_template = 'xtuner.utils.PROMPT_TEMPLATE.qwen_chat'\n", encoding="utf-8")
    assert training_format(dumped) == ("qwen_chat", "You are Tutu.")
    as_dict = tmp_path / "dict.py"
    as_dict.write_text("prompt_template = " + repr(dict(BUILTIN_TEMPLATES["llama3_chat"])) + "\nSYSTEM = ''\n",
                       encoding="utf-8")
    assert training_format(as_dict)[0] == "llama3_chat"
    alpaca = tmp_path / "alpaca.py"
    alpaca.write_text("from xtuner.utils import PROMPT_TEMPLATE, SYSTEM_TEMPLATE\n"
                      "prompt_template = PROMPT_TEMPLATE.default\nSYSTEM = SYSTEM_TEMPLATE.alpaca\n", encoding="utf-8")
    name, system = training_format(alpaca)
    assert name == "default" and system.startswith("Below is an instruction")


def test_resolution_order_flag_then_training_config_then_tokenizer(tiny_world):
    by_config = resolve_format(train_config=TINY_CONFIG, model_path=tiny_world)
    assert (by_config.format.name, by_config.source, by_config.warning) == ("internlm2_chat", "training config", None)

    by_flag = resolve_format("default", train_config=TINY_CONFIG, model_path=tiny_world)
    assert by_flag.source == "flag" and by_flag.format.name == "default"
    assert "differs from 'internlm2_chat'" in by_flag.warning
    msgs = [{"role": "user", "content": "你是谁"}]
    assert by_flag.format.render(msgs) != by_config.format.render(msgs)

    by_tokenizer = resolve_format(model_path=tiny_world)
    assert by_tokenizer.source == "tokenizer" and by_tokenizer.warning is None
    # the tiny world's own chat template writes the same prompt as XTuner's internlm2_chat (after the bos token)
    assert by_tokenizer.format.render(msgs) == "<s>" + by_config.format.render(msgs)


def test_system_prompt_other_than_training_warns():
    r = resolve_format(system="You are a pirate.", train_config=TINY_CONFIG)
    assert r.format.system == "You are a pirate." and "system prompt differs" in r.warning


def test_no_template_anywhere_falls_back_to_default_with_a_warning(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}), encoding="utf-8")
    assert tokenizer_format(tmp_path) is None
    r = resolve_format(model_path=tmp_path)
    assert r.format.name == "default" and r.source == "default" and "using XTuner's 'default'" in r.warning
