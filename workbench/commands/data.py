"""`workbench data identity`, `workbench init` and `workbench inspect`: data, project folders, configs."""

from __future__ import annotations

import click

from workbench.commands._common import emit_json, info


def _shipped_data(value: str | None) -> str | None:
    """A data file as given, or one shipped beside the configs when named by its file name
    (`smollm2_replay.json`, `replay_prompts_en.txt`) and not in the current folder."""
    from workbench.paths import shipped_file

    return str(shipped_file(value, "data") or value) if value else value


@click.group()
def data() -> None:
    """Build training data."""


def _stats_lines(stats: dict) -> list[str]:
    lang = ", ".join(f"{k} {v}" for k, v in stats["by_lang"].items())
    aspect = ", ".join(f"{k} {v}" for k, v in stats["by_aspect"].items() if v)
    lines = [
        f"conversations: {stats['conversations']} ({stats['identity']} identity, {stats['general']} general, "
        f"{stats['general_fraction']:.0%} general)",
        f"identity: {stats['distinct_questions']} distinct questions ({lang}; {aspect}), "
        f"{stats['distinct_answers']} distinct answers",
    ]
    if stats["identity_eval_prompts"]:
        lines.append(f"identity eval prompts seen in training: {stats['identity_eval_prompts_in_training']}"
                     f"/{stats['identity_eval_prompts']} (the rest measure generalisation)")
    if stats["general"]:
        lines.append(f"general pool: {stats['general_pool']} conversations, {stats['general_repeated']} repeated")
    if stats["general_repeated"]:
        lines.append("note: the general pool is smaller than the mix needs, so some conversations repeat")
    return lines


@data.command()
@click.option("--name", help="Whose assistant it is: '我是NAME的小助手', \"I am NAME's assistant\".")
@click.option("--org", default=None, help="Who made it (questions about the maker are left out without it).")
@click.option("--n", "n", type=int, default=400, show_default=True, help="Identity conversations to write.")
@click.option("--mix", type=click.Path(dir_okay=False), default=None,
              help="General conversations to mix in (OpenAI messages, alpaca or ShareGPT; JSON or JSONL).")
@click.option("--ratio", type=float, default=None,
              help="Fraction of the written conversations that are general ones (0 < R < 1), with --mix.")
@click.option("--lang", "langs", default="zh,en", show_default=True,
              help="Languages of the identity conversations, comma-separated (en for an English-first model).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False), default=None,
              help="Rebuild from a saved FILE.recipe.json instead of the options above.")
@click.option("--out", required=True, type=click.Path(), help="The dataset to write (.json or .jsonl).")
@click.option("--json", "as_json", is_flag=True, help="Print the stats as JSON.")
def identity(name, org, n, mix, ratio, langs, seed, recipe_file, out, as_json) -> None:
    """An identity dataset in the OpenAI messages format XTuner's openai_map_fn reads.

    Many paraphrased questions (Chinese and English) with a few answer variants, optionally mixed with
    general conversations. Deterministic for a seed; the recipe is saved beside the file (FILE.recipe.json).
    """
    from workbench.data import identity as ident
    from workbench.errors import BadInput

    if recipe_file:
        if name or org or mix or ratio is not None:
            raise BadInput("--recipe: give the recipe alone, not with --name/--org/--mix/--ratio")
        recipe, _ = ident.read_recipe(recipe_file)
    else:
        if not name:
            raise BadInput("--name is required (or --recipe FILE)")
        recipe = ident.Recipe(name=name, org=org, n=n, seed=seed, mix=_shipped_data(mix), ratio=ratio or 0.0,
                              langs=tuple(x.strip() for x in langs.split(",") if x.strip()))
    ds = ident.build(recipe)
    path, rpath = ident.write(ds, out)
    if as_json:
        emit_json({"out": str(path), "recipe": str(rpath), "stats": ds.stats})
        return
    for line in _stats_lines(ds.stats):
        info(line)
    info(f"recipe: {rpath}")
    click.echo(str(path))


@data.command()
@click.option("--model", required=True, type=click.Path(), help="The base model folder whose replies are replayed.")
@click.option("--prompts", "prompts_file", required=True, type=click.Path(),
              help="General prompts: a text file (one a line, # comments) or a JSONL eval set. Keep them out of "
                   "your eval sets.")
@click.option("--template", required=True, help="The chat template training uses (XTuner's name, e.g. qwen_chat).")
@click.option("--system", default="", help="The system prompt training uses (default: none).")
@click.option("--max-new-tokens", type=int, default=64, show_default=True,
              help="Longest reply; a reply cut at this length keeps its complete sentences.")
