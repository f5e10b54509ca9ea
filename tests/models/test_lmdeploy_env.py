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


def _lmdeploy_python(folder: Path, version: str) -> Path:
    """A Python that imports an `lmdeploy` of `version`: a wrapper that puts a site folder on PYTHONPATH, the way
    bench/lmdeploy_site.sh lays lmdeploy out on a machine without an index."""
    site = folder / "site" / "lmdeploy"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text(f"__version__ = {version!r}\n")
    wrapper = folder / "lmpy"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH='{folder / 'site'}' exec '{sys.executable}' \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def test_use_adopts_an_existing_lmdeploy_python_without_making_a_venv(tmp_path):
    lmpy = _lmdeploy_python(tmp_path / "image", le.LMDEPLOY_VERSION)
    plan = _run("--use", str(lmpy), "--dry-run", "--json", home=tmp_path)
    assert plan.returncode == 0, plan.stderr
    got = json.loads(plan.stdout)
    assert got["adopted"] and got["interpreter"] == str(lmpy) and [s["what"] for s in got["steps"]] == [
        "check the import"]
    p = _run("--use", str(lmpy), "--no-server-check", home=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(lmpy) and f"lmdeploy {le.LMDEPLOY_VERSION}" in p.stderr
    assert settings_mod.load(tmp_path / "config" / "settings.toml", environ={}).lmdeploy_python == str(lmpy)
    assert not (tmp_path / "data" / "lmdeploy-env").exists()  # nothing made


def test_use_names_the_interpreter_that_is_missing_or_has_no_lmdeploy_and_records_nothing(tmp_path):
    settings = tmp_path / "config" / "settings.toml"
    missing = _run("--use", str(tmp_path / "nope" / "python"), "--no-server-check", home=tmp_path)
    assert missing.returncode == 2 and "not an executable Python interpreter" in missing.stderr
    bare = _run("--use", sys.executable, "--no-server-check", home=tmp_path)  # workbench's Python: no lmdeploy
    assert bare.returncode == 2 and "cannot import lmdeploy" in bare.stderr
    assert bare.stderr.strip().count("\n") == 0
    clash = _run("--use", sys.executable, "--env", str(tmp_path / "env"), home=tmp_path)
    assert clash.returncode == 2 and "--env" in clash.stderr
    assert not settings.exists()


def test_use_accepts_another_lmdeploy_version_and_says_which_one_is_measured(tmp_path):
    lmpy = _lmdeploy_python(tmp_path / "image", "0.9.2")
    p = _run("--use", str(lmpy), "--no-server-check", home=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "lmdeploy 0.9.2" in p.stderr and f"measured against {le.LMDEPLOY_VERSION}" in p.stderr
