"""The foundation: atomic writes, progress, eval set parsing, the xtuner shim (import hygiene: test_import_hygiene.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import workbench
from workbench import atomic
from workbench.errors import BadInput
from workbench.evals import evalset
from workbench.progress import Bar

ROOT = Path(workbench.__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "textual")


def test_atomic_folder_leaves_nothing_when_the_block_fails(tmp_path):
    dest = tmp_path / "adapter"
    with pytest.raises(RuntimeError):
        with atomic.folder(dest) as tmp:
            (tmp / "adapter_model.safetensors").write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_replaces_only_on_success(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(FileExistsError):
        with atomic.folder(dest):
            pass
    with atomic.folder(dest, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]


def test_atomic_write_keeps_old_content_if_serialisation_fails(tmp_path):
    path = tmp_path / "report.json"
    atomic.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic.write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_progress_bar_prints_counts_and_eta_without_a_terminal(tmp_path):
    import io

    stream = io.StringIO()
    with Bar("sweep", 40, stream=stream) as bar:
        for i in range(1, 41):
            bar(i, 40, "sweep")
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("sweep [") and "40/40" in lines[-1] and "eta" in lines[-1]
    assert len(lines) <= 12  # not one line per step in CI logs


def test_malformed_evalset_line_names_file_and_line(tmp_path):
    good = '{"id": "a", "kind": "general", "prompt": "Q?", "answers": ["A"], "lang": "en"}\n'
    path = tmp_path / "set.jsonl"
    path.write_text(good + '{"id": "b", "kind": "general", "prompt": "Q?" "answers": []}\n')
    with pytest.raises(BadInput, match=r"set\.jsonl:2: not valid JSON"):
        evalset.load(path)
    path.write_text(good + good)
    with pytest.raises(BadInput, match=r"set\.jsonl:2: duplicate id 'a' \(first on line 1\)"):
        evalset.load(path)
    path.write_text(good.replace('"general"', '"trivia"'))
    with pytest.raises(BadInput, match=r"set\.jsonl:1: 'kind' must be one of identity, general"):
        evalset.load(path)


def test_identity_placeholders_filled_and_unknown_var_refused():
    ident = evalset.builtin("identity")
    assert {i.prompt for i in ident} >= {"请你介绍一下你自己", "你是谁", "你是我的小助手吗"}
    filled = ident.fill({"name": "Tutu", "org": "Workbench Lab"})
    assert all("{" not in a for i in filled for a in i.answers)
    assert any("Tutu" in a for i in filled for a in i.answers)
    with pytest.raises(BadInput, match="unknown --var nmae"):
        ident.fill({"nmae": "x", "name": "Tutu", "org": "y"})
    with pytest.raises(BadInput, match="--var org="):
        ident.fill({"name": "Tutu"})


def test_shipped_evalsets_meet_the_sizes_the_product_promises():
    general, ident = evalset.builtin("general"), evalset.builtin("identity")
    assert len(general) >= 150 and {i.lang for i in general} == {"zh", "en"}
    assert len(ident) >= 40 and {i.lang for i in ident} == {"zh", "en"}


def test_xtuner_compat_adds_cpu_bf16_probe():
    import torch

    from workbench import xtuner_compat

    xtuner_compat.apply()
    # xtuner/model/sft.py calls get_torch_device().is_bf16_supported(), which is torch.cpu without CUDA.
    assert torch.cpu.is_bf16_supported() in (True, False)


def test_xtuner_compat_returns_the_tools_real_failure_code(tmp_path):
    # The `xtuner` console command exits 0 here; the shim must not.
    out = subprocess.run(
        [sys.executable, "-m", "workbench.xtuner_compat", "train", str(tmp_path / "missing.py")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode != 0


def test_importing_deepspeed_prints_nothing_a_user_cannot_act_on_and_its_real_warnings_go_to_stderr(tmp_path):
    # `workbench demo` printed "Setting ds_accelerator to cpu" into its stdout report when building the tiny world
    # imported DeepSpeed (through transformers' save_pretrained), with "Setting accelerator to CPU. If you have
    # GPU..." and, on a machine's first import, "df: ~/.triton/autotune: No such file or directory" on stderr
    pytest.importorskip("deepspeed")  # the `deepspeed` extra (./dev installs it)
    code = ("from workbench.quiet import quiet_libraries; quiet_libraries(); import deepspeed\n"
            "from deepspeed.utils import logger; logger.warning('a real warning')")
    env = {**os.environ, "HOME": str(tmp_path)}  # a machine where DeepSpeed was never imported
    env.pop("TRITON_CACHE_DIR", None)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout == ""
    assert "a real warning" in p.stderr
    assert "accelerator" not in p.stderr and "df:" not in p.stderr, p.stderr[-2000:]
