"""`workbench eval`: score a base model, adapters, merged models or every checkpoint of a run, headless.

A contract for scripts and CI: the report goes to stdout or --out (table, json, csv, md, junit), diagnostics
to stderr; exit 0 when every threshold passes, 1 when one fails, 2 on bad input (docs/eval.md).
"""

from __future__ import annotations

import sys

import click

from workbench.commands._common import info

FORMATS = ("table", "json", "csv", "md", "junit")


def _progress(quiet: bool):
    if quiet:
        return None, lambda: None
    from workbench.progress import Bar

    bar = Bar("eval")
    return bar, bar.close


@click.command("eval")
@click.option("--run", "run_ref", metavar="RUN", help="Score the base and every checkpoint of a run (id, name or work dir).")
@click.option("--checkpoints", metavar="WORK_DIR", help="Score every iter_N.pth in an XTuner work dir.")
@click.option("--adapter", "adapters", multiple=True, metavar="PATH",
              help="A PEFT adapter folder or an iter_N.pth (repeatable).")
@click.option("--model", "merged", multiple=True, metavar="PATH", help="A merged model folder (repeatable).")
@click.option("--base", metavar="PATH", help="Base model (default: from the training config or adapter_config.json).")
@click.option("--config", metavar="FILE", help="Training config, for an iter_N.pth outside its work dir.")
@click.option("--train-data", metavar="FILE",
              help="The training data (default: the one the config names): splits identity into seen / held-out "
                   "prompts and judges only the languages it teaches.")
@click.option("--iters", metavar="LIST", help="Only these checkpoints: 10,20,last.")
@click.option("--evalset", "evalsets", multiple=True, metavar="NAME|FILE",
              help="Eval set (built-in identity, general, or a .jsonl; repeatable; default: identity and general).")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="Fill {name}/{org} in identity answers (default: the run's dataset recipe).")
@click.option("--template", metavar="NAME", help="Chat template (default: the training config's).")
@click.option("--system", metavar="TEXT", help="System prompt (default: the training config's SYSTEM).")
@click.option("--compare-templates", metavar="A,B", help="Score under each of these templates side by side.")
@click.option("--max-new-tokens", type=int, default=None, help="Tokens per reply (default 32: answers are short).")
@click.option("--batch-size", type=int, default=None, help="Prompts per generation batch (default 32 on the CPU, 128 on a GPU).")
@click.option("--backend", default=None, help="Generation backend (default: the default_backend setting).")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N (default: the device setting).")
@click.option("--dtype", default="auto", show_default=True, help="auto, float32, bfloat16, float16.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--out", metavar="FILE", help="Write the report here (atomically) instead of stdout.")
@click.option("--plot", metavar="FILE.png", help="Also draw the forgetting curve to this PNG.")
@click.option("--fail-under", metavar="M=V,...", help="Exit 1 unless each metric >= value: identity=0.9,general=0.95.")
@click.option("--max", "max_", metavar="M=V,...", help="Exit 1 unless each metric <= value: leak=0.05,loop=0.1.")
@click.option("--gate", default="recommended", show_default=True,
              help="Which target the thresholds apply to: recommended, last, all, or a name (iter_20).")
@click.option("--tolerance", type=float, default=None,
              help="How far general may fall below the base for a checkpoint to be safe (default 0.05).")