@click.option("--out", required=True, type=click.Path(), help="The conversations to write (.json or .jsonl).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def replay(model, prompts_file, template, system, max_new_tokens, out, as_json) -> None:
    """The base model's own replies to general prompts, as conversations to mix into identity data (--mix).

    Replay keeps what the base could say: the fine-tune is trained on its own answers beside the identity.
    """
    from pathlib import Path

    from workbench import atomic
    from workbench.data.formats import dumps
    from workbench.data.replay import read_prompts
    from workbench.data.replay import replay as make_replay
    from workbench.errors import BadInput
    from workbench.models.templates import get_format
    from workbench.progress import Bar

    out_path = Path(out)
    if out_path.suffix not in (".json", ".jsonl") or out_path.is_dir():
        raise BadInput(f"--out {out}: give a .json or .jsonl file name")
    if not (Path(model) / "config.json").is_file():
        raise BadInput(f"--model {model}: not a model folder (no config.json)")
    get_format(template)  # an unknown template fails before the model loads
    prompts = read_prompts(_shipped_data(prompts_file) or prompts_file)  # --prompts is required
    with Bar("replay", total=len(prompts)) as bar:
        convs = make_replay(model, prompts, template=template, system=system, max_new_tokens=max_new_tokens,
                            progress=bar)
    atomic.write_text(out_path, dumps(convs, jsonl=out_path.suffix == ".jsonl"))
    counts = {"out": str(out_path), "prompts": len(prompts), "conversations": len(convs),
              "left_out": len(prompts) - len(convs)}
    if as_json:
        emit_json(counts)
        return
    info(f"replay: {len(convs)} of {len(prompts)} replies kept ({counts['left_out']} without a complete sentence, "
         "empty or looping)")
    click.echo(str(out_path))


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", default="Tutu", show_default=True, help="The assistant's name in the identity data.")
@click.option("--org", default=None, help="Who made it (default: none; maker questions are then left out).")
@click.option("--model", default=None, help="Base model folder or hub id (default: the template's).")
@click.option("--template", "config_template", default=None,
              help="Config to start from (a shipped config's name, or a path; default"
                   " internlm2_chat_1_8b_qlora_self_cognition;"
                   " tiny_cpu_lora when --model is the tiny world).")
@click.option("--mix", type=click.Path(dir_okay=False), default=None, help="General conversations to mix in.")
@click.option("--ratio", type=float, default=None, help="Fraction of general conversations, with --mix.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def init(directory, name, org, model, config_template, mix, ratio, as_json) -> None:
    """Scaffold a fine-tuning project folder, ready for `workbench train DIR/config.py`.

    Writes data/identity.json (with its recipe, which also gives `workbench eval` the name and org for the
    identity eval set) and config.py (from a shipped template, with the model path and the dataset filled in).
    """
    from workbench.data.scaffold import scaffold

    result = scaffold(directory, name=name, org=org, model=model, template=config_template, mix=_shipped_data(mix),
                      ratio=ratio)
    if as_json:
        emit_json(result)
        return
    info(f"project: {result['dir']}")
    for f in result["files"]:
        info(f"  {f}")
    if not mix:
        info("note: the data is identity conversations alone, and more than 3 passes over them make the model forget "
             "what it knew (`workbench inspect` counts them); --mix FILE adds general conversations")
    info(f"next: workbench inspect {result['config']}, then workbench train {result['config']}")
    click.echo(result["dir"])


@click.command("inspect")
@click.argument("args", nargs=-1, required=True, metavar="CONFIG")
@click.option("--deepspeed", default=None, help="The --deepspeed JSON (or XTuner built-in name) the run will use.")
@click.option("--cfg-options", "cfg_options", multiple=True, metavar="K=V ...",
              help="The overrides the run will get, as `workbench train` takes them.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def inspect_config(args: tuple[str, ...], deepspeed: str | None, cfg_options: tuple[str, ...], as_json: bool) -> None:
    """Read an XTuner config without training and warn about known traps.

    Reports the model, template, evaluation inputs, batch and accumulation, lr, schedule, checkpointing,
    DeepSpeed, precision, quantization and LoRA settings, then one line per warning (with --json: a
    "warnings" list of {code, message}). Exits 0 whatever the warnings; 2 if the config is missing or broken.
    """
    from workbench.commands._common import split_config_args
    from workbench.data.inspect import format_report
    from workbench.data.inspect import inspect_config as inspect_
    from workbench.paths import shipped_config
    from workbench.xtuner.config import parse_cfg_options

    config, options = split_config_args(args, cfg_options)
    config = str(shipped_config(config) or config)  # a shipped config by name (`tiny_cpu_lora.py`)
    report = inspect_(config, deepspeed=deepspeed, cfg_options=parse_cfg_options(options) if options else None)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(format_report(report))
