"""Import hygiene, in one place (as harlequin keeps it): what each kind of module may load, checked in a fresh
interpreter, and the architecture's contracts (pyproject.toml: the cores never reach textual or the TUI, and each
floor imports only the floors below it; docs/architecture.md draws them).

- `workbench --help` loads no torch, transformers or textual, and every command it lists resolves.
- No module outside `workbench.tui` loads textual.
- The light modules (the runs core, the model core's client side, settings, the CLI modules that must start fast)
  load none of torch, transformers, textual, peft, mmengine or xtuner.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import workbench
from workbench.cli import COMMANDS

ROOT = Path(workbench.__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "textual", "peft", "mmengine", "xtuner")
LIGHT = [
    "workbench.settings", "workbench.paths", "workbench.atomic", "workbench.progress", "workbench.cpushare",
    "workbench.xtuner.config", "workbench.xtuner.workdir", "workbench.targets",
    "workbench.models.base", "workbench.models.templates", "workbench.models.generation",
    "workbench.models.openai_client", "workbench.models.conversations", "workbench.models.remote",
    "workbench.models.lmdeploy_env", "workbench.demo.run",
    "workbench.commands.chat", "workbench.commands.runs", "workbench.commands.tui", "workbench.commands.demo",
    "workbench.commands.setup",
    *[f"workbench.runs.{m.name}" for m in pkgutil.iter_modules(importlib.import_module("workbench.runs").__path__)],
]


def _modules_loaded_by(code: str) -> dict:
    """Run `code` in a fresh interpreter; it leaves its findings in `found` (a dict), printed back as JSON."""
    probe = "import sys, json\nfound = {}\n" + code + "\nprint(json.dumps(found))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_help_loads_no_torch_transformers_or_textual():
    found = _modules_loaded_by(
        "from workbench.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "found['heavy'] = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'textual'})")
    assert found["heavy"] == []


def test_every_command_help_lists_resolves_to_a_click_command():
    import click

    out = subprocess.run([sys.executable, "-m", "workbench", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    for name, (target, _help) in COMMANDS.items():
        assert f"  {name} " in out.stdout
        module, attr = target.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), click.Command), target


def _core_modules() -> list[str]:
    return [info.name for info in pkgutil.walk_packages([str(ROOT / "workbench")], prefix="workbench.")
            if not info.name.startswith(("workbench.tui", "workbench.configs")) and not info.name.endswith("__main__")]


def test_no_module_outside_the_tui_loads_textual():
    modules = _core_modules()
    assert {"workbench.runs.launch", "workbench.evals.sweep", "workbench.models.hf", "workbench.targets"} <= set(modules)
    found = _modules_loaded_by(
        f"import importlib\nfor name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'textual' in sys.modules:\n"
        "        found['first'] = name\n"
        "        break\n")
    assert "first" not in found, f"{found.get('first')} pulls in textual"


def test_the_light_modules_load_no_ml_stack_and_no_ui():
    found = _modules_loaded_by(
        f"import importlib\nfor name in {LIGHT!r}:\n"
        "    importlib.import_module(name)\n"
        f"    heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})\n"
        "    if heavy:\n"
        "        found[name] = heavy\n"
        "        break\n")
    assert found == {}, f"importing {found} loads it"


def test_the_architectures_contracts_hold():
    exe = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(exe)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr
    assert "2 kept, 0 broken" in out.stdout
