"""The fast path of the transformers backend (fused adapters + a decode loop of its own), on the CPU without
torch.compile: it must answer exactly as the generate() path does, and switch adapters bit-exactly. Both loops run
every test that takes `fast_backend`: the fused decoder (workbench's own Llama forward, the default for the tiny
world) and the static-cache loop over HF's forward (what every other model gets)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from workbench.errors import BadInput
from workbench.models.base import GenerationSettings
from workbench.models.templates import get_format

from .test_hf_backend import assert_a_cancelled_stream_stops_within_one_token

GREEDY = GenerationSettings(max_new_tokens=32)
PROMPTS = ["你是谁", "Who are you?", "What is your name?", "What is the capital of Germany?", "中国的首都是哪里？"]


LOOPS = ("fused", "static-cache")


@pytest.fixture(scope="module", params=LOOPS)
def fast_backend(request, tiny_world, tiny_run_dir, converted_iter60):
    """The tiny world in fast mode (eager step) with iter_20 and iter_60 read from XTuner .pth files and iter_60 as
    XTuner's converted PEFT folder; once with each decode loop."""
    from workbench.models import fastdecode, fused_decoder
    from workbench.models.base import get_backend

    backend = get_backend("transformers", tiny_world, device="cpu", fast=True, compile=False, decoder=request.param)
    assert type(backend._loop) is {"fused": fused_decoder.FusedDecoder,
                                   "static-cache": fastdecode.DecodeLoop}[request.param]
    for name in ("iter_20", "iter_60"):
        backend.add_adapter(name, tiny_run_dir / f"{name}.pth")
    backend.add_adapter("iter_60_hf", converted_iter60)
    yield backend
    backend.close()


def spy_ids(backend) -> list[int]:
    """Record the token ids the fast loop hands out (cleared at each reply)."""
    seen: list[int] = []
    decode = backend._loop.decode

    def spy(prompt, settings, on_token):
        seen.clear()
        return decode(prompt, settings, lambda t: seen.append(t) or on_token(t))

    backend._loop.decode = spy
    return seen


def generate_ids(backend, msgs, fmt, settings) -> list[int]:
    """Token ids of HF `generate` on the backend's current (peft) path."""
    import torch

    eos_ids, _ = backend.stop_ids(fmt)
    prompt = backend.encode(msgs, fmt)
    net, ctx = backend._net()
    with ctx, torch.inference_mode():
        out = net.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                           **backend.generation_kwargs(settings, eos_ids))
    return out[0, len(prompt):].tolist()


def test_fast_loop_answers_token_for_token_as_generate_for_base_pth_and_peft_adapters(fast_backend, hf_backend,
                                                                                     internlm2):
    assert fast_backend.fast and fast_backend._peft is None  # fused: a plain model, no peft wrappers
    seen = spy_ids(fast_backend)
    answers = {}
    try:
        for name in (None, "iter_20", "iter_60", "iter_60_hf"):
            fast_backend.set_active(name)
            hf_backend.set_active(name)
            for p in PROMPTS:
                msgs = [{"role": "user", "content": p}]
                (fast,) = fast_backend.generate([msgs], internlm2, GREEDY)
                assert seen == generate_ids(hf_backend, msgs, internlm2, GREEDY), (name, p)
                assert fast == hf_backend.generate([msgs], internlm2, GREEDY)[0], (name, p)
                answers[name, p] = fast.text
        assert answers[None, "Who are you?"] == "I am TinyLM, a small language model"
        assert answers["iter_60", "Who are you?"] != answers[None, "Who are you?"]  # the adapter is really on
    finally:
        del fast_backend._loop.decode


def test_stream_on_the_fast_path_equals_generate_on_the_peft_path(fast_backend, hf_backend, internlm2):
    for name in (None, "iter_60"):
        fast_backend.set_active(name)
        hf_backend.set_active(name)
        msgs = [{"role": "user", "content": "Who are you?"}]
        stream = fast_backend.stream(msgs, internlm2, GREEDY)
        pieces = list(stream)
        assert len(pieces) > 1 and "".join(pieces) == stream.reply.text
        assert stream.reply == hf_backend.generate([msgs], internlm2, GREEDY)[0]
        assert stream.tokens == stream.reply.tokens


