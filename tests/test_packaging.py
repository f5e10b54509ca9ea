"""The built wheel is complete: the eval sets, the configs and the configs' data ship inside the package, and an
installed workbench finds them there, not through a source checkout (slow: builds a wheel with pip)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from workbench.paths import project_root

pytestmark = pytest.mark.slow

ROOT = project_root()
PACKAGE_DATA = ("evalsets", "configs")


def _shipped_files() -> list[str]:
    """Every file under the checkout's workbench/evalsets and workbench/configs, as wheel names."""
    out = []
    for folder in PACKAGE_DATA:
        for p in (ROOT / "workbench" / folder).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                out.append(p.relative_to(ROOT).as_posix())
    return sorted(out)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of what the build reads (so the checkout gets no build/ or egg-info)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "workbench", src / "workbench", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-v", "-w", str(out),
           str(src)]
    if int(version("setuptools").split(".")[0]) >= 77:  # else pip fetches a new enough one for the build
        cmd.insert(4, "--no-build-isolation")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    benign = ("Location 'file:", "byte-compiling is disabled")  # pip's note on a missing index; PYTHONDONTWRITEBYTECODE
    warnings = [line for line in (p.stdout + p.stderr).splitlines()
                if "warn" in line.lower() and not any(b in line for b in benign)]
    assert not warnings, warnings  # e.g. SetuptoolsDeprecationWarning for a license that is not SPDX
    (found,) = out.glob("workbench-*.whl")
    return found


def test_the_wheel_holds_the_eval_sets_the_configs_their_data_and_the_license(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = _shipped_files()
    assert {"workbench/evalsets/identity.jsonl", "workbench/evalsets/general.jsonl",
            "workbench/configs/tiny_cpu_lora.py", "workbench/configs/data/tiny_identity_mix.json",
            "workbench/configs/deepspeed/zero2_fp32_cpu.json"} <= set(shipped)
    assert [n for n in shipped if n not in names] == []
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in meta.splitlines()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


PROBE = r"""
import json, os, re, sys
from pathlib import Path
import workbench
from workbench import paths
from workbench.evals.evalset import builtin
from workbench.xtuner.config import resolve_config, resolve_deepspeed

site = Path(sys.argv[1]).resolve()
out = {"module": workbench.__file__, "evalsets": str(paths.evalsets_dir()), "configs": str(paths.configs_dir()),
       "identity": len(builtin("identity").items), "general": str(builtin("general").path),
       "by_name": str(resolve_config("tiny_cpu_lora.py")), "old_path": str(resolve_config("configs/tiny_cpu_lora.py")),
       "deepspeed": resolve_deepspeed("zero2_fp32_cpu.json"), "data": {}}
line = re.compile(r"^data_path = (.*)  # workbench:data$", re.M)
for cfg in sorted(paths.configs_dir().glob("*.py")):  # each config's default data, as the config computes it
    env = {"_os": os, "__file__": str(cfg)}
    os.environ.pop("WORKBENCH_DATA", None)
    exec("data_path = " + line.search(cfg.read_text(encoding="utf-8")).group(1), env)
    out["data"][cfg.name] = env["data_path"]
print(json.dumps(out))
"""


def test_an_installed_wheel_finds_its_eval_sets_configs_and_data_in_the_package(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The extracted wheel first on the path, run from a folder outside the checkout: the checkout is not seen
    # (an editable install's finder comes after the path entries).
    env = {**os.environ, "PYTHONPATH": str(site)}
    p = subprocess.run([sys.executable, "-c", PROBE, str(site)], capture_output=True, text=True, cwd=elsewhere,
                       env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    pkg = site / "workbench"
    for key in ("module", "evalsets", "configs", "general", "by_name", "old_path", "deepspeed"):
        assert Path(got[key]).resolve().is_relative_to(pkg.resolve()), (key, got[key])
    assert got["identity"] == 48
    assert Path(got["by_name"]).name == "tiny_cpu_lora.py"
    assert len(got["data"]) == len(list((ROOT / "workbench" / "configs").glob("*.py")))
    for name, data in got["data"].items():
        assert Path(data).is_file() and Path(data).resolve().is_relative_to(pkg.resolve()), (name, data)
