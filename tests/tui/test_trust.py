"""A run whose base ships its own model code (InternLM2's way: ``auto_map`` in config.json), trusted by its training
config (``trust_remote_code=True``): the Eval screen sweeps it and the Chat screen chats with it, because both ask
`workbench.targets` who trusts what."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from workbench.settings import Settings
from workbench.tui.app import WorkbenchApp
from workbench.tui.navigation import OpenChat

from .helpers import import_run, wait_for

pytestmark = pytest.mark.slow

MODELING = '''from transformers import LlamaForCausalLM


class TinyRemoteForCausalLM(LlamaForCausalLM):
    """The tiny world's Llama, loaded as code shipped in the model folder."""
'''


def _remote_code_base(world: Path, dest: Path) -> Path:
    shutil.copytree(world, dest)
    (dest / "modeling_tiny.py").write_text(MODELING)
    cfg = json.loads((dest / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_tiny.TinyRemoteForCausalLM"}
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest


async def test_eval_and_chat_both_run_a_base_whose_code_the_training_config_trusts(tiny_world, tiny_run_dir,
                                                                                    tmp_path, monkeypatch):
    from workbench.models.loading import needs_remote_code

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    base = _remote_code_base(tiny_world, tmp_path / "base")
    assert needs_remote_code(base)
    work = Path(shutil.copytree(tiny_run_dir, tmp_path / "work"))
    for config in work.glob("*.py"):  # the run's config copy: the new base, whose code it trusts
        text = config.read_text().replace(str(tiny_world), str(base))
        config.write_text(text.replace("trust_remote_code=False", "trust_remote_code=True"))
    (run,) = import_run(work)

    app = WorkbenchApp(Settings(max_new_tokens=8), start_mode="eval")  # trust_remote_code setting: off
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.run_id == run.id, 10, "the run chosen")
        await pilot.press("i", *"last", "enter")
        await pilot.press("v", *"name=Tutu org=Workbench Lab", "enter")
        await pilot.press("g")
        await wait_for(pilot, lambda: screen.report is not None, 900, "the sweep")  # fails on a refusal
        assert [r.name for r in screen.rows] == ["base", "iter_60"]

        app.post_message(OpenChat({"base": str(base), "adapters": [["iter_60", str(work / "iter_60.pth")]]}))
        await wait_for(pilot, lambda: getattr(app.screen, "session", None) is not None, 120, "the models")
        chat = app.screen
        assert list(chat.session.variants) == ["base", "iter_60"] and chat.session.current == "iter_60"
        assert f"trust_remote_code: on (set by the training config {next(work.glob('*.py'))})" in chat.session.notices
        await pilot.press(*"Who are you?", "enter")
        await wait_for(pilot, lambda: not chat.busy and len(chat.session.messages) == 2, 60, "the reply")
        assert chat.session.messages[-1]["variant"] == "iter_60"