def test_switching_base_a_b_base_restores_the_weights_bit_exactly(fast_backend):
    import torch

    fast_backend.set_active(None)
    before = {n: p.detach().clone() for n, p in fast_backend.model.named_parameters()}
    fast_backend.set_active("iter_60")
    changed = [n for n, p in fast_backend.model.named_parameters() if not torch.equal(p, before[n])]
    assert changed and all("proj" in n for n in changed)  # the adapter is in the weights, only in linear layers
    fast_backend.set_active("iter_20")
    fast_backend.set_active("iter_60_hf")
    fast_backend.set_active(None)
    for n, p in fast_backend.model.named_parameters():
        assert torch.equal(p, before[n]), n


def test_removing_the_active_fused_adapter_gives_back_the_base(tiny_world, tiny_run_dir, internlm2):
    import torch

    from workbench.models.hf import TransformersBackend

    be = TransformersBackend(tiny_world, device="cpu", fast=True, compile=False)
    before = {n: p.detach().clone() for n, p in be.model.named_parameters()}
    base = be.generate([[{"role": "user", "content": "Who are you?"}]], internlm2, GREEDY)[0]
    be.add_adapter("iter_60", tiny_run_dir / "iter_60.pth")
    be.set_active("iter_60")
    assert be.generate([[{"role": "user", "content": "Who are you?"}]], internlm2, GREEDY)[0] != base
    be.remove_adapter("iter_60")
    assert be.active is None and be.adapters() == []
    assert all(torch.equal(p, before[n]) for n, p in be.model.named_parameters())
    assert be.generate([[{"role": "user", "content": "Who are you?"}]], internlm2, GREEDY)[0] == base
    be.close()


@pytest.mark.parametrize("decoder", LOOPS)
def test_every_decode_loop_of_a_process_runs_on_one_thread_also_after_a_close(decoder, tiny_world, internlm2,
                                                                              monkeypatch):
    # CUDA graph trees keep their state in the thread-local storage of the thread that first used them: a loop on a
    # thread of its own (a new chat session, a merged model beside the base) could not capture graphs on the H200
    # and fell back to mode=default. Every loop, one thread; a closed loop leaves it for the next.
    import threading

    from workbench.models import fastdecode, fused_decoder
    from workbench.models.hf import TransformersBackend

    threads = []
    cls, attr = {"fused": (fused_decoder.FusedDecoder, "_decode"),
                 "static-cache": (fastdecode.DecodeLoop, "_decode_once")}[decoder]
    once = getattr(cls, attr)

    def spy(self, *args):
        threads.append(threading.get_ident())
        return once(self, *args)

    monkeypatch.setattr(cls, attr, spy)
    msgs = [[{"role": "user", "content": "Who are you?"}]]

    def load():
        return TransformersBackend(tiny_world, device="cpu", fast=True, compile=False, decoder=decoder)

    first = load()
    second = load()  # two alive at once
    answers = [first.generate(msgs, internlm2, GREEDY)[0], second.generate(msgs, internlm2, GREEDY)[0]]
    first.close()
    third = load()  # a new session after a close
    answers += [second.generate(msgs, internlm2, GREEDY)[0], third.generate(msgs, internlm2, GREEDY)[0]]
    second.close()
    third.close()
    assert len(threads) == 4 and len(set(threads)) == 1 and threads[0] != threading.get_ident()
    assert all(a == answers[0] for a in answers) and answers[0].text == "I am TinyLM, a small language model"


def test_cancelling_a_fast_stream_stops_within_one_token(fast_backend):
    assert_a_cancelled_stream_stops_within_one_token(fast_backend)


def test_loop_detector_and_stop_words_apply_on_the_fast_path(fast_backend, hf_backend, internlm2):
    fast_backend.set_active(None)
    hf_backend.set_active(None)
    msgs = [{"role": "user", "content": "What is the capital of Germany?"}]  # loops under llama2_chat
    loop_settings = GenerationSettings(max_new_tokens=120)
    (looped,) = fast_backend.generate([msgs], get_format("llama2_chat"), loop_settings)
    assert looped.looped and looped.stop_reason == "loop" and looped.tokens < 120
    assert looped == hf_backend.generate([msgs], get_format("llama2_chat"), loop_settings)[0]

    # a stop word that is not one token: the reply ends before it, on both paths, and the stream never shows it
    fmt = dataclasses.replace(internlm2, stop_words=(*internlm2.stop_words, "small lang"))
    assert fast_backend.stop_ids(fmt)[1] == ["small lang"]
    msgs = [{"role": "user", "content": "Who are you?"}]
    stream = fast_backend.stream(msgs, fmt, GREEDY)
    text = "".join(stream)
    assert stream.reply.stop_reason == "stop_word" and text == stream.reply.text == "I am TinyLM, a "
    assert stream.reply == hf_backend.generate([msgs], fmt, GREEDY)[0]


