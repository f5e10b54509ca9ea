"""`workbench inspect`: the settings of an XTuner config and the traps of the seeds, without training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.data import checks as C
from workbench.data.checks import Hardware, is_identity_question
from workbench.data.inspect import inspect_config
from workbench.errors import BadInput
from workbench.evals.evalset import builtin
from workbench.paths import configs_dir, project_root
from workbench.xtuner.config import parse_cfg_options

FIXTURES = Path(__file__).parent / "fixtures"
SEED = FIXTURES / "seed000_internlm2_1_8b_qlora_alpaca_e3_copy.py"
A100 = Hardware(cuda=True, gpus=1, bf16=True, name="NVIDIA A100-SXM4-80GB")
T4 = Hardware(cuda=True, gpus=1, bf16=False, name="Tesla T4")
CPU = Hardware.cpu()
INTERNLM2_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TINY = ["tiny_cpu_lora.py", "tiny_cpu_overfit.py"]
REAL = ["smollm2_cpu_identity.py", "smollm2_cpu_mixed.py"]
BIG = sorted(p.name for p in configs_dir().glob("internlm2_chat_1_8b_*.py"))


@pytest.fixture
def chat_model(tmp_path) -> Path:
    """A model folder as the tutorial copied it: InternLM2-Chat-1.8B's tokenizer config with its chat template."""
    folder = tmp_path / "ft" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "internlm2", "architectures": ["InternLM2ForCausalLM"]}))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "chat_template": INTERNLM2_CHAT_TEMPLATE}))
    return folder


def test_the_seeds_config_reports_every_trap_it_fell_into(chat_model):
    """Seed 000: accumulative_counts 16 on one GPU, save_total_limit 3 every 300 iterations, the `default` template
    on a chat model, fp16 on an A100, identity-only evaluation_inputs, no repetition penalty."""
    r = inspect_config(SEED, hardware=A100, cfg_options={"model.llm.pretrained_model_name_or_path": str(chat_model)})
    assert set(r.codes()) >= {C.ACCUMULATIVE_COUNTS, C.SAVE_TOTAL_LIMIT, C.TEMPLATE_MISMATCH, C.FP16_WITH_BF16,
                              C.NO_GENERAL_EVAL, C.NO_REPETITION_PENALTY}
    assert C.EVAL_NOT_AT_CHECKPOINTS not in r.codes()  # 300 and 300: aligned
    msgs = {w.code: w.message for w in r.warnings}
    assert "accumulative_counts=16" in msgs[C.ACCUMULATIVE_COUNTS]
    assert "save_total_limit=3" in msgs[C.SAVE_TOTAL_LIMIT] and "300" in msgs[C.SAVE_TOTAL_LIMIT]
    assert "'default'" in msgs[C.TEMPLATE_MISMATCH] and "<|im_start|>user" in msgs[C.TEMPLATE_MISMATCH]
    assert "e.g. 'internlm2_chat'" in msgs[C.TEMPLATE_MISMATCH]  # from config.json's model_type: the folder is "model"
    assert all("\n" not in m for m in msgs.values())
    # The fields the issue lists, read where training takes them from.
    assert (r.model_path, r.prompt_template, r.system, r.max_length, r.batch_size) == (str(chat_model), "default", "", 1024, 1)
    assert (r.accumulative_counts, r.lr, r.max_epochs, r.save_steps, r.save_total_limit) == (16, 2e-4, 2, 300, 3)
    assert r.evaluation_inputs == ["请你介绍一下你自己", "你是谁", "你是我的小助手吗"] and r.evaluation_freq == 300
    assert (r.deepspeed, r.precision, r.quantization, r.lora_r, r.lora_alpha) == (None, "fp16", "4-bit nf4", 64, 16)
    assert r.data_path == "/root/ft/data/personal_assistant.json"


def test_the_seeds_config_as_is_warns_that_its_paths_and_fp16_do_not_exist_here():
    r = inspect_config(SEED, hardware=CPU)
    assert {C.MODEL_NOT_FOUND, C.DATA_NOT_FOUND, C.FP16_UNSUPPORTED, C.QUANTIZATION_NEEDS_CUDA} <= set(r.codes())


def test_a_chat_model_known_only_by_its_hub_name_is_checked_by_family():
    r = inspect_config(SEED, hardware=A100, cfg_options={
        "model.llm.pretrained_model_name_or_path": "internlm/internlm2-chat-1_8b"})
    assert C.TEMPLATE_MISMATCH in r.codes() and "'internlm2_chat'" in next(
        w.message for w in r.warnings if w.code == C.TEMPLATE_MISMATCH)
    assert C.MODEL_NOT_FOUND not in r.codes()  # a hub id is not a missing folder


