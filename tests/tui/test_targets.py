"""One resolver for what answers (`workbench.targets`): a checkpoint has the same name in `workbench chat`,
`workbench eval` and the TUI, the run's name in front only on a clash, and trust_remote_code is decided alike
everywhere (the flag, else the training config, else the setting). No model is loaded here."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from workbench.settings import Settings


class _Loaded(Exception):
    """Raised by the stand-in `open_session`: what would have loaded is in `args`."""


@pytest.fixture
def no_loading(monkeypatch):
    """`open_session` records what it was asked to load (the spec and the resolver's answer) and stops."""
    import workbench.models.session as session

    def fake(spec, settings=None, notice=None, conversation=None, *, resolved, **_):
        raise _Loaded(spec, resolved)

    monkeypatch.setattr(session, "open_session", fake)


def _real_checkpoints(work: Path) -> None:
    """The recorded run's placeholder checkpoints as files that pass the checkpoint check (zip, CRC)."""
    for ck in work.glob("iter_*.pth"):
        with zipfile.ZipFile(ck, "w") as zf:
            zf.writestr("archive/data.pkl", b"x")


def _base(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    base.mkdir(exist_ok=True)
    (base / "config.json").write_text("{}")
    return base


def _cli_chat_names(*args: str) -> list[str]:
    from workbench.commands.chat import chat

    result = CliRunner().invoke(chat, list(args))
    assert isinstance(result.exception, _Loaded), result.output
    _spec, resolved = result.exception.args
    return [t.name for t in resolved.targets]


def _tui_chat_names(spec: dict, current=None) -> list[str]:
    from workbench.tui.core import open_chat_session

    with pytest.raises(_Loaded) as caught:
        open_chat_session(spec, current, Settings())
    ms, resolved = caught.value.args
    assert [n for n, _ in ms.adapters] == [t.name for t in resolved.targets if t.kind != "base"]
    return [t.name for t in resolved.targets]


def test_a_checkpoint_is_called_the_same_in_cli_chat_cli_eval_and_the_tui(two_runs, tmp_path, no_loading):
    from workbench.evals.evaluate import Request, resolve_targets
    from workbench.runs import registry
    from workbench.runs.catalog import checkpoint_catalog as chat_candidates
    from workbench.tui.core import adapter_name

    work = Path(registry.get("rec001").work_dir)
    _real_checkpoints(work)
    base = str(_base(tmp_path))
    ckpt = str(work / "iter_300.pth")

    cli_chat = _cli_chat_names(base, "--run", "rec001")
    cli_eval = [t.name for t in resolve_targets(Request(run="rec001", base=base)).targets]
    assert cli_chat == cli_eval == ["base", *(f"iter_{n}" for n in range(25, 301, 25))]
    assert _cli_chat_names(base, "--adapter", f"iter_300={ckpt}") == ["base", "iter_300"]

    # The TUI: the Runs screen's "chat with this checkpoint", and the Chat screen's models picker
    assert adapter_name(registry.get("rec001"), 300) == "iter_300"
    assert _tui_chat_names({"base": base, "adapters": [["from the runs screen", ckpt]]}) == ["base", "iter_300"]
    _, items = chat_candidates()
    key = next(key for key, path, _, label in items if path == ckpt)
    assert _tui_chat_names({"base": base, "adapters": [[key, ckpt]]}) == ["base", "iter_300"]


def test_only_a_clash_puts_the_run_in_front_of_the_name(two_runs, tmp_path, no_loading):
    from workbench.evals.evaluate import Request, resolve_targets
    from workbench.runs import registry

    first, second = (Path(registry.get(r).work_dir) / "iter_125.pth" for r in ("rec001", "rec002"))
    for work in (first.parent, second.parent):
        _real_checkpoints(work)
    base = str(_base(tmp_path))
    # both runs are called `demo`: the run id tells them apart
    both = ["base", "demo-rec001-iter_125", "demo-rec002-iter_125"]
    assert [t.name for t in resolve_targets(Request(adapters=[str(first), str(second)], base=base)).targets] == both
    assert _tui_chat_names({"base": base, "adapters": [["a", str(first)], ["b", str(second)]]}) == both

    class Loaded:  # a Chat screen session that holds rec001's iter_125 already
        spec = type("Spec", (), {"base": base, "backend": "transformers"})()
        variants = {"base": type("V", (), {"source": base})(), "iter_125": type("V", (), {"source": str(first)})()}
        added: list = []

        def load_adapter(self, target):
            self.added.append(target.name)
            return target

        def switch(self, name):
            self.current = name

    current = Loaded()
    from workbench.tui.core import open_chat_session

    assert open_chat_session({"base": base, "adapters": [["x", str(second)]]}, current, Settings()) is current
    assert current.added == ["demo-rec002-iter_125"] and current.current == "demo-rec002-iter_125"
    assert open_chat_session({"base": base, "adapters": [["x", str(first)]]}, current, Settings()) is current
    assert current.current == "iter_125" and current.added == ["demo-rec002-iter_125"]  # loaded: not again


def test_trust_is_the_flag_else_the_training_config_else_the_setting(recorded_home, tmp_path):
    from workbench.targets import resolve

    config = next(recorded_home.glob("*.py"))
    base = str(_base(tmp_path))
    assert resolve(run="rec001", base=base, checkpoints=False, settings=Settings()).trust is False
    assert resolve(run="rec001", base=base, checkpoints=False, settings=Settings(trust_remote_code=True)).trust is False
    config.write_text(config.read_text().replace("trust_remote_code=False", "trust_remote_code=True"))
    res = resolve(run="rec001", base=base, checkpoints=False, settings=Settings())
    assert res.trust is True and f"trust_remote_code: on (set by the training config {config})" in res.notes
    assert resolve(run="rec001", base=base, checkpoints=False, trust_remote_code=False).trust is False
    assert resolve(base=base, settings=Settings(trust_remote_code=True)).trust is True


def test_eval_takes_the_backend_and_device_settings_unless_flags_say_otherwise(wb_home, tmp_path, monkeypatch):
    import workbench.evals.evaluate as evaluate
    from workbench.commands.eval import eval_cmd
    from workbench.settings import settings_path

    asked = []

    def fake(req, progress=None, log=None):
        asked.append(req)
        raise _Loaded()

    monkeypatch.setattr(evaluate, "sweep_report", fake)
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text('default_backend = "lmdeploy"\ndevice = "cpu"\n')
    base = str(_base(tmp_path))
    CliRunner().invoke(eval_cmd, ["--base", base, "-q"])
    CliRunner().invoke(eval_cmd, ["--base", base, "-q", "--backend", "transformers", "--device", "cuda"])
    assert [(r.backend, r.backend_options["device"]) for r in asked] == [("lmdeploy", "cpu"), ("transformers", "cuda")]
    assert asked[0].trust_remote_code is None and asked[0].settings.default_backend == "lmdeploy"
