"""`workbench init DIR`: a fine-tuning project folder, ready for `workbench train DIR/config.py`.

    DIR/
      config.py                 a shipped config, with the model path and the dataset filled in
      data/identity.json        the identity dataset (`workbench data identity`), and its recipe beside it
                                (`workbench eval` reads the identity eval set's {name}/{org} from the recipe)

The folder is built under a temporary name and renamed into place, so a failure leaves nothing behind; an
existing non-empty DIR is never touched.
"""

from __future__ import annotations

import re
from pathlib import Path

from workbench import atomic
from workbench.data import identity
from workbench.errors import BadInput
from workbench.paths import configs_dir

DEFAULT_TEMPLATE = "internlm2_chat_1_8b_qlora_self_cognition"
MIXED_TEMPLATE = "internlm2_chat_1_8b_qlora_self_cognition_mixed"
TINY_TEMPLATE = "tiny_cpu_lora"

# Lines of the shipped configs that `init` rewrites, found by their trailing marker.
_MODEL_LINE = re.compile(r"^pretrained_model_name_or_path = .*# workbench:model$", re.M)
_DATA_LINE = re.compile(r"^data_path = .*# workbench:data$", re.M)
_TEMPLATE_LINE = re.compile(r"^prompt_template = PROMPT_TEMPLATE\.(\w+)", re.M)


def _is_tiny_world(model: str | None) -> bool:
    return bool(model) and (Path(model or "").expanduser() / "world.json").is_file()


def _template_path(template: str | None, model: str | None, mix: str | None) -> Path:
    if template is None:
        template = TINY_TEMPLATE if _is_tiny_world(model) else MIXED_TEMPLATE if mix else DEFAULT_TEMPLATE
    p = Path(template)
    if p.suffix == ".py" and p.is_file():
        return p
    shipped = configs_dir() / f"{template.removesuffix('.py')}.py"
    if not shipped.is_file():
        names = ", ".join(sorted(q.stem for q in configs_dir().glob("*.py")))
        raise BadInput(f"--template {template}: no such config (shipped: {names})")
    return shipped


def render_config(text: str, *, model: str | None, template_name: str, source: str) -> str:
    """The template's text with the model path and the project's dataset filled in."""
    if not _DATA_LINE.search(text):
        raise BadInput(f"{source}: has no `data_path = ...  # workbench:data` line to fill in")
    text = _DATA_LINE.sub(
        'data_path = _os.path.join(_os.path.dirname(__file__), "data", "identity.json")  # workbench:data', text)
    if model is not None:
        if not _MODEL_LINE.search(text):
            raise BadInput(f"{source}: has no `pretrained_model_name_or_path = ...  # workbench:model` line")
        text = _MODEL_LINE.sub(lambda _: f"pretrained_model_name_or_path = {model!r}  # workbench:model", text)
        # Train with the chat format the model will be chatted with, when the model says what it is.
        from workbench.data.checks import model_chat_format, template_matches

        m = _TEMPLATE_LINE.search(text)
        if m and template_matches(m.group(1), model)[0] is False:
            family = model_chat_format(model)[2]
            if family:
                text = _TEMPLATE_LINE.sub(f"prompt_template = PROMPT_TEMPLATE.{family}", text, count=1)
    header = (f"# Scaffolded by `workbench init` from {template_name}: the model path and the dataset "
              f"(data/identity.json beside this file) are filled in below.\n")
    return header + text


def scaffold(directory: str | Path, *, name: str, org: str | None = None, model: str | None = None,
             template: str | None = None, mix: str | None = None, ratio: float | None = None,
             n: int | None = None, seed: int = 0) -> dict:
    """Create the project folder `directory`; returns what was written (paths are absolute).

    model: a local folder (made absolute) or a hub id; None keeps the template's default.
    template: a shipped config name or a config path (default: the 1.8B self-cognition config, its mixed
    variant with `mix`, or the tiny CPU config when `model` is the tiny world).
    """
    dest = Path(directory).expanduser().absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BadInput(f"{dest}: already exists and is not empty (workbench init never overwrites)")
    if model is not None and Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())
    src = _template_path(template, model, mix)
    config_text = render_config(src.read_text(encoding="utf-8"), model=model, template_name=src.name, source=str(src))
    if n is None:
        n = 120 if _is_tiny_world(model) or src.stem.startswith("tiny") else 400
    recipe = identity.Recipe(name=name, org=org, n=n, seed=seed, mix=mix, ratio=ratio or 0.0)
    ds = identity.build(recipe)  # before anything is written: bad input leaves no folder behind

    with atomic.folder(dest, replace=dest.exists()) as tmp:
        identity.write(ds, tmp / "data" / "identity.json")
        atomic.write_text(tmp / "config.py", config_text)
    return {
        "dir": str(dest),
        "config": str(dest / "config.py"),
        "template": str(src),
        "model": model,
        "data": str(dest / "data" / "identity.json"),
        "recipe": str(identity.recipe_path(dest / "data" / "identity.json")),
        "files": ["config.py", "data/identity.json", "data/identity.recipe.json"],
        "stats": ds.stats,
    }

