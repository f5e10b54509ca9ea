"""Settings: one dataclass read from settings.toml and WORKBENCH_* variables, every field documented."""

from __future__ import annotations

import dataclasses

import pytest

from workbench import settings as S
from workbench.errors import BadInput


def test_every_setting_has_a_docstring():
    docs = S.describe()
    assert list(docs) == [f.name for f in dataclasses.fields(S.Settings)]
    missing = [name for name, doc in docs.items() if len(doc) < 20]
    assert not missing, f"settings without a real docstring: {missing}"


def test_defaults_apply_without_a_settings_file(tmp_path):
    s = S.load(tmp_path / "settings.toml", environ={})
    assert s == S.Settings()


def test_file_then_environment_override_defaults(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('theme = "nord"\nlog_max_lines = 5000\ntrust_remote_code = true\n'
                    '[keys]\n"runs.stop" = "x"\n', encoding="utf-8")
    s = S.load(path, environ={"WORKBENCH_THEME": "gruvbox", "WORKBENCH_KEYS": "app.quit=ctrl+x",
                              "WORKBENCH_HOME": "/ignored", "WORKBENCH_TEMPERATURE": "0.7"})
    assert s.theme == "gruvbox"  # the environment wins over the file
    assert s.log_max_lines == 5000 and s.trust_remote_code is True and s.temperature == 0.7
    assert s.keys == {"runs.stop": "x", "app.quit": "ctrl+x"}  # env keys add to the file's


def test_unknown_setting_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('them = "nord"\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"settings.toml: unknown setting 'them'"):
        S.load(path, environ={})


def test_wrong_type_names_the_variable(tmp_path):
    with pytest.raises(BadInput, match=r"WORKBENCH_LOG_MAX_LINES: setting 'log_max_lines'"):
        S.load(tmp_path / "none.toml", environ={"WORKBENCH_LOG_MAX_LINES": "many"})
    with pytest.raises(BadInput, match=r"WORKBENCH_TRUST_REMOTE_CODE"):
        S.load(tmp_path / "none.toml", environ={"WORKBENCH_TRUST_REMOTE_CODE": "perhaps"})


def test_invalid_toml_names_the_line(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('theme = "nord"\nlog_max_lines = = 3\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"settings.toml:2: not valid TOML"):
        S.load(path, environ={})


def test_settings_file_lives_in_the_config_dir(wb_home):
    assert S.settings_path() == wb_home / "config" / "settings.toml"
