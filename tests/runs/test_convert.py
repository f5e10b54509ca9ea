"""Checkpoints -> PEFT adapters through XTuner's converter, and peft merges, on the real tiny run."""

from __future__ import annotations

import json
import shutil

import pytest

from workbench.demo.world import PROMPT_FORMAT
from workbench.xtuner.config import read_dumped_config

from .helpers import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted(tiny_run_dir, tmp_path_factory) -> dict:
    """A copy of the tiny run, imported, with every checkpoint converted by `workbench convert --all`."""
    root = tmp_path_factory.mktemp("convert")
    home, work = root / "wbhome", root / "work"
    shutil.copytree(tiny_run_dir, work)
    (run,) = json.loads(cli("import", str(work), "--json", home=home, check=True).stdout)
    assert run["status"] == "finished"
    proc = cli("convert", run["id"], "--all", "--json", home=home, check=True, timeout=600)
    return {"home": home, "work": work, "id": run["id"], "results": json.loads(proc.stdout)}


@pytest.fixture(scope="module")
def base(tiny_world):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_world)
    model = AutoModelForCausalLM.from_pretrained(tiny_world, torch_dtype=torch.float32).eval()
    inputs = tok([PROMPT_FORMAT.format(q=q) for q in ("你是谁", "Who are you?")], return_tensors="pt",
                 padding=True, return_token_type_ids=False)
    return model, inputs


def logits(model, inputs):
    import torch

    with torch.no_grad():
        return model(**inputs).logits


def test_every_checkpoint_becomes_a_peft_adapter_that_changes_the_output(converted, base, tiny_world):
    from peft import PeftModel

    results = converted["results"]
    assert [(r["iteration"], r["skipped"]) for r in results] == [(n, False) for n in (10, 20, 30, 40, 50, 60)]
    hf = converted["work"] / "hf"
    assert sorted(p.name for p in hf.iterdir()) == [f"iter_{n}" for n in (10, 20, 30, 40, 50, 60)]  # no leftovers
    for r in results:
        files = {p.name for p in (hf / f"iter_{r['iteration']}").iterdir()}
        assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "adapter_model.bin" not in files
    model, inputs = base
    reference = logits(model, inputs)
    peft_model = PeftModel.from_pretrained(model, results[0]["adapter_path"], adapter_name="iter_10")
    outputs = {}
    for r in results[1:]:
        peft_model.load_adapter(r["adapter_path"], adapter_name=f"iter_{r['iteration']}")
    for r in results:
        peft_model.set_adapter(f"iter_{r['iteration']}")
        outputs[r["iteration"]] = logits(peft_model, inputs)
        assert (outputs[r["iteration"]] - reference).abs().max() > 1e-2, r["iteration"]
    assert (outputs[60] - outputs[10]).abs().max() > 1e-2  # each checkpoint is its own adapter
    with peft_model.disable_adapter():
        assert (logits(peft_model, inputs) - reference).abs().max() < 1e-5
    peft_model.unload()
    ckpts = json.loads(cli("checkpoints", converted["id"], "--json", home=converted["home"], check=True).stdout)
    assert all(c["converted"] and c["adapter_path"].endswith(f"hf/iter_{c['iteration']}") for c in ckpts)


def test_converting_again_skips_and_a_failed_conversion_leaves_nothing(converted, tmp_path):
    again = json.loads(cli("convert", converted["id"], "--all", "--json", home=converted["home"], check=True).stdout)
    assert all(r["skipped"] for r in again)
    # Break the config the converter reads (the work dir's copy): the base model is gone.
    dumped = converted["work"] / "tiny_cpu_lora.py"
    text = dumped.read_text(encoding="utf-8")
    model_path = read_dumped_config(dumped)["pretrained_model_name_or_path"]
    assert text.count(model_path) >= 3  # the variable, the model and the tokenizer
    dumped.write_text(text.replace(model_path, "/gone/model"), encoding="utf-8")
    try:
        proc = cli("convert", converted["id"], "--iter", "20", "--out", str(tmp_path / "a20"),
                   home=converted["home"], timeout=600)
    finally:
        dumped.write_text(text, encoding="utf-8")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("workbench: error: convert run")
    assert list(tmp_path.iterdir()) == []  # no adapter folder, no partial temp folder


def test_merge_gives_the_same_output_as_base_plus_adapter(converted, base, tiny_world, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = converted["work"] / "hf" / "iter_60"
    out = tmp_path / "merged"
    proc = cli("merge", str(tiny_world), str(adapter), str(out), home=converted["home"], check=True, timeout=600)
    assert proc.stdout.strip() == str(out)
    assert json.loads((out / "workbench_merge.json").read_text())["dtype"] == "torch.float32"
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    model, inputs = base
    with_adapter = PeftModel.from_pretrained(model, str(adapter))
    expected = logits(with_adapter, inputs)
    with_adapter.unload()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    assert (logits(merged, inputs) - expected).abs().max() < 1e-4
    refused = cli("merge", str(tiny_world), str(adapter), str(out), home=converted["home"])
    assert refused.returncode == 2 and "already exists" in refused.stderr