@click.option("--save-responses", metavar="FILE.jsonl", help="Save every reply, for --responses later.")
@click.option("--responses", "responses_file", metavar="FILE.jsonl", help="Re-score saved replies; no model is loaded.")
@click.option("--from-log", is_flag=True, help="Score the EvaluateChatHook samples training already logged.")
@click.option("--parity", nargs=2, metavar="ADAPTER MERGED", help="Compare base+ADAPTER with the MERGED model.")
@click.option("--no-cache", is_flag=True, help="Regenerate every reply (and do not store them).")
@click.option("--trust-remote-code/--no-trust-remote-code", default=None,
              help="Run model code shipped in the model folder (InternLM2 needs it). Default: the training "
              "config's choice, else the trust_remote_code setting.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def eval_cmd(run_ref, checkpoints, adapters, merged, base, config, train_data, iters, evalsets, variables, template, system,
             compare_templates, max_new_tokens, batch_size, backend, device, dtype, fmt, out, plot, fail_under,
             max_, gate, tolerance, save_responses, responses_file, from_log, parity, no_cache, trust_remote_code,
             quiet) -> None:
    """Score models and checkpoints on identity and general prompts, and recommend a checkpoint.

    \b
    Examples:
      workbench eval --run my-run --var name=Tutu --var org="Workbench Lab"
      workbench eval --checkpoints work_dirs/x --format json --out eval.json --fail-under identity=0.9 --max leak=0.05
      workbench eval --adapter hf/iter_600 --compare-templates internlm2_chat,default
      workbench eval --responses saved.jsonl --var name=Tutu --var org=Lab
      workbench eval --run my-run --from-log
      workbench eval --parity hf/iter_600 merged/ --base internlm2-chat-1_8b
    """
    from pathlib import Path

    from workbench import settings as user_settings
    from workbench.errors import BadInput
    from workbench.evals import gates, thresholds
    from workbench.evals.evaluate import Request, parse_vars

    modes = [bool(responses_file), bool(from_log), bool(parity)]
    if sum(modes) > 1:
        raise BadInput("give at most one of --responses, --from-log and --parity")
    if train_data is not None and not Path(train_data).is_file():
        raise BadInput(f"--train-data {train_data}: no such file")
    if batch_size is not None and batch_size < 1:
        raise BadInput(f"--batch-size {batch_size}: must be at least 1")
    if tolerance is not None and not 0 <= tolerance <= 1:
        raise BadInput(f"--tolerance {tolerance}: must be between 0 and 1")
    templates = [t.strip() for t in compare_templates.split(",") if t.strip()] if compare_templates else []
    if compare_templates and len(templates) < 2:
        raise BadInput(f"--compare-templates {compare_templates!r}: give two or more templates, comma-separated")
    fail_under_d = gates.parse(fail_under, "--fail-under", gates.FAIL_UNDER_METRICS + (("agreement",) if parity else ()))
    maxes_d = gates.parse(max_, "--max", gates.MAX_METRICS)
    prefs = user_settings.load()  # default_backend and device apply to eval as to chat; the flags override them
    options = {"device": device or prefs.device, "dtype": dtype}
    if batch_size:
        options["batch_size"] = batch_size
    req = Request(
        run=run_ref, checkpoints=checkpoints, adapters=list(adapters), merged=list(merged), base=base, config=config,
        train_data=train_data, iters=iters, evalsets=list(evalsets) or ["identity", "general"], variables=parse_vars(variables),
        template=template, system=system, compare_templates=templates,
        max_new_tokens=max_new_tokens or thresholds.EVAL_MAX_NEW_TOKENS, batch_size=batch_size,
        backend=backend or prefs.default_backend, backend_options=options, use_cache=not no_cache,
        trust_remote_code=trust_remote_code, settings=prefs,
        tolerance=thresholds.GENERAL_TOLERANCE if tolerance is None else tolerance,
        fail_under={k: v for k, v in fail_under_d.items() if k != "agreement"}, maxes=maxes_d, gate=gate,
        save_responses=save_responses, plot=plot,
    )
    if plot and parity:
        raise BadInput("--plot draws a forgetting curve: not available with --parity")

    if parity:
        _parity(parity, req, fmt, out, fail_under_d.get("agreement"), quiet)
        return
    bar, close = _progress(quiet or bool(responses_file) or from_log)
    try:
        if responses_file:
            from workbench.evals.evaluate import responses_report

            report = responses_report(responses_file, req, log=info)
        elif from_log:
            from workbench.evals.evaluate import log_report

            report = log_report(req, log=info)
        else:
            from workbench.evals.evaluate import sweep_report

            report = sweep_report(req, progress=bar, log=info)
    finally:
        close()
    if not (responses_file or from_log) and "generated" in report.meta:
        # Says whether the TUI's (or an earlier) sweep of the same models was reused: one cache for every front end.
        info(f"replies: {report.meta['generated']} generated, {report.meta.get('cached', 0)} from the cache")
    _emit(report, fmt, out)
    if not report.passed:
        from workbench.errors import ExitCode

        sys.exit(int(ExitCode.THRESHOLD_FAILED))


def _write(text: str, out: str | None) -> None:
    if out:
        from workbench import atomic

        atomic.write_text(out, text)
        info(f"report written to {out}")
    else:
        click.echo(text, nl=False)


def _emit(report, fmt: str, out: str | None) -> None:
    from workbench.evals.report import render

    for w in report.warnings:
        info(f"warning: {w}")
    _write(render(report, fmt), out)
    if out or fmt != "table":  # the table already holds the verdict; other formats get it on stderr
        if report.verdict:
            info(f"verdict: {report.verdict.explanation}")
        if report.gate_message:
            info(f"gate: {report.gate_message}")
        for g in report.gates:
            if not g.ok:
                info(f"gate: {g.describe()}")


def _parity(pair, req, fmt: str, out: str | None, min_agreement: float | None, quiet: bool) -> None:
    from workbench.evals.parity import parity_report, render

    adapter, merged = pair
    bar, close = _progress(quiet)
    try:
        report = parity_report(adapter, merged, req, progress=bar, log=info)
    finally:
        close()
    for w in report.warnings:
        info(f"warning: {w}")
    _write(render(report, fmt), out)
    info(f"parity: {report.identical}/{report.n} replies identical")
    if min_agreement is not None and report.agreement < min_agreement:
        from workbench.errors import ExitCode

        info(f"gate: agreement {report.agreement:.4f} FAILS >= {min_agreement:g}")
        sys.exit(int(ExitCode.THRESHOLD_FAILED))