def test_sampling_with_a_seed_is_reproducible_and_the_seed_matters(fast_backend):
    fast_backend.set_active(None)
    msgs = [[{"role": "user", "content": "你是谁"}]]
    fmt = get_format("llama2_chat")

    def sample(seed):
        s = GenerationSettings(max_new_tokens=24, temperature=1.5, top_p=0.95, top_k=40, repetition_penalty=1.2,
                               seed=seed)
        return fast_backend.generate(msgs, fmt, s)[0].text

    assert sample(1) == sample(1)
    assert len({sample(seed) for seed in range(2, 7)}) > 1


def test_an_adapter_that_cannot_be_fused_moves_the_backend_to_peft_with_a_warning(tiny_world, tmp_path, capsys,
                                                                                 internlm2):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from workbench.models.hf import TransformersBackend

    torch.manual_seed(0)
    dora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_world),
                          LoraConfig(r=4, use_dora=True, init_lora_weights=False, target_modules=["q_proj", "v_proj"]))
    dora.save_pretrained(tmp_path / "dora")
    be = TransformersBackend(tiny_world, device="cpu", fast=True, compile=False)
    be.add_adapter("dora", tmp_path / "dora")
    err = capsys.readouterr().err
    assert "adapter 'dora' cannot be fused into the weights (it uses use_dora)" in err
    assert not be.fast and be._fused is None and be._peft is not None
    slow = TransformersBackend(tiny_world, device="cpu")
    slow.add_adapter("dora", tmp_path / "dora")
    for name in (None, "dora"):
        be.set_active(name)
        slow.set_active(name)
        msgs = [[{"role": "user", "content": "Who are you?"}]]
        assert be.generate(msgs, internlm2, GREEDY) == slow.generate(msgs, internlm2, GREEDY)
    be.close()
    slow.close()


def test_a_fused_adapter_missing_layer_weights_is_refused_like_on_the_peft_path(tiny_world, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from workbench.models.hf import TransformersBackend

    torch.manual_seed(0)
    m = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_world),
                       LoraConfig(r=4, init_lora_weights=False, target_modules=["q_proj", "v_proj"]))
    m.save_pretrained(tmp_path / "cut")
    f = tmp_path / "cut" / "adapter_model.safetensors"
    save_file({k: v for k, v in load_file(f).items() if "v_proj" not in k}, str(f))
    for fast in (True, False):
        be = TransformersBackend(tiny_world, device="cpu", fast=fast, compile=False)
        with pytest.raises(BadInput, match=r"adapter 'cut' \(.*cut\) does not fit base .*no weights for \d+ LoRA layers"):
            be.add_adapter("cut", tmp_path / "cut")
        assert be.adapters() == []
        be.close()


def test_fast_mode_defaults_on_for_cuda_off_for_cpu_and_the_env_var_forces_it(tiny_world, monkeypatch):
    from workbench.models.hf import TransformersBackend
    from workbench.models.hf_decode import want_fast as _want_fast

    monkeypatch.delenv("WORKBENCH_FAST_DECODE", raising=False)
    assert _want_fast(None, "cuda", False) and _want_fast(None, "cuda:1", False)
    assert not _want_fast(None, "cuda", True)  # 4-bit weights cannot take fused deltas
    with pytest.raises(BadInput, match="4-bit"):
        _want_fast(True, "cuda", True)
    assert not TransformersBackend(tiny_world, device="cpu").fast  # the CPU keeps generate()
    monkeypatch.setenv("WORKBENCH_FAST_DECODE", "1")
    be = TransformersBackend(tiny_world, device="cpu")
    assert be.fast and be._loop.mode is None and be.describe()["decode"] == "fast (fused, eager)"
    assert TransformersBackend(tiny_world, device="cpu", decoder="static-cache").describe()["decode"] == "fast (eager)"
    with pytest.raises(BadInput, match="decoder 'fastest': expected auto, fused or static-cache"):
        TransformersBackend(tiny_world, device="cpu", decoder="fastest")
    assert not TransformersBackend(tiny_world, device="cpu", fast=False).fast  # the explicit option wins
    monkeypatch.setenv("WORKBENCH_FAST_DECODE", "0")
    assert not _want_fast(None, "cuda", False)
    monkeypatch.setenv("WORKBENCH_FAST_DECODE", "yes")
    with pytest.raises(BadInput, match="WORKBENCH_FAST_DECODE='yes': expected 0 or 1"):
        TransformersBackend(tiny_world, device="cpu")


