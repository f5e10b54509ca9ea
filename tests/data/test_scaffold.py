"""`workbench init DIR`: a project folder that `workbench train` can run as it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from workbench.data.checks import Hardware
from workbench.data.inspect import inspect_config
from workbench.paths import evalsets_dir, project_root


def _init(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", "init", *args], capture_output=True, text=True,
                          cwd=project_root(), timeout=300)


def test_init_on_the_tiny_world_writes_a_project_whose_only_warning_is_its_identity_only_data(tiny_world, tmp_path,
                                                                                             monkeypatch):
    monkeypatch.delenv("WORKBENCH_DATA", raising=False)
    monkeypatch.delenv("WORKBENCH_MODEL", raising=False)
    proj = tmp_path / "proj"
    p = _init(str(proj), "--name", "小明", "--org", "上海AI实验室", "--model", str(tiny_world), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert sorted(str(f.relative_to(proj)) for f in proj.rglob("*") if f.is_file()) == [
        "config.py", "data/identity.json", "data/identity.recipe.json"]
    assert Path(out["template"]).name == "tiny_cpu_lora.py"
    recipe = json.loads((proj / "data" / "identity.recipe.json").read_text(encoding="utf-8"))
    assert (recipe["name"], recipe["org"]) == ("小明", "上海AI实验室")  # what `workbench eval` fills {name}/{org} from
    r = inspect_config(proj / "config.py", hardware=Hardware.cpu())
    # no --mix: identity conversations alone, 8 passes over them in the tiny config; inspect says so (and nothing else)
    assert r.codes() == ["identity_only_epochs"], r.warnings
    assert r.model_path == str(Path(tiny_world).resolve())
    assert Path(r.data_path) == proj / "data" / "identity.json"
    assert r.data_recipe["name"] == "小明" and r.data_recipe["stats"]["identity"] == 120
    # The filled-in paths are literal: another project's environment cannot redirect this one.
    monkeypatch.setenv("WORKBENCH_MODEL", "/elsewhere")
    assert inspect_config(proj / "config.py", hardware=Hardware.cpu()).model_path == r.model_path


def test_init_with_a_hub_model_and_a_mix_uses_the_mixed_1_8b_config(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PRECISION", "bf16")
    proj = tmp_path / "p"
    mix = evalsets_dir() / "general.jsonl"
    p = _init(str(proj), "--name", "Tutu", "--org", "Lab", "--model", "internlm/internlm2-chat-1_8b",
              "--mix", str(mix), "--ratio", "0.5", "--json")
    assert p.returncode == 0, p.stderr
    assert Path(json.loads(p.stdout)["template"]).name == "internlm2_chat_1_8b_qlora_self_cognition_mixed.py"
    r = inspect_config(proj / "config.py", hardware=Hardware(True, 1, True, "A100"))
    assert r.warnings == [] and r.model_path == "internlm/internlm2-chat-1_8b"
    assert r.data_recipe["mix"]["ratio"] == 0.5 and r.data_recipe["stats"]["general"] == 400
    assert (proj / "data" / r.data_recipe["mix"]["path"]).resolve() == mix.resolve()  # relative to the final folder


def test_init_switches_the_template_to_the_models_own_chat_format(tmp_path):
    model = tmp_path / "Qwen2-1.5B-Instruct"
    model.mkdir()
    (model / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>", "chat_template": (
        "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")}))
    llama = tmp_path / "Meta-Llama-3-8B-Instruct"
    llama.mkdir()
    (llama / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|begin_of_text|>", "chat_template": (
        "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + "
        "m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")}))
    assert _init(str(tmp_path / "a"), "--model", str(model)).returncode == 0
    assert _init(str(tmp_path / "b"), "--model", str(llama)).returncode == 0
    # ChatML is what internlm2_chat already writes: kept. Llama 3's format is not: switched.
    assert "prompt_template = PROMPT_TEMPLATE.internlm2_chat" in (tmp_path / "a" / "config.py").read_text()
    assert "prompt_template = PROMPT_TEMPLATE.llama3_chat" in (tmp_path / "b" / "config.py").read_text()


def test_init_never_overwrites_a_non_empty_folder_and_leaves_nothing_on_bad_input(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "notes.txt").write_text("mine")
    p = _init(str(proj), "--name", "X")
    assert p.returncode == 2 and "already exists and is not empty" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and [f.name for f in proj.iterdir()] == ["notes.txt"]
    bad = _init(str(tmp_path / "new"), "--name", "X", "--mix", str(tmp_path / "none.jsonl"), "--ratio", "0.5")
    assert bad.returncode == 2 and "none.jsonl: file not found" in bad.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["proj"]
    unknown = _init(str(tmp_path / "new"), "--template", "nope")
    assert unknown.returncode == 2 and "--template nope: no such config" in unknown.stderr


def test_init_fills_an_empty_existing_folder(tmp_path):
    proj = tmp_path / "empty"
    proj.mkdir()
    p = _init(str(proj), "--name", "Tutu")
    assert p.returncode == 0, p.stderr
    assert (proj / "config.py").is_file() and (proj / "data" / "identity.json").is_file()


def test_data_modules_import_without_torch_textual_or_mmengine():
    """`workbench data`, `init` and the TUI's use of the inspector start fast: heavy imports happen in calls."""
    code = ("import sys\nimport workbench.commands.data, workbench.data.identity, workbench.data.scaffold, "
            "workbench.data.checks, workbench.data.inspect, workbench.data.formats\n"
            "print([m for m in ('torch', 'transformers', 'textual', 'xtuner', 'mmengine') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project_root(), check=True)
    assert out.stdout.strip() == "[]"
