"""The transformers backend on the tiny world, with adapters from a real tiny XTuner run."""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from workbench.errors import BadInput
from workbench.models.base import GenerationSettings
from workbench.models.templates import get_format

GREEDY = GenerationSettings(max_new_tokens=32)
PROMPTS = ["你是谁", "Who are you?", "请你介绍一下你自己", "What is your name?", "Introduce yourself.",
           "你叫什么名字？", "What is the capital of Germany?", "中国的首都是哪里？"]


def answers(backend, name, fmt, prompts=PROMPTS):
    backend.set_active(name)
    return [r.text for r in backend.generate([[{"role": "user", "content": p}] for p in prompts], fmt, GREEDY)]


def test_base_and_two_adapters_answer_differently_and_switching_reproduces_each(hf_backend, internlm2):
    ckpts = [n for n in hf_backend.adapters() if n != "iter_60_hf"]
    assert ckpts[-1] == "iter_60" and len(ckpts) >= 3
    first = {n: answers(hf_backend, n, internlm2) for n in [None, *ckpts]}
    assert first[None][1] == "I am TinyLM, a small language model"  # the base's own identity
    # the identity is being learned: some earlier checkpoint already answers differently from the base,
    # and the last one differently again
    early = next(n for n in ckpts if first[n] != first[None])
    assert early != "iter_60" and first[early] != first["iter_60"] != first[None]
    for name in ("iter_60", None, early, "iter_60", None, early):  # back and forth, no reload
        assert answers(hf_backend, name, internlm2) == first[name], name


def test_pth_checkpoint_read_directly_equals_xtuner_converted_adapter(hf_backend, internlm2):
    import torch

    peft_model = hf_backend._peft
    for key, value in peft_model.state_dict().items():
        if ".lora_A.iter_60." in key or ".lora_B.iter_60." in key:
            converted = peft_model.state_dict()[key.replace(".iter_60.", ".iter_60_hf.")]
            assert torch.equal(value, converted), key
    assert answers(hf_backend, "iter_60", internlm2) == answers(hf_backend, "iter_60_hf", internlm2)


def test_im_end_stops_generation(hf_backend, internlm2):
    eos_ids, texts = hf_backend.stop_ids(internlm2)
    assert hf_backend.tokenizer.convert_tokens_to_ids("<|im_end|>") in eos_ids and texts == []
    hf_backend.set_active(None)
    (reply,) = hf_backend.generate([[{"role": "user", "content": "Who are you?"}]], internlm2,
                                   GenerationSettings(max_new_tokens=100))
    assert reply.stop_reason == "eos" and reply.tokens < 20
    assert reply.text == "I am TinyLM, a small language model"


def test_an_explicit_other_template_changes_the_prompt_and_the_answer(hf_backend, internlm2):
    msgs = [{"role": "user", "content": "Who are you?"}]
    default = get_format("default")
    assert hf_backend.encode(msgs, default) != hf_backend.encode(msgs, internlm2)
    assert answers(hf_backend, None, default, ["Who are you?"]) != answers(hf_backend, None, internlm2,
                                                                          ["Who are you?"])


def test_prompt_tokens_equal_xtuner_training_encoding(hf_backend):
    """Multi-turn, with the default template (eos + bos between turns): token for token what encode_fn makes."""
    from xtuner.dataset.map_fns import template_map_fn
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    for name in ("default", "internlm2_chat"):
        example = {"conversation": [{"system": "Be brief.", "input": "hi", "output": "hello"},
                                    {"input": "who are you?", "output": "me"}]}
        trained = encode_fn(template_map_fn(example, PROMPT_TEMPLATE[name]), hf_backend.tokenizer, 512)["input_ids"]
        msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "who are you?"}, {"role": "assistant", "content": "me"}]
        assert hf_backend.encode(msgs, get_format(name, "Be brief.")) == trained, name


def test_batched_left_padded_generation_equals_one_by_one(hf_backend, internlm2):
    hf_backend.set_active("iter_60")
    convs = [[{"role": "user", "content": p}] for p in PROMPTS]
    batched = [r.text for r in hf_backend.generate(convs, internlm2, GREEDY)]
    single = [hf_backend.generate([c], internlm2, GREEDY)[0].text for c in convs]
    assert batched == single


def test_stream_yields_the_same_answer_as_generate(hf_backend, internlm2):
    hf_backend.set_active("iter_60")
    msgs = [{"role": "user", "content": "Who are you?"}]
    stream = hf_backend.stream(msgs, internlm2, GREEDY)
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == stream.reply.text
    assert stream.reply == hf_backend.generate([msgs], internlm2, GREEDY)[0]


def assert_a_cancelled_stream_stops_within_one_token(backend):
    # under a template it was not trained on, the base loops on this prompt ("Darwin Darwin Darwin ...") for 24 tokens
    fmt, msgs = get_format("llama2_chat"), [{"role": "user", "content": "What is the capital of Germany?"}]
    backend.set_active(None)
    settings = GenerationSettings(max_new_tokens=100)
    uncancelled = backend.stream(msgs, fmt, settings).wait()
    assert uncancelled.tokens > 20

    cancel = threading.Event()
    stream = backend.stream(msgs, fmt, settings, cancel=cancel)
    it = iter(stream)
    next(it), next(it)
    cancel.set()
    at_cancel = stream.tokens
    rest = list(it)
    assert stream.reply.stop_reason == "cancelled"
    assert stream.tokens <= at_cancel + 1 and stream.reply.tokens <= at_cancel + 1
    assert at_cancel + 1 < uncancelled.tokens and len(rest) <= 2


def test_cancelling_a_stream_stops_generation_within_one_token_step(hf_backend):
    assert_a_cancelled_stream_stops_within_one_token(hf_backend)


def test_a_looping_reply_is_stopped_and_marked(hf_backend):
    hf_backend.set_active(None)
    (reply,) = hf_backend.generate([[{"role": "user", "content": "What is the capital of Germany?"}]],
                                   get_format("llama2_chat"),
                                   GenerationSettings(max_new_tokens=120))
    assert reply.looped and reply.stop_reason == "loop" and reply.tokens < 120


def test_adapter_of_another_shape_is_refused_naming_both(hf_backend, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    other = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=4, num_attention_heads=4))
    peft = get_peft_model(other, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft.save_pretrained(tmp_path / "small")
    with pytest.raises(BadInput, match=r"adapter 'small' \(.*small\) does not fit base .*q_proj.*64"):
        hf_backend.add_adapter("small", tmp_path / "small")

    cfg = json.loads((tmp_path / "small" / "adapter_config.json").read_text())
    cfg["target_modules"] = ["wqkv", "wo"]  # InternLM2's names: not in a Llama
    shutil.copytree(tmp_path / "small", tmp_path / "internlm")
    (tmp_path / "internlm" / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadInput, match=r"does not fit base .*none of its target modules \['wo', 'wqkv'\]"):
        hf_backend.add_adapter("internlm", tmp_path / "internlm")
    assert "small" not in hf_backend.adapters() and "internlm" not in hf_backend.adapters()


def test_model_code_in_the_folder_is_refused_unless_trusted(tiny_world, tmp_path):
    from workbench.models.hf import TransformersBackend

    folder = tmp_path / "remote"
    shutil.copytree(tiny_world, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadInput, match="ships its own model code.*--trust-remote-code"):
        TransformersBackend(folder)


def test_four_bit_needs_cuda(tiny_world):
    from workbench.models.hf import TransformersBackend

    with pytest.raises(BadInput, match="--load-in-4bit needs a CUDA GPU"):
        TransformersBackend(tiny_world, device="cpu", load_in_4bit=True)
