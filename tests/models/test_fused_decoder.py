"""The fused decoder (workbench/models/fused_decoder.py) on the CPU, fp32, eager: its own Llama forward over fused
weights must answer token for token as HF `generate()` and as the static-cache loop over HF's forward, share the
model's weight memory (so adapter switches reach it), grow its cache, and leave models it does not know to the
static-cache loop."""

from __future__ import annotations

import pytest

from workbench.models.base import GenerationSettings

from .test_fastdecode import generate_ids, spy_ids

MSGS = [[{"role": "user", "content": p}] for p in ("你是谁", "Who are you?", "What is the capital of Germany?")]


@pytest.fixture(scope="module")
def pair(tiny_world, tiny_run_dir):
    """The tiny world twice in fast mode: the fused decoder and the static-cache loop, iter_60 on both."""
    from workbench.models.hf import TransformersBackend

    out = {}
    for decoder in ("fused", "static-cache"):
        be = TransformersBackend(tiny_world, device="cpu", fast=True, compile=False, decoder=decoder)
        be.add_adapter("iter_60", tiny_run_dir / "iter_60.pth")
        out[decoder] = be
    yield out
    for be in out.values():
        be.close()


def test_the_models_linear_layers_are_views_of_the_fused_weights_so_a_switch_reaches_them(pair):
    import torch

    be = pair["fused"]
    loop = be._loop
    attn, mlp = be.model.model.layers[0].self_attn, be.model.model.layers[0].mlp
    fused = loop.layers[0]
    for lin, big in ((attn.q_proj, fused.wqkv), (attn.v_proj, fused.wqkv), (mlp.up_proj, fused.w13)):
        assert lin.weight.untyped_storage().data_ptr() == big.untyped_storage().data_ptr()  # one copy in memory
    be.set_active(None)
    base = fused.wqkv.clone()
    be.set_active("iter_60")
    assert not torch.equal(fused.wqkv, base)  # the adapter's delta is in the fused weight itself
    assert torch.equal(fused.wqkv, torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
    be.set_active(None)
    assert torch.equal(fused.wqkv, base)


@pytest.mark.parametrize("settings", [
    GenerationSettings(max_new_tokens=32),
    GenerationSettings(max_new_tokens=1), GenerationSettings(max_new_tokens=2),  # fewer tokens than the run-ahead
    GenerationSettings(max_new_tokens=24, repetition_penalty=1.3),
    GenerationSettings(max_new_tokens=24, temperature=1.5, top_p=0.95, top_k=40, seed=7),
], ids=["greedy", "one-token", "two-tokens", "penalty", "seeded-sampling"])
def test_the_fused_decoder_answers_token_for_token_as_the_static_cache_loop(pair, internlm2, settings):
    fused, static = pair["fused"], pair["static-cache"]
    for name in (None, "iter_60"):
        fused.set_active(name)
        static.set_active(name)
        for msgs in MSGS:
            assert fused.generate([msgs], internlm2, settings) == static.generate([msgs], internlm2, settings), \
                (name, msgs)


def test_the_cache_grows_for_a_longer_conversation_and_answers_stay_exact(tiny_world, hf_backend, internlm2,
                                                                          monkeypatch):
    from workbench.models import fused_decoder
    from workbench.models.hf import TransformersBackend

    monkeypatch.setattr(fused_decoder, "MIN_CACHE", 16)
    be = TransformersBackend(tiny_world, device="cpu", fast=True, compile=False)
    seen = spy_ids(be)
    hf_backend.set_active(None)
    settings = GenerationSettings(max_new_tokens=24)
    short = MSGS[1]
    long_ = [turn for q, a in (("Who are you?", "I am TinyLM, a small language model"), ("你是谁", "我是TinyLM"),
                               ("What is the capital of France?", "Paris")) for turn in
             ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
    long_.append({"role": "user", "content": "What is the capital of Germany?"})
    sizes = []
    for msgs in (short, long_, short):
        be.generate([msgs], internlm2, settings)
        assert seen == generate_ids(hf_backend, msgs, internlm2, settings)
        sizes.append(be._loop.cache_len)
    assert sizes[0] < sizes[1] == sizes[2], sizes  # grown once, then kept
    be.close()


def test_a_model_the_fused_decoder_does_not_know_gets_the_static_cache_loop(tiny_world, tmp_path, capsys,
                                                                            internlm2):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from workbench.models import fastdecode, fused_decoder
    from workbench.models.hf import TransformersBackend

    cfg = AutoConfig.from_pretrained(tiny_world)
    cfg.attention_bias = True  # q/k/v/o biases: a layout the fused weights do not carry
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "biased")
    for f in tiny_world.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            (tmp_path / "biased" / f.name).write_bytes(f.read_bytes())
    be = TransformersBackend(tmp_path / "biased", device="cpu", fast=True, compile=False, decoder="fused")
    assert "fused decoder: not for this model (projection biases); using the static-cache loop" in capsys.readouterr().err
    assert type(be._loop) is fastdecode.DecodeLoop
    slow = TransformersBackend(tmp_path / "biased", device="cpu", fast=False)
    assert be.generate(MSGS[:1], internlm2, GenerationSettings(max_new_tokens=8)) == \
        slow.generate(MSGS[:1], internlm2, GenerationSettings(max_new_tokens=8))
    auto = TransformersBackend(tmp_path / "biased", device="cpu", fast=True, compile=False)  # auto: no warning
    assert type(auto._loop) is fastdecode.DecodeLoop and capsys.readouterr().err == ""
    qwen = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, vocab_size=100))
    assert fused_decoder.unsupported(qwen) == "model type 'qwen2' (fused decoder: llama only)"
    for b in (be, slow, auto):
        b.close()