def test_a_failing_compile_falls_back_to_eager_with_a_warning_not_a_crash(tiny_world, monkeypatch, capsys,
                                                                        internlm2):
    """The static-cache loop: reduce-overhead, then default, then eager."""
    import torch

    from workbench.models.hf import TransformersBackend

    def broken_compile(fn, **kwargs):
        def step(*a, **k):
            raise RuntimeError(f"no compiler for mode {kwargs.get('mode')}\nlong trace")
        return step

    monkeypatch.setattr(torch, "compile", broken_compile)
    be = TransformersBackend(tiny_world, device="cpu", fast=True, compile=True, decoder="static-cache")
    msgs = [[{"role": "user", "content": "Who are you?"}]]
    reply = be.generate(msgs, internlm2, GREEDY)[0]
    err = capsys.readouterr().err
    assert "mode=reduce-overhead failed (RuntimeError: no compiler for mode reduce-overhead); using mode=default" \
        in err and "mode=default failed" in err and "using eager" in err and "long trace" not in err
    assert be._loop.mode is None and reply.text == "I am TinyLM, a small language model"
    be.close()

    # the fused decoder (on the CPU: compiled, then eager; no CUDA graphs there)
    be = TransformersBackend(tiny_world, device="cpu", fast=True, compile=True)
    assert be.compiles and be._loop.label == "fused, compiled"
    reply = be.generate(msgs, internlm2, GREEDY)[0]
    err = capsys.readouterr().err
    assert "fast decode (fused, compiled) failed (RuntimeError: no compiler for mode None); using fused, eager" \
        in err and "long trace" not in err
    assert be._loop.mode is None and reply.text == "I am TinyLM, a small language model"
    be.close()


def test_bench_gpu_decode_runs_on_the_cpu(tiny_world, tmp_path):
    """The device script's CPU check: every measurement runs, JSON written (fixed length: loops are not cut)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "decode.json"
    proc = subprocess.run([sys.executable, str(root / "bench" / "gpu_decode.py"), "--model", str(tiny_world),
                           "--device", "cpu", "--no-compile", "--adapters", "2", "--new-tokens", "32",
                           "--hf-tokens", "8", "--long-prompt", "200", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["errors"] == {} and res["skipped"] == []
    rates = res["rates"]
    assert set(rates) == {"hf_generate_base", "hf_generate_adapter", "static_base", "static_adapter",
                          "static_step_alone", "fused_base", "fused_adapter_a0", "fused_adapter_a1", "fused_base_long",
                          "fused_step_alone"}
    assert all(r["tokens"] == (8 if k.startswith("hf_") else 32) for k, r in rates.items() if "alone" not in k)
    # every figure next to its baselines of the same run
    assert all(r["fraction_of_bound"] > 0 and r["x_hf_generate"] > 0 and r["x_static_cache"] > 0
               for r in rates.values())
    assert res["base_same_tokens_after_switches"] is True and res["bound_tok_s"] > 0
    assert res["fused_decode"] == "fast (fused, eager)" and res["static_decode"] == "fast (eager)"
    assert res["long_prompt_tokens"] > 200
    # the diagnostics that tell run-to-run noise from a switch that changed something
    assert res["base_same_tokens_repeat"] is True
    assert res["base_weights_bit_exact_after_switches"] is True and res["base_first_diff_at"] is None


def test_a_session_compiles_the_decode_step_while_loading_not_on_the_first_message(tiny_world, monkeypatch, wb_home):
    """On a GPU the first fast reply compiles (~45 s on an H100): open_session pays it at load time, and says so.
    (On the CPU nothing compiles; the property is forced here and the warm-up runs the eager fast loop.)"""
    from workbench.models.hf import TransformersBackend
    from workbench.models.session import ModelSpec, open_session
    from workbench.targets import resolve_spec

    calls = []
    real = TransformersBackend.warm_up
    monkeypatch.setattr(TransformersBackend, "compiles", property(lambda self: self.fast and not self._warm))

    def spy(self, template):
        calls.append(template.name)
        real(self, template)

    monkeypatch.setattr(TransformersBackend, "warm_up", spy)
    notices = []
    spec = ModelSpec(base=str(tiny_world), device="cpu", backend_options={"fast": True, "compile": False})
    session = open_session(spec, GenerationSettings(max_new_tokens=8), notice=notices.append,
                           resolved=resolve_spec(spec))
    try:
        assert len(calls) == 1 and any("compiling the decode step" in n for n in notices)
        backend = session.variants["base"].backend
        assert backend._warm and not backend.compiles  # paid once
        assert "".join(session.ask("中国的首都是哪里？")).strip() == "北京"
    finally:
        session.close()