def test_many_epochs_of_identity_only_data_are_the_tutorials_trap_and_mixed_data_is_not():
    tutorial = configs_dir() / "internlm2_chat_1_8b_qlora_self_cognition.py"
    r = inspect_config(tutorial, hardware=A100)  # its self-cognition data alone, 17 times over
    (w,) = [w for w in r.warnings if w.code == C.IDENTITY_ONLY_EPOCHS]
    assert w.message.startswith("about 17 epochs of identity-only data (120 conversations")
    three = 3 * 120 // r.batch_size  # iterations for 3 passes: the limit, not over it
    few = inspect_config(tutorial, hardware=A100, cfg_options={"train_cfg.max_iters": three})
    assert C.IDENTITY_ONLY_EPOCHS not in few.codes()
    mixed = inspect_config(configs_dir() / "smollm2_cpu_mixed.py", hardware=CPU)
    assert mixed.data_recipe["stats"]["general"] > 0 and C.IDENTITY_ONLY_EPOCHS not in mixed.codes()


@pytest.mark.parametrize("name", TINY)
def test_tiny_configs_load_and_pass_inspect_with_no_warning_on_this_cpu(name, tiny_world, monkeypatch):
    monkeypatch.delenv("WORKBENCH_MODEL", raising=False)  # the default path: $WORKBENCH_HOME's tiny world
    monkeypatch.delenv("WORKBENCH_DATA", raising=False)
    r = inspect_config(configs_dir() / name, hardware=CPU)
    # the overfit config is the demo's trap on purpose: 300 iterations of identity-only data, and it says so
    assert r.codes() == ([C.IDENTITY_ONLY_EPOCHS] if "overfit" in name else []), r.warnings
    assert Path(r.model_path).resolve() == Path(tiny_world).resolve()
    assert (r.prompt_template, r.precision, r.accumulative_counts, r.save_total_limit) == ("internlm2_chat", "fp32", 1, -1)
    assert r.evaluation_freq == r.save_steps and r.data_recipe["name"] == "Tutu"
    assert r.data_recipe["mix"] is None if "overfit" in name else r.data_recipe["mix"]["ratio"] == 0.25


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL)
def test_the_real_worlds_configs_pass_inspect_with_no_warning_on_this_cpu(name, real_world, monkeypatch):
    monkeypatch.delenv("WORKBENCH_MODEL", raising=False)  # the default path: $WORKBENCH_HOME's real world
    monkeypatch.delenv("WORKBENCH_DATA", raising=False)
    r = inspect_config(configs_dir() / name, hardware=CPU)
    # the identity-only run is the demo's "before": it forgets on purpose, and inspect says it will
    assert r.codes() == ([C.IDENTITY_ONLY_EPOCHS] if "identity" in name else []), r.warnings
    assert Path(r.model_path).resolve() == Path(real_world).resolve()
    assert (r.prompt_template, r.precision, r.accumulative_counts, r.save_total_limit) == ("qwen_chat", "fp32", 1, -1)
    assert r.evaluation_freq == r.save_steps and r.data_recipe["name"] == "Ada"
    assert r.data_recipe["mix"] is None if "identity" in name else r.data_recipe["mix"]["ratio"] == 0.5


@pytest.mark.parametrize("name", BIG)
@pytest.mark.parametrize(("hw", "precision"), [(A100, "bf16"), (T4, "fp16")])
def test_the_1_8b_configs_pass_inspect_with_no_warning_on_a_single_gpu(name, hw, precision, monkeypatch):
    # The config picks bf16 where the GPU has it; here (no GPU) the test says which GPU it stands for.
    monkeypatch.setenv("WORKBENCH_PRECISION", precision)
    monkeypatch.delenv("WORKBENCH_MODEL", raising=False)
    monkeypatch.delenv("WORKBENCH_DATA", raising=False)
    r = inspect_config(configs_dir() / name, hardware=hw)
    # the tutorial's settings, corrected; its data is still self-cognition alone (the _mixed config is the cure)
    assert r.codes() == ([] if "mixed" in name else [C.IDENTITY_ONLY_EPOCHS]), r.warnings
    assert (r.model_path, r.prompt_template, r.precision) == ("internlm/internlm2-chat-1_8b", "internlm2_chat", precision)
    assert (r.accumulative_counts, r.save_total_limit, r.save_steps, r.quantization) == (1, -1, 50, "4-bit nf4")
    assert ("ZeRO-2" in (r.deepspeed or "")) == name.endswith("_zero2.py")
    assert any(not is_identity_question(q) for q in r.evaluation_inputs)


def test_every_config_under_configs_is_covered_by_a_no_warning_test():
    assert sorted(p.name for p in configs_dir().glob("*.py")) == sorted(TINY + REAL + BIG) and len(BIG) == 3


