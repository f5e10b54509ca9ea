"""`workbench setup lmdeploy`: the plan, the refusal where no GPU is, a real venv made from a folder of wheels and
recorded in settings.toml, and the settings writer that keeps the rest of the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from workbench import settings as settings_mod
from workbench.models import lmdeploy_env as le


def _run(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, WORKBENCH_HOME=str(home))
    env.pop("WORKBENCH_LMDEPLOY_PYTHON", None)
    return subprocess.run([sys.executable, "-m", "workbench", "setup", "lmdeploy", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def _wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel of package `name` whose `__version__` is `version`."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"__version__ = {version!r}\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as z:
        for arc, text in files.items():
            z.writestr(arc, text)
    return path


def test_the_dry_run_shows_every_command_with_the_pinned_version_and_changes_nothing(tmp_path):
    p = _run("--dry-run", "--json", "--env", str(tmp_path / "env"), "--python", sys.executable, home=tmp_path)
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert plan["lmdeploy"] == le.LMDEPLOY_VERSION and plan["interpreter"] == str(tmp_path / "env/bin/python")
    install = plan["steps"][1]["argv"]
    assert f"lmdeploy=={le.LMDEPLOY_VERSION}" in install and "peft" in install
    assert not (tmp_path / "env").exists()


@pytest.mark.skipif(le.has_gpu(), reason="this machine has a GPU: the refusal is for machines without one")
def test_without_a_gpu_it_refuses_before_installing_anything_and_names_the_way_around(tmp_path):
    p = _run("--env", str(tmp_path / "env"), home=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0  # one line
    assert "none was found" in p.stderr and "--no-server-check" in p.stderr
    assert not (tmp_path / "env").exists()


def test_an_offline_setup_makes_the_venv_from_wheels_and_records_the_interpreter(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "lmdeploy", le.LMDEPLOY_VERSION)
    _wheel(wheels, "peft", "0.0.1")
    env = tmp_path / "env"
    p = _run("--env", str(env), "--python", sys.executable, "--wheels", str(wheels), "--no-server-check",
             home=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    interpreter = env / "bin" / "python"
    assert p.stdout.strip() == str(interpreter)
    assert le.installed_version(interpreter) == le.LMDEPLOY_VERSION
    recorded = settings_mod.load(tmp_path / "config" / "settings.toml", environ={})
    assert recorded.lmdeploy_python == str(interpreter)

    again = _run("--env", str(env), "--python", sys.executable, "--wheels", str(wheels), "--no-server-check",
                 home=tmp_path)
    assert again.returncode == 0 and f"lmdeploy {le.LMDEPLOY_VERSION} installed" in again.stderr


def test_a_failed_install_says_which_step_and_where_the_full_output_is(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()  # empty: pip finds no lmdeploy
    p = _run("--env", str(tmp_path / "env"), "--python", sys.executable, "--wheels", str(wheels),
             "--no-server-check", home=tmp_path)
    assert p.returncode != 0
    assert "install lmdeploy" in p.stderr and str(tmp_path / "env" / "setup.log") in p.stderr
    assert not (tmp_path / "config" / "settings.toml").exists()  # nothing recorded


def test_setting_one_value_keeps_every_other_line_and_table(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('# mine\ntheme = "nord"\nlmdeploy_python = "/old"\n\n[keys]\n"runs.stop" = "x"\n')
    settings_mod.set_value("lmdeploy_python", "/new/bin/python", path)
    text = path.read_text()
    assert text.startswith('# mine\ntheme = "nord"\nlmdeploy_python = "/new/bin/python"\n')
    loaded = settings_mod.load(path, environ={})
    assert loaded.theme == "nord" and loaded.keys == {"runs.stop": "x"} and loaded.lmdeploy_python == "/new/bin/python"

    fresh = tmp_path / "new" / "settings.toml"
    settings_mod.set_value("lmdeploy_python", "/p", fresh)
    assert settings_mod.load(fresh, environ={}).lmdeploy_python == "/p"
    with pytest.raises(settings_mod.BadInput, match="unknown setting"):
        settings_mod.set_value("no_such", "x", fresh)
