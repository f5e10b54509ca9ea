"""`workbench data identity`, `workbench init` and `workbench inspect`: data, project folders, configs."""

from __future__ import annotations

import click

from workbench.commands._common import emit_json, info


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
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False), default=None,
              help="Rebuild from a saved FILE.recipe.json instead of the options above.")
@click.option("--out", required=True, type=click.Path(), help="The dataset to write (.json or .jsonl).")
@click.option("--json", "as_json", is_flag=True, help="Print the stats as JSON.")
def identity(name, org, n, mix, ratio, seed, recipe_file, out, as_json) -> None:
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
        recipe = ident.Recipe(name=name, org=org, n=n, seed=seed, mix=mix, ratio=ratio or 0.0)
    ds = ident.build(recipe)
    path, rpath = ident.write(ds, out)
    if as_json:
        emit_json({"out": str(path), "recipe": str(rpath), "stats": ds.stats})
        return
    for line in _stats_lines(ds.stats):
        info(line)
    info(f"recipe: {rpath}")
    click.echo(str(path))


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", default="Tutu", show_default=True, help="The assistant's name in the identity data.")
@click.option("--org", default=None, help="Who made it (default: none; maker questions are then left out).")
@click.option("--model", default=None, help="Base model folder or hub id (default: the template's).")
@click.option("--template", "config_template", default=None,
              help="Config to start from (a name under configs/, default internlm2_chat_1_8b_qlora_self_cognition;"
                   " tiny_cpu_lora when --model is the tiny world).")
@click.option("--mix", type=click.Path(dir_okay=False), default=None, help="General conversations to mix in.")
@click.option("--ratio", type=float, default=None, help="Fraction of general conversations, with --mix.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def init(directory, name, org, model, config_template, mix, ratio, as_json) -> None:
    """Scaffold a fine-tuning project folder, ready for `workbench train DIR/config.py`.

    Writes data/identity.json (with its recipe), config.py (from a shipped template, with the model path and
    the dataset filled in) and eval_vars.json (the name and org for the identity eval set).
    """
    from workbench.data.scaffold import scaffold

    result = scaffold(directory, name=name, org=org, model=model, template=config_template, mix=mix,
                      ratio=ratio)
    if as_json:
        emit_json(result)
        return
    info(f"project: {result['dir']}")
    for f in result["files"]:
        info(f"  {f}")
    info(f"next: workbench train {result['config']}")
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
    from workbench.commands.runs import _split_config_args
    from workbench.data.inspect import format_report, parse_cfg_options
    from workbench.data.inspect import inspect_config as inspect_

    config, options = _split_config_args(args, cfg_options)
    report = inspect_(config, deepspeed=deepspeed, cfg_options=parse_cfg_options(options) if options else None)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(format_report(report))