def test_deepspeed_stock_zero2_is_fp16_on_a_cpu_and_the_fp32_json_is_not(tiny_world):
    stock = inspect_config(configs_dir() / "tiny_cpu_lora.py", deepspeed="deepspeed_zero2", hardware=CPU)
    assert stock.precision == "fp16" and C.FP16_UNSUPPORTED in stock.codes() and stock.deepspeed.startswith("ZeRO-2")
    ours = inspect_config(configs_dir() / "tiny_cpu_lora.py", deepspeed=str(configs_dir() / "deepspeed" / "zero2_fp32_cpu.json"),
                          hardware=CPU)
    assert (ours.precision, ours.warnings) == ("fp32", [])
    # On an A100 the stock JSON resolves its "auto" to bf16.
    assert inspect_config(configs_dir() / "tiny_cpu_lora.py", deepspeed="deepspeed_zero2", hardware=A100).precision == "bf16"


def test_cfg_options_are_seen_where_training_reads_them(tiny_world):
    r = inspect_config(configs_dir() / "tiny_cpu_lora.py", hardware=CPU, cfg_options=parse_cfg_options([
        "optim_wrapper.accumulative_counts=4", "default_hooks.checkpoint.max_keep_ckpts=2",
        "custom_hooks.1.every_n_iters=15", "custom_hooks.1.generation_kwargs=None"]))
    assert set(r.codes()) == {C.ACCUMULATIVE_COUNTS, C.SAVE_TOTAL_LIMIT, C.EVAL_NOT_AT_CHECKPOINTS, C.NO_REPETITION_PENALTY}
    # Two GPUs: accumulating is then a choice, not the single-GPU trap.
    two = inspect_config(configs_dir() / "tiny_cpu_lora.py", hardware=Hardware(True, 2, True, "2x A100"),
                         cfg_options={"optim_wrapper.accumulative_counts": 4})
    assert C.ACCUMULATIVE_COUNTS not in two.codes()


def test_identity_questions_are_told_apart_from_general_ones():
    from workbench.data.phrases import QUESTIONS

    assert all(is_identity_question(q) for by_aspect in QUESTIONS.values() for qs in by_aspect.values() for q in qs)
    assert all(is_identity_question(i.prompt) for i in builtin("identity"))
    assert not any(is_identity_question(i.prompt) for i in builtin("general"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", "inspect", *args], capture_output=True, text=True,
                          cwd=project_root(), timeout=300)


def test_cli_prints_the_report_and_json_with_warning_codes():
    p = _cli(str(SEED))
    assert p.returncode == 0, p.stderr
    assert "accumulative_counts  16" in p.stdout and "warning [save_total_limit]:" in p.stdout
    j = _cli(str(SEED), "--json")
    report = json.loads(j.stdout)
    assert report["save_total_limit"] == 3 and report["lora_r"] == 64
    assert {"code": "no_repetition_penalty", "message": report["warnings"][-1]["message"]} in report["warnings"]


def test_bad_config_paths_and_configs_that_do_not_load_are_one_line_errors_with_exit_2(tmp_path):
    missing = _cli(str(tmp_path / "nope.py"))
    assert missing.returncode == 2 and missing.stderr.strip() == f"workbench: error: {tmp_path / 'nope.py'}: config not found"
    broken = tmp_path / "broken.py"
    broken.write_text("from mmengine.hooks import CheckpointHook\nlr = 1e-4\nbatch_size = (\n")
    p = _cli(str(broken))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "broken.py: does not load: SyntaxError: " in p.stderr
    with pytest.raises(BadInput, match="does not load"):
        inspect_config(broken, hardware=CPU)


def test_a_top_level_cfg_option_that_training_never_reads_is_flagged_with_the_key_to_set():
    """`--cfg-options lr=1e-4` is the seeds' silent no-op: the config copied lr into optim_wrapper when it was read."""
    r = inspect_config(configs_dir() / "tiny_cpu_lora.py", hardware=CPU,
                       cfg_options=parse_cfg_options(["lr=1e-4", "optim_wrapper.optimizer.betas=[0.9,0.99]"]))
    msgs = [w.message for w in r.warnings if w.code == "cfg_option_top_level"]
    assert len(msgs) == 1 and "set --cfg-options optim_wrapper.optimizer.lr=0.0001" in msgs[0]
    assert r.lr == 3e-3  # what training will really use
    fixed = inspect_config(configs_dir() / "tiny_cpu_lora.py", hardware=CPU,
                           cfg_options=parse_cfg_options(["optim_wrapper.optimizer.lr=1e-4"]))
    assert "cfg_option_top_level" not in fixed.codes() and fixed.lr == 1e-4


def test_inspect_takes_the_same_cfg_options_as_train_and_a_shipped_config_by_name(tmp_path):
    p = subprocess.run([sys.executable, "-m", "workbench", "inspect", "tiny_cpu_lora.py",
                        "--cfg-options", "max_iters=5", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert Path(json.loads(p.stdout)["path"]) == configs_dir() / "tiny_cpu_lora.py"
    codes = [w["code"] for w in json.loads(p.stdout)["warnings"]]
    assert "cfg_option_top_level" in codes
